//! The claim loop and everything around it.
//!
//! One loop claims jobs in batches of up to half the slots, so that one batch
//! is claimed while the one before runs; a claim's jobs run side by side in
//! one task per runtime thread.
//! Finished attempts go to an outbox. The claim loop sends what the outbox
//! holds together with its next claim (one round trip records a batch and
//! takes the next); while it cannot (waiting for new jobs, or stopped), a
//! recorder task writes the outbox itself. With the queue empty one loop
//! waits in a blocking read and the other for it to return. After a read
//! that took all there was (fewer jobs than it asked for, or none), the
//! other loop goes back to waiting without a claim, which would find
//! nothing; the reading loop claims once if its read brought nothing, for
//! retries come due. So an idle worker runs one claim a second, and a lone
//! job costs three script calls in all: its create, its claim and its
//! finish (with claim batches of two or more: a read of one job, asked for
//! one, cannot tell whether more are queued). Beside them run three small
//! tasks: lease renewal (all leases in one call), recovery of jobs whose
//! worker died, and a listener that stops the handlers of cancelled jobs.
//!
//! An outcome a write failed to record, whatever the error, goes to the
//! recorder to be written again after a pause; its lease is renewed
//! meanwhile (for one lease at most, so that one Redis never takes lets its
//! job go), and it is given up, logged, only once the lease is gone, when
//! Redis would refuse it anyway.
//!
//! Shutdown: the loop stops claiming; jobs in flight get the grace period;
//! what is still running then is stopped and handed back to the queue, so
//! another worker takes it at once instead of after its lease.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use jobs_core::{Claimed, Finished, JobId, JobStatus, Lease, LeaseAck, Outcome, Queue, Recorded};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    WorkerConfig,
    handlers::{JobContext, Registry},
    metrics::{KindMetrics, WorkerMetrics},
    telemetry,
};

/// The most jobs claimed, or outcomes recorded, in one round trip.
const MAX_BATCH: usize = 100;
/// How long one blocking read waits for new jobs. It returns at once when a
/// job arrives, or at shutdown; this bounds how long an idle worker takes to
/// notice retries whose backoff has passed.
const BLOCK: Duration = Duration::from_secs(1);
/// The longest pause between retries while Redis is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a running attempt was stopped before its handler returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The job was cancelled: record CANCELLED.
    Cancelled,
    /// The lease is no longer ours: record nothing.
    Lost,
    /// The worker is shutting down: hand the job back.
    Released,
}

/// One attempt in flight, from its claim until its outcome is recorded: its
/// lease and the means to stop it.
#[derive(Debug)]
pub(crate) struct Attempt {
    lease: Lease,
    /// Its kind's counters.
    counts: Arc<KindMetrics>,
    token: CancellationToken,
    stop: Mutex<Option<Stop>>,
    clock: Mutex<LeaseClock>,
}

/// An attempt's lease by this process's clock.
#[derive(Debug, Clone, Copy)]
struct LeaseClock {
    /// When the lease lapses at the latest, unless renewed again: the end
    /// of the last call that may have taken or renewed it, plus one lease
    /// (Redis set the lapse during that call, by its own clock).
    lapses_by: Instant,
    /// When the handler ended, once it has; its outcome then waits to be
    /// recorded.
    ended: Option<Instant>,
}

