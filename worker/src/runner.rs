//! The claim loop and everything around it.
//!
//! One loop claims jobs in batches, as many as there are free slots; each job
//! runs in its own task; finished attempts go through a channel to one
//! recorder, which writes whatever has piled up in a single script call (so
//! under load many outcomes share one round trip). A listener on the cancel
//! channel stops the handlers of cancelled jobs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::StreamExt;
use jobs_core::{Claimed, Finished, JobId, Outcome, Queue};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handlers::{JobContext, Registry};

/// The most jobs claimed, or outcomes recorded, in one round trip.
const MAX_BATCH: usize = 100;
/// How long one blocking read waits for new jobs. It returns at once when a
/// job arrives; this only bounds how long shutdown waits for an idle read.
const BLOCK: Duration = Duration::from_secs(2);
/// The longest pause between retries while Redis is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The error recorded on a job cancelled while it ran.
const CANCELLED: &str = "cancelled by request";

type Running = Arc<Mutex<HashMap<JobId, CancellationToken>>>;

pub(crate) struct Runner {
    queue: Queue,
    registry: Registry,
    slots: Arc<Semaphore>,
    running: Running,
}

impl Runner {
    pub(crate) fn new(queue: Queue, registry: Registry, concurrency: usize) -> Self {
        Self {
            queue,
            registry,
            slots: Arc::new(Semaphore::new(concurrency)),
            running: Running::default(),
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_outcomes(self.queue.clone(), done_rx));
        let listener = tokio::spawn(stop_cancelled_jobs(
            self.queue.clone(),
            self.running.clone(),
            shutdown.clone(),
        ));
        let mut jobs = JoinSet::new();
        let mut backoff = Backoff::default();

        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let mut slots = vec![first];
            while slots.len() < MAX_BATCH {
                match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => slots.push(slot),
                    Err(_) => break,
                }
            }
            // A claim is never interrupted: entries the server delivered must
            // reach a task, or they would sit claimed by no one.
            match self.queue.claim(slots.len(), BLOCK).await {
                Ok(claimed) => {
                    backoff.reset();
                    for (claim, slot) in claimed.into_iter().zip(slots) {
                        jobs.spawn(self.run_job(claim, slot, done_tx.clone()));
                    }
                }
                Err(err) => {
                    drop(slots);
                    let pause = backoff.next();
                    tracing::warn!(%err, retry_in = ?pause, "cannot claim jobs");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
            while jobs.try_join_next().is_some() {}
        }

        tracing::info!(
            in_flight = jobs.len(),
            "no longer taking jobs; finishing those in flight"
        );
        while jobs.join_next().await.is_some() {}
        drop(done_tx);
        let _ = recorder.await;
        listener.abort();
    }

    /// Runs one attempt to its outcome, which goes to the recorder.
    fn run_job(
        &self,
        claim: Claimed,
        slot: OwnedSemaphorePermit,
        done: mpsc::UnboundedSender<Finished>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let Claimed { job, lease } = claim;
        let handler = self.registry.get(&job.kind);
        let running = self.running.clone();
        let queue = self.queue.clone();
        let span =
            tracing::info_span!("job", jid = %job.jid, kind = %job.kind, attempt = lease.attempt());
        async move {
            let jid = job.jid;
            let _slot = slot;
            let cancel = CancellationToken::new();
            lock(&running).insert(jid, cancel.clone());
            let outcome = match handler {
                None => Outcome::Error(format!(
                    "this worker has no handler for kind {:?}",
                    job.kind
                )),
                Some(handler) => {
                    let ctx = JobContext::new(job, lease.clone(), cancel.clone(), queue);
                    // Its own task, so a panicking handler fails its job, not the worker.
                    let mut attempt = tokio::spawn(handler.run(ctx));
                    tokio::select! {
                        joined = &mut attempt => match joined {
                            Ok(Ok(result)) => Outcome::Success(result),
                            Ok(Err(failure)) => Outcome::Error(failure.to_string()),
                            Err(err) => Outcome::Error(format!("the handler panicked: {}", panic_message(err))),
                        },
                        () = cancel.cancelled() => {
                            attempt.abort();
                            Outcome::Cancelled(CANCELLED.to_owned())
                        }
                    }
                }
            };
            lock(&running).remove(&jid);
            match &outcome {
                Outcome::Success(_) => tracing::debug!("succeeded"),
                Outcome::Error(error) => tracing::info!(%error, "failed"),
                Outcome::Cancelled(_) => tracing::info!("cancelled"),
            }
            // The recorder outlives every job task, so this cannot fail.
            let _ = done.send(Finished { lease, outcome });
        }
        .instrument(span)
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<JobId, CancellationToken>> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

fn panic_message(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(err) => err.to_string(),
    }
}

/// Writes outcomes in batches of whatever has piled up, until every sender
/// is gone. An outcome is retried while Redis is unavailable: it is never
/// dropped for a passing outage.
async fn record_outcomes(queue: Queue, mut done: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Backoff::default();
    while done.recv_many(&mut batch, MAX_BATCH).await > 0 {
        loop {
            match queue.finish(&batch).await {
                Ok(recorded) => {
                    backoff.reset();
                    for (finished, recorded) in batch.iter().zip(recorded) {
                        if !recorded {
                            tracing::info!(
                                jid = %finished.lease.jid(),
                                attempt = finished.lease.attempt(),
                                "outcome not recorded: the job is no longer this attempt's"
                            );
                        }
                    }
                    break;
                }
                Err(err) if err.is_unavailable() => {
                    let pause = backoff.next();
                    tracing::warn!(%err, retry_in = ?pause, "cannot record outcomes yet");
                    tokio::time::sleep(pause).await;
                }
                Err(err) => {
                    tracing::error!(%err, jobs = batch.len(), "cannot record outcomes");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Cancels the handlers of running jobs whose cancellation is requested.
async fn stop_cancelled_jobs(queue: Queue, running: Running, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    loop {
        match queue.cancel_requests().await {
            Ok(requests) => {
                backoff.reset();
                let mut requests = std::pin::pin!(requests);
                loop {
                    let jid = tokio::select! {
                        () = shutdown.cancelled() => return,
                        jid = requests.next() => jid,
                    };
                    let Some(jid) = jid else { break };
                    if let Some(cancel) = lock(&running).get(&jid) {
                        cancel.cancel();
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "cannot listen for cancellations"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// Doubling pauses from 100 ms up to [`MAX_BACKOFF`].
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