impl Attempt {
    /// An attempt whose lease of `length` was taken by a call that has just
    /// returned.
    fn new(lease: Lease, counts: Arc<KindMetrics>, length: Duration) -> Self {
        Self {
            lease,
            counts,
            token: CancellationToken::new(),
            stop: Mutex::new(None),
            clock: Mutex::new(LeaseClock {
                lapses_by: Instant::now() + length,
                ended: None,
            }),
        }
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, LeaseClock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call that may have renewed the lease, to `length`, has just
    /// returned.
    fn renewed(&self, length: Duration) {
        let mut clock = self.clock();
        clock.lapses_by = clock.lapses_by.max(Instant::now() + length);
    }

    /// The handler has ended: what is left is to record the outcome.
    fn end(&self) {
        self.clock().ended = Some(Instant::now());
    }

    /// Whether the handler is still running.
    fn is_running(&self) -> bool {
        self.clock().ended.is_none()
    }

    /// Whether the lease should be renewed: while the handler runs, and for
    /// one lease after, while its outcome waits to be recorded. No longer,
    /// so that an outcome Redis never takes stops holding the job: its
    /// lease lapses, the outcome is given up, and recovery queues the job
    /// again.
    fn wants_renewal(&self, length: Duration) -> bool {
        self.clock()
            .ended
            .is_none_or(|ended| ended.elapsed() < length)
    }

    /// Whether the lease is certainly gone (lapsed, or found lost), so that
    /// Redis would refuse the outcome.
    fn is_lost(&self) -> bool {
        Instant::now() > self.clock().lapses_by || self.stopped() == Some(Stop::Lost)
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Stops the attempt; the first reason given is the one that counts.
    pub(crate) fn stop(&self, reason: Stop) {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.token.cancel();
    }

    fn stopped(&self) -> Option<Stop> {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The attempts this worker holds, from their claim until their outcome is
/// recorded (or given up), by job. A job whose lease this worker lost can
/// come back to it while the lost attempt unwinds: the newer attempt then
/// takes the job's place, and the older one must not remove it, see
/// [`forget`].
type Running = Arc<Mutex<HashMap<JobId, Arc<Attempt>>>>;

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<Attempt>>> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the attempts of `leases` from `running`, each only if it is still
/// the job's entry (not a later attempt at the same job).
fn forget<'a>(running: &Running, leases: impl IntoIterator<Item = &'a Lease>) {
    let mut running = lock(running);
    for lease in leases {
        if running
            .get(&lease.jid())
            .is_some_and(|attempt| attempt.lease() == lease)
        {
            running.remove(&lease.jid());
        }
    }
}

/// Whether an outcome of `lease` could still be recorded: its attempt is
/// the job's entry and the lease may not have lapsed yet.
fn may_still_hold(running: &Running, lease: &Lease) -> bool {
    lock(running)
        .get(&lease.jid())
        .is_some_and(|attempt| attempt.lease() == lease && !attempt.is_lost())
}

pub(crate) struct Runner {
    queue: Queue,
    registry: Registry,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// The most jobs one claim takes: half the slots, one half per claim
    /// loop.
    claim_batch: usize,
    running: Running,
    /// Shared by the claims under way (from the call until their jobs are
    /// in `running`), taken alone to look for the jobs of a claim whose
    /// reply was lost: another claim's jobs would look lost until its
    /// reply came.
    claiming: tokio::sync::RwLock<()>,
    grace: Duration,
    retry: RetryPolicy,
    metrics: WorkerMetrics,
}

impl Runner {
    pub(crate) fn new(
        queue: Queue,
        registry: Registry,
        config: &WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            queue,
            registry,
            slots: Arc::new(Semaphore::new(config.concurrency.get())),
            concurrency: config.concurrency.get(),
            claim_batch: (config.concurrency.get() / 2).clamp(1, MAX_BATCH),
            running: Running::default(),
            claiming: tokio::sync::RwLock::new(()),
            grace: Duration::from_millis(config.shutdown_grace_ms),
            retry: RetryPolicy {
                base: Duration::from_millis(config.retry_backoff_ms),
                max: Duration::from_millis(config.retry_backoff_max_ms),
            },
            metrics,
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let outbox = Arc::new(Outbox::default());
        // Stops the helpers once every job has been recorded.
        let finished = CancellationToken::new();
        let recorder = tokio::spawn(record_outcomes(
            self.queue.clone(),
            outbox.clone(),
            self.running.clone(),
            self.metrics.clone(),
        ));
        let helpers = [
            tokio::spawn(stop_cancelled_jobs(
                self.queue.clone(),
                self.running.clone(),
                finished.clone(),
            )),
            tokio::spawn(renew_leases(
                self.queue.clone(),
                self.running.clone(),
                finished.clone(),
            )),
            tokio::spawn(recover_lapsed(
                self.queue.clone(),
                shutdown.clone(),
                self.metrics.clone(),
            )),
        ];
        let turn = BlockingTurn::default();
        // Two claim loops, so that one's round trip is in Redis while the
        // other's jobs start: Redis and the worker busy at once, not in turn.
        tokio::join!(
            self.claim_loop(&outbox, &shutdown, &turn),
            self.claim_loop(&outbox, &shutdown, &turn)
        );

        // Every job task holds a slot until its outcome is in the outbox.
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let in_flight = self.concurrency - self.slots.available_permits();
        if in_flight > 0 {
            tracing::info!(in_flight, grace = ?self.grace, "no longer taking jobs; finishing those in flight");
        }
        let drained = tokio::time::timeout(self.grace, self.slots.acquire_many(all)).await;
        if drained.is_err() {
            // Not the attempts that only wait for their outcome's record.
            let running: Vec<_> = lock(&self.running)
                .values()
                .filter(|attempt| attempt.is_running())
                .cloned()
                .collect();
            tracing::info!(
                jobs = running.len(),
                "grace period over: handing jobs back to the queue"
            );
            for attempt in running {
                attempt.stop(Stop::Released);
            }
            let _ = self.slots.acquire_many(all).await;
        }
        outbox.close();
        let _ = recorder.await;
        finished.cancel();
        for helper in helpers {
            helper.abort();
        }
    }

    /// Claims jobs and starts them until shutdown: each round trip records
    /// the outbox's outcomes and claims as many jobs as there are free slots.
    async fn claim_loop(
        &self,
        outbox: &Arc<Outbox>,
        shutdown: &CancellationToken,
        turn: &BlockingTurn,
    ) {
        let mut backoff = Backoff::default();
        let mut sending = None;
        // Set when a blocking read has just taken all there was: the next
        // round trip records outcomes only, and the loop goes back to
        // waiting. A claim then would find nothing, and retries that came
        // due are moved by the claim that follows a read bringing nothing.
        let mut queue_drained = false;
        loop {
            sending.get_or_insert_with(|| outbox.will_send());
            let Some(slots) = self.free_slots(shutdown).await else {
                return;
            };
            let claiming = self.claiming.read().await;
            let outcomes = outbox.take(MAX_BATCH);
            let (recorded, claimed) = if std::mem::take(&mut queue_drained) {
                (self.queue.finish(&outcomes).await, Ok(Vec::new()))
            } else {
                tokio::join!(
                    self.queue.finish(&outcomes),
                    self.queue.claim_ready(slots.len())
                )
            };
            if let Err(outcomes) = report_recorded(outcomes, recorded, &self.running, &self.metrics)
            {
                outbox.retry_later(outcomes);
            }
            let claimed = match claimed {
                Ok(claimed) if claimed.is_empty() => {
                    // Nothing queued: wait for new jobs, one loop in a
                    // blocking read, the other until that read returns.
                    // Outcomes that come meanwhile are the recorder's.
                    sending.take();
                    if turn.take() {
                        // A claim is never abandoned, not even its blocking
                        // read: Redis would still serve an abandoned read,
                        // and the entries it got (a job handed back at
                        // shutdown, say) would wait for recovery. Shutdown
                        // ends the read early instead.
                        let claimed = self.claim_waiting(slots.len(), shutdown).await;
                        // Fewer jobs than asked for (none included): the read
                        // took all there was, so the other loop waits again
                        // instead of claiming. This one claims next only
                        // after a read that brought nothing, for retries
                        // come due since (a read's jobs were marked by a
                        // claim that moved them).
                        let brought = claimed.as_ref().map_or(slots.len(), Vec::len);
                        let took_all = brought < slots.len();
                        queue_drained = took_all && brought > 0;
                        turn.give_back(took_all);
                        claimed
                    } else {
                        drop((slots, claiming));
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            drained = turn.returned() => queue_drained = drained,
                        }
                        continue;
                    }
                }
                other => other,
            };
            match claimed {
                Ok(claimed) => {
                    backoff.reset();
                    self.start_jobs(claimed, slots, outbox);
                }
                Err(err) => {
                    drop((slots, claiming));
                    sending.take();
                    let pause = backoff.next();
                    tracing::warn!(%err, retry_in = ?pause, "cannot claim jobs");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    if err.may_have_run() {
                        self.take_up_lost_claim(outbox, shutdown).await;
                    }
                }
            }
        }
    }

    /// Runs the jobs a claim whose reply was lost took (RUNNING under this
    /// worker in Redis, unknown to it), once Redis answers again: without
    /// this, they would wait out their leases and lose an attempt. Gives up
    /// after a lease, when recovery takes them anyway.
    async fn take_up_lost_claim(&self, outbox: &Arc<Outbox>, shutdown: &CancellationToken) {
        let give_up = Instant::now() + self.queue.settings().lease;
        let mut backoff = Backoff::default();
        while Instant::now() < give_up {
            // Slots first, then the lock, in the claim loops' order.
            let Some(slots) = self.free_slots(shutdown).await else {
                return;
            };
            let alone = self.claiming.write().await;
            let held: Vec<JobId> = lock(&self.running).keys().copied().collect();
            match self.queue.take_up(slots.len(), &held).await {
                Ok(found) => {
                    let more = found.len() == slots.len();
                    if !found.is_empty() {
                        tracing::warn!(
                            jobs = found.len(),
                            "running the jobs of a claim whose reply was lost"
                        );
                    }
                    self.start_jobs(found, slots, outbox);
                    drop(alone);
                    if !more {
                        return;
                    }
                }
                Err(err) => {
                    drop((slots, alone));
                    let pause = backoff.next();
                    tracing::warn!(%err, retry_in = ?pause, "cannot look for the jobs of a claim whose reply was lost");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Waits for new jobs (at most one BLOCK) and claims up to `max`; at
    /// shutdown the wait ends at once, with whatever Redis delivered.
    async fn claim_waiting(
        &self,
        max: usize,
        shutdown: &CancellationToken,
    ) -> jobs_core::Result<Vec<Claimed>> {
        let waiting = self.queue.claim_waiting(max, BLOCK);
        tokio::pin!(waiting);
        tokio::select! {
            claimed = &mut waiting => claimed,
            () = shutdown.cancelled() => {
                if let Err(err) = self.queue.end_wait().await {
                    tracing::warn!(%err, "cannot end the wait for jobs early");
                }
                waiting.await
            }
        }
    }

    /// Waits for a free slot, then takes as many as [`Self::gather_slots`]
    /// does; none at shutdown.
    async fn free_slots(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedSemaphorePermit>> {
        // Biased: with a slot free and shutdown requested, both branches are
        // ready, and shutdown must win every time.
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            slot = self.slots.clone().acquire_owned() => slot.ok()?,
        };
        Some(self.gather_slots(first).await)
    }

    /// The first free slot and as many more as come free, up to one claim's
    /// worth. The jobs of one claim tend to end together: a few turns of the
    /// scheduler let the rest of them end, so that the next claim (and the
    /// record of their outcomes) is one full batch, not many small ones.
    async fn gather_slots(&self, first: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
        let mut slots = vec![first];
        loop {
            while slots.len() < self.claim_batch {
                match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => slots.push(slot),
                    Err(_) => break,
                }
            }
            // Always one turn at least: a job just started that ends at
            // once (the common case) then sends its outcome with this claim.
            tokio::task::yield_now().await;
            if slots.len() == self.claim_batch || self.slots.available_permits() == 0 {
                return slots;
            }
        }
    }

    /// Starts a claim's jobs: one task per runtime thread, each running its
    /// share of the jobs side by side, rather than a task per job. A task
    /// per job wakes another thread to steal it nearly every time, and those
    /// wake-ups cost about a fifth of the worker's CPU in a drain of short
    /// jobs (BENCHMARKS.md); a share per thread still lets every thread run
    /// jobs that compute.
    fn start_jobs(
        &self,
        claimed: Vec<Claimed>,
        slots: Vec<OwnedSemaphorePermit>,
        outbox: &Arc<Outbox>,
    ) {
        let threads = tokio::runtime::Handle::current().metrics().num_workers();
        let shares: Vec<FuturesUnordered<_>> = std::iter::repeat_with(FuturesUnordered::new)
            .take(threads.min(claimed.len()))
            .collect();
        // Slots beyond the jobs claimed are freed as `slots` drops.
        for (n, (claim, slot)) in claimed.into_iter().zip(slots).enumerate() {
            shares[n % shares.len()].push(self.run_job(claim, slot, outbox.clone()));
        }
        for mut share in shares {
            tokio::spawn(async move { while share.next().await.is_some() {} });
        }
    }

    /// Runs one attempt to its outcome, which goes to the recorder.
    fn run_job(
        &self,
        claim: Claimed,
        slot: OwnedSemaphorePermit,
        outbox: Arc<Outbox>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let Claimed { job, lease } = claim;
        let handler = self.registry.get(&job.kind);
        let running = self.running.clone();
        let queue = self.queue.clone();
        let lease_length = queue.settings().lease;
        let retry = self.retry;
        let span = tracing::info_span!("job", jid = %job.jid, kind = %job.kind, attempt = lease.attempt(), trace_id = tracing::field::Empty);
        // The attempt joins the trace of the call that submitted the job.
        if let Some(parent) = &job.trace_parent {
            span.record("trace_id", parent.trace_id());
            telemetry::set_parent(&span, parent);
        }
        let counts = self.metrics.kind(&job.kind);
        counts.attempts.inc();
        // Held from now, not from the job's first turn: a look for the jobs
        // of a lost claim must not take this one for one of them.
        let attempt = Arc::new(Attempt::new(lease.clone(), counts.clone(), lease_length));
        lock(&running).insert(job.jid, attempt.clone());
        async move {
            let _slot = slot;
            let timeout = job.timeout;
            let started = std::time::Instant::now();
            let ended = match handler {
                None => Ended::Failed(format!(
                    "this worker has no handler for kind {:?}",
                    job.kind
                )),
                Some(handler) => {
                    let ctx = JobContext::new(job, attempt.clone(), queue);
                    // A panicking handler fails its job, not the worker nor
                    // the jobs beside it; it runs in this future (no spawn of
                    // its own), and is dropped, which stops it, on timeout or
                    // cancellation.
                    let run = AssertUnwindSafe(handler.run(ctx)).catch_unwind();
                    tokio::select! {
                        ran = tokio::time::timeout(timeout, run) => match ran {
                            Ok(Ok(Ok(result))) => Ended::Succeeded(result),
                            Ok(Ok(Err(failure))) if failure.is_retryable() => Ended::Failed(failure.to_string()),
                            Ok(Ok(Err(failure))) => Ended::Refused(failure.to_string()),
                            Ok(Err(panic)) => Ended::Failed(format!("the handler panicked: {}", panic_message(&*panic))),
                            Err(_) => Ended::Failed(format!("timed out after {}", humantime(timeout))),
                        },
                        () = attempt.token().cancelled() => Ended::Stopped,
                    }
                }
            };
            // The attempt stays in `running`, its lease renewed, until its
            // outcome is recorded.
            attempt.end();
            counts.observe_run(started.elapsed());
            // A handler that gave up because it was told to stop did not fail.
            let ended = match ended {
                Ended::Failed(_) | Ended::Refused(_) if attempt.stopped().is_some() => Ended::Stopped,
                other => other,
            };
            let outcome = match ended {
                Ended::Succeeded(result) => {
                    tracing::debug!("succeeded");
                    Outcome::Success(result)
                }
                Ended::Failed(error) => {
                    let retry_in = retry.delay(lease.attempt());
                    tracing::info!(%error, "attempt failed");
                    Outcome::Failed { error, retry_in }
                }
                Ended::Refused(error) => {
                    tracing::info!(%error, "failed for good");
                    Outcome::Error(error)
                }
                Ended::Stopped => match attempt.stopped() {
                    Some(Stop::Released) => Outcome::Released("handed back: worker shutting down".to_owned()),
                    Some(Stop::Lost) => {
                        tracing::warn!("lease lost: stopped, nothing recorded");
                        counts.leases_lost.inc();
                        forget(&running, [&lease]);
                        return;
                    }
                    Some(Stop::Cancelled) | None => {
                        tracing::info!("cancelled");
                        Outcome::Cancelled(jobs_core::CANCEL_REASON.to_owned())
                    }
                },
            };
            outbox.put(Finished { lease, outcome });
        }
        .instrument(span)
    }
}

/// How a handler's run ended, before it becomes an [`Outcome`].
enum Ended {
    Succeeded(serde_json::Value),
    Failed(String),
    Refused(String),
    Stopped,
}

fn humantime(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Finished attempts waiting to be recorded. Whoever takes them records
/// them: a claim loop, with its next claim, or the recorder. Those a write
/// failed to record are the recorder's alone, to write again after a pause.
#[derive(Debug, Default)]
struct Outbox {
    pending: Mutex<Vec<Finished>>,
    retrying: Mutex<Vec<Finished>>,
    /// How many claim loops will send the outbox with their next claim,
    /// soon; while any will, the recorder leaves it alone.
    senders: AtomicUsize,
    /// Set once no job will finish any more.
    closed: AtomicBool,
    wake_recorder: Notify,
}

/// A claim loop's promise to send the outbox; dropped when it stops
/// claiming for a while (waiting for jobs, or for Redis).
struct Sending<'a>(&'a Outbox);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.senders.fetch_sub(1, Ordering::SeqCst);
        // Whatever came in while it was going to send may be the recorder's.
        self.0.wake_recorder.notify_one();
    }
}

impl Outbox {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Finished>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn will_send(&self) -> Sending<'_> {
        self.senders.fetch_add(1, Ordering::SeqCst);
        Sending(self)
    }

    fn recorder_writes(&self) -> bool {
        self.senders.load(Ordering::SeqCst) == 0
    }

    fn put(&self, finished: Finished) {
        self.pending().push(finished);
        // Ordered after the push: a claim loop that stops sending after this
        // load wakes the recorder itself.
        if self.recorder_writes() {
            self.wake_recorder.notify_one();
        }
    }

    fn retrying(&self) -> std::sync::MutexGuard<'_, Vec<Finished>> {
        self.retrying.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands outcomes a failed write did not record to the recorder, which
    /// writes them again after a pause (the claim loops would at once).
    fn retry_later(&self, mut outcomes: Vec<Finished>) {
        self.retrying().append(&mut outcomes);
        self.wake_recorder.notify_one();
    }

    /// Up to `max` of the outcomes to write again, oldest first.
    fn take_retrying(&self, max: usize) -> Vec<Finished> {
        let mut retrying = self.retrying();
        let taken = retrying.len().min(max);
        retrying.drain(..taken).collect()
    }

    /// Whether every outcome is recorded (or given up) and no more will come.
    fn is_done(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
            && self.pending().is_empty()
            && self.retrying().is_empty()
    }

    fn take(&self, max: usize) -> Vec<Finished> {
        let mut pending = self.pending();
        let taken = pending.len().min(max);
        let rest = pending.split_off(taken);
        std::mem::replace(&mut *pending, rest)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_recorder.notify_one();
    }
}

/// Which claim loop waits in the blocking read when the queue is empty: one
/// at a time (they share its connection); the other waits for it to return.
#[derive(Debug, Default)]
struct BlockingTurn {
    taken: AtomicBool,
    returned: Notify,
    /// Whether the last read to return took all there was (fewer jobs
    /// than it asked for, or none).
    drained: AtomicBool,
}

impl BlockingTurn {
    /// True when the caller now holds the turn.
    fn take(&self) -> bool {
        !self.taken.swap(true, Ordering::SeqCst)
    }

    fn give_back(&self, drained: bool) {
        self.drained.store(drained, Ordering::SeqCst);
        self.taken.store(false, Ordering::SeqCst);
        self.returned.notify_waiters();
    }

    /// Waits until the blocking read in progress returns (at once if it
    /// already has). True when it took all there was.
    async fn returned(&self) -> bool {
        // Listening before looking, so a return in between is not missed:
        // the read ends within one BLOCK, and this wait with it.
        let notified = self.returned.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.taken.load(Ordering::SeqCst) {
            notified.await;
        }
        self.drained.load(Ordering::SeqCst)
    }
}

/// Logs and counts the outcomes a finish refused (their lease was no longer
/// this worker's), and lets go of the attempts written. When the write
/// failed, gives back the outcomes whose lease may still hold, whatever the
/// error, to be written again: none is dropped while Redis could still take
/// it. Those whose lease is gone are given up, logged: Redis would refuse
/// them, and recovery queues their jobs again.
fn report_recorded(
    outcomes: Vec<Finished>,
    recorded: jobs_core::Result<Vec<Recorded>>,
    running: &Running,
    metrics: &WorkerMetrics,
) -> Result<(), Vec<Finished>> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let err = match recorded {
        Ok(recorded) => {
            // One pass under one lock: each attempt is let go of (unless a
            // newer attempt of its job has taken its place) and counted.
            let mut attempts = lock(running);
            for (i, finished) in outcomes.iter().enumerate() {
                let attempt = match attempts.entry(finished.lease.jid()) {
                    Entry::Occupied(held) if held.get().lease() == &finished.lease => {
                        Some(held.remove())
                    }
                    _ => None,
                };
                match recorded.get(i) {
                    // Counted by what Redis made of it, not by what the
                    // handler said: a refused outcome is not an end, and a
                    // job to be retried may have ended CANCELLED instead.
                    Some(Recorded::Now(status)) => {
                        let Some(attempt) = attempt else { continue };
                        match (status, &finished.outcome) {
                            (JobStatus::Queued, Outcome::Failed { .. }) => {
                                attempt.counts.retries.inc();
                            }
                            (status, _) => attempt.counts.ended(*status),
                        }
                    }
                    Some(Recorded::Refused) => {
                        metrics.refused(1);
                        tracing::warn!(
                            jid = %finished.lease.jid(),
                            attempt = finished.lease.attempt(),
                            "outcome refused: this worker no longer holds the job's lease"
                        );
                    }
                    None => {}
                }
            }
            return Ok(());
        }
        Err(err) => err,
    };
    let (kept, lost): (Vec<_>, Vec<_>) = outcomes
        .into_iter()
        .partition(|finished| may_still_hold(running, &finished.lease));
    for finished in &lost {
        tracing::error!(
            %err,
            jid = %finished.lease.jid(),
            attempt = finished.lease.attempt(),
            "giving up an outcome that cannot be recorded: its lease has lapsed"
        );
    }
    forget(running, lost.iter().map(|finished| &finished.lease));
    if kept.is_empty() {
        return Ok(());
    }
    if err.is_unavailable() {
        tracing::warn!(%err, jobs = kept.len(), "cannot record outcomes yet");
    } else {
        tracing::error!(%err, jobs = kept.len(), "cannot record outcomes; trying again while their leases hold");
    }
    Err(kept)
}

/// Writes the outbox while the claim loop does not, and the outcomes a
/// write failed to record, after a pause, until the outbox is closed and
/// empty.
async fn record_outcomes(
    queue: Queue,
    outbox: Arc<Outbox>,
    running: Running,
    metrics: WorkerMetrics,
) {
    let mut backoff = Backoff::default();
    loop {
        if outbox.retrying().is_empty() {
            outbox.wake_recorder.notified().await;
        }
        // A write just failed: give Redis a moment.
        if !outbox.retrying().is_empty() {
            tokio::time::sleep(backoff.next()).await;
        }
        loop {
            let mut batch = outbox.take_retrying(MAX_BATCH);
            if batch.is_empty() {
                if !outbox.recorder_writes() {
                    break;
                }
                // Attempts that end together: let the others land too, so
                // they share this call.
                tokio::task::yield_now().await;
                batch = outbox.take(MAX_BATCH);
            }
            if batch.is_empty() {
                break;
            }
            match write_outcomes(&queue, batch, &running, &metrics).await {
                Ok(()) => backoff.reset(),
                Err(failed) => {
                    outbox.retry_later(failed);
                    break;
                }
            }
        }
        if outbox.is_done() {
            return;
        }
    }
}

/// Records a batch of outcomes; gives back those to try again. When Redis
/// refused the batch other than for being unavailable, each is tried alone:
/// one outcome it can never take must not hold back the others.
async fn write_outcomes(
    queue: &Queue,
    batch: Vec<Finished>,
    running: &Running,
    metrics: &WorkerMetrics,
) -> Result<(), Vec<Finished>> {
    let recorded = queue.finish(&batch).await;
    let refused_as_a_batch =
        matches!(&recorded, Err(err) if !err.is_unavailable()) && batch.len() > 1;
    if !refused_as_a_batch {
        return report_recorded(batch, recorded, running, metrics);
    }
    let mut failed = Vec::new();
    for finished in batch {
        let recorded = queue.finish(std::slice::from_ref(&finished)).await;
        if let Err(mut again) = report_recorded(vec![finished], recorded, running, metrics) {
            failed.append(&mut again);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

/// Renews every lease this worker holds, in one call, three times per lease
/// period; stops the attempts whose lease is lost or whose job is cancelled.
async fn renew_leases(queue: Queue, running: Running, finished: CancellationToken) {
    let length = queue.settings().lease;
    let every = length / 3;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = finished.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let attempts: Vec<_> = lock(&running)
            .values()
            .filter(|attempt| attempt.wants_renewal(length))
            .cloned()
            .collect();
        if attempts.is_empty() {
            continue;
        }
        let leases: Vec<_> = attempts.iter().map(|a| a.lease().clone()).collect();
        match queue.renew(&leases).await {
            Ok(acks) => {
                for (attempt, ack) in attempts.iter().zip(acks) {
                    match ack {
                        LeaseAck::Held => attempt.renewed(length),
                        LeaseAck::CancelRequested => {
                            attempt.renewed(length);
                            attempt.stop(Stop::Cancelled);
                        }
                        LeaseAck::Lost => attempt.stop(Stop::Lost),
                    }
                }
            }
            // The leases may lapse if this lasts; fencing then refuses late writes.
            Err(err) => {
                tracing::warn!(%err, jobs = leases.len(), "cannot renew leases");
                // Its answer lost, the renewal may have gone through.
                if err.may_have_run() {
                    for attempt in &attempts {
                        attempt.renewed(length);
                    }
                }
            }
        }
    }
}

/// Gives back the jobs of dead workers, twice per lease period, with jitter
/// so that workers started together do not all scan at once.
async fn recover_lapsed(queue: Queue, shutdown: CancellationToken, metrics: WorkerMetrics) {
    let period = queue.settings().lease / 2;
    loop {
        let jitter = period.mul_f64(fastrand::f64() * 0.5);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period / 2 + jitter) => {}
        }
        match queue.recover().await {
            Ok(recovered) if recovered != jobs_core::Recovered::default() => {
                metrics.reclaimed(&recovered);
                tracing::info!(
                    requeued = recovered.requeued,
                    failed = recovered.failed,
                    cancelled = recovered.cancelled,
                    forgotten = recovered.forgotten,
                    "recovered jobs of workers that stopped renewing their leases"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot recover lapsed leases"),
        }
    }
}

/// Cancels the handlers of running jobs whose cancellation is requested.
async fn stop_cancelled_jobs(queue: Queue, running: Running, finished: CancellationToken) {
    let mut backoff = Backoff::default();
    loop {
        match queue.cancel_requests().await {
            Ok(requests) => {
                backoff.reset();
                let mut requests = std::pin::pin!(requests);
                loop {
                    let jid = tokio::select! {
                        () = finished.cancelled() => return,
                        jid = requests.next() => jid,
                    };
                    let Some(jid) = jid else { break };
                    if let Some(attempt) = lock(&running).get(&jid) {
                        attempt.stop(Stop::Cancelled);
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "cannot listen for cancellations"),
        }
        tokio::select! {
            () = finished.cancelled() => return,
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// How long a failed attempt waits before the next: exponential from `base`,
/// capped at `max`, with "equal jitter" (half fixed, half random) so that
/// jobs failing together do not retry together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    base: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// The wait after attempt number `attempt` (from 1) failed.
    fn delay(self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }

    /// The same with `random` (from 0 to 1) given, so it can be tested.
    fn delay_with(self, attempt: u32, random: f64) -> Duration {
        let doubled = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
        let ceiling = doubled.min(self.max);
        ceiling / 2 + (ceiling / 2).mul_f64(random.clamp(0.0, 1.0))
    }
}

/// Doubling pauses from 100 ms up to [`MAX_BACKOFF`], while Redis is away.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(6));
        self.failures += 1;
        pause.min(MAX_BACKOFF)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_within_their_jitter_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        for (attempt, ceiling) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)] {
            let ceiling = Duration::from_secs(ceiling);
            assert_eq!(
                policy.delay_with(attempt, 0.0),
                ceiling / 2,
                "attempt {attempt}"
            );
            assert_eq!(
                policy.delay_with(attempt, 1.0),
                ceiling,
                "attempt {attempt}"
            );
            let any = policy.delay(attempt);
            assert!(
                ceiling / 2 <= any && any <= ceiling,
                "attempt {attempt}: {any:?}"
            );
        }
    }

    #[test]
    fn outage_backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..9).map(|_| backoff.next()).collect();
        assert_eq!(pauses[0], Duration::from_millis(100));
        assert_eq!(pauses[3], Duration::from_millis(800));
        assert_eq!(*pauses.last().unwrap(), MAX_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
    }
}
