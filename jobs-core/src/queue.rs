//! The worker side of the queue: claim jobs, report progress, record outcomes.
//!
//! The queue is the stream `{prefix}:queue`, read through the consumer group
//! `workers` (keys: see the store module). A worker first claims with one
//! script that reads up to N new entries and marks their jobs RUNNING; only
//! when that finds nothing does it block in XREADGROUP on a connection of its
//! own (a blocking read would stall a shared multiplexed connection), and then
//! marks what the read delivered with the same script. Outcomes are recorded
//! in batches: one script call acknowledges many finished jobs.
//!
//! # Leases
//!
//! A claimed job is leased to its worker until `lease_until` (Redis's clock).
//! The worker renews all its leases together well before they lapse; each
//! renewal also re-claims the job's stream entry, resetting its idle time.
//! Every write about the job carries the lease's fencing token (bumped by
//! every take) and is refused once the token is stale or the lease lapsed.
//! Recovery, run periodically by every worker, finds entries idle for longer
//! than a lease with XAUTOCLAIM: their worker stopped renewing, so the
//! attempt is recorded as lost and the job queued again (or ended ERROR when
//! it has no attempts left).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use redis::{aio::ConnectionManager, streams::StreamReadReply};

use crate::{
    Error, Job, JobId, JobStatus, RedisConfig, Result, Retention, record, scripts,
    store::{GROUP, Keys, connect_manager},
};

/// The worker-side policy the scripts apply.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How long finished jobs and results are kept.
    pub retention: Retention,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            retention: Retention::default(),
        }
    }
}

/// The worker side of the job store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Queue {
    client: redis::Client,
    conn: ConnectionManager,
    /// Only for blocking reads, which would stall every other command
    /// sharing a multiplexed connection.
    blocking: ConnectionManager,
    /// Redis's id for `blocking`'s connection (`CLIENT ID`), so that a
    /// waiting read can be ended early; 0 until known, and again after an
    /// error (the connection may have been replaced).
    blocking_id: Arc<AtomicU64>,
    /// Entries acknowledged since a finish last trimmed the queue.
    acked_since_trim: Arc<AtomicUsize>,
    keys: Arc<Keys>,
    consumer: Arc<str>,
    settings: QueueSettings,
}

/// A worker's hold on one attempt of a job. Every write about the job
/// carries it, and is refused once the job is no longer this attempt's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    entry_id: String,
    jid: JobId,
    attempt: u32,
    token: u64,
}

impl Lease {
    /// The job held.
    pub fn jid(&self) -> JobId {
        self.jid
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A job this worker now runs.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job, RUNNING.
    pub job: Job,
    /// The worker's hold on it.
    pub lease: Lease,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned this result.
    Success(serde_json::Value),
    /// The attempt failed; the job is retried after `retry_in` if it has
    /// attempts left, and ends ERROR otherwise.
    Failed {
        /// Why it failed.
        error: String,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// The attempt failed in a way no retry can fix: the job ends ERROR.
    Error(String),
    /// The attempt was stopped because the job was cancelled.
    Cancelled(String),
    /// The worker is shutting down: the job goes back on the queue at once,
    /// and the attempt does not count.
    Released(String),
}

/// An attempt's outcome, ready to record.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The attempt.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
}

/// What Redis said to a lease renewal or a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAck {
    /// Done; carry on.
    Held,
    /// Done, and the job's cancellation was requested: stop.
    CancelRequested,
    /// The job is no longer this lease's: stop, nothing was written.
    Lost,
}

impl LeaseAck {
    fn from_reply(reply: i64) -> Self {
        match reply {
            1 => LeaseAck::Held,
            2 => LeaseAck::CancelRequested,
            _ => LeaseAck::Lost,
        }
    }
}

/// What became of an outcome given to [`Queue::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded; the job's status now: SUCCESS, ERROR or CANCELLED when the
    /// attempt ended it (CANCELLED too when it would have run again but its
    /// cancellation was requested meanwhile), QUEUED when it will run
    /// again, at once or after a backoff.
    Now(JobStatus),
    /// Not recorded: the job was no longer that lease's (cancelled and
    /// finished, or the lease lapsed and the job was given to another
    /// worker).
    Refused,
}

/// What one recovery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Jobs whose lease had lapsed (or whose delivery was never taken),
    /// queued again.
    pub requeued: u64,
    /// Jobs whose lease lapsed on their last attempt, ended ERROR.
    pub failed: u64,
    /// Jobs whose lease lapsed after their cancellation was requested,
    /// ended CANCELLED rather than queued again.
    pub cancelled: u64,
    /// Finished jobs past their retention, deleted with their index entries.
    pub forgotten: u64,
    /// The kind and final status (ERROR or CANCELLED) of each job this pass
    /// ended: no worker recorded those endings, so the caller counts them.
    pub ended: Vec<(String, JobStatus)>,
}

impl Queue {
    /// Connects as consumer `consumer` (unique per worker process), creating
    /// the consumer group if it does not exist yet.
    pub async fn connect(
        config: &RedisConfig,
        consumer: impl Into<String>,
        settings: QueueSettings,
    ) -> Result<Self> {
        let client = config.client()?;
        // Long enough for the longest BLOCK the worker asks for.
        let blocking_timeout = config.timeout() + MAX_BLOCK;
        // Side by side: each is a connect and a few round trips, which a
        // worker's start would otherwise wait for twice.
        let (conn, blocking) = tokio::try_join!(
            connect_manager(&client, config.timeout(), config.timeout()),
            connect_manager(&client, blocking_timeout, blocking_timeout)
        )?;
        let queue = Self {
            client,
            conn,
            blocking,
            blocking_id: Arc::default(),
            acked_since_trim: Arc::default(),
            keys: Arc::new(Keys::new(&config.key_prefix)),
            consumer: consumer.into().into(),
            settings,
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// The consumer name this worker reads as.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The policy this queue applies.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.settings.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Creates the consumer group at the start of the stream (so entries
    /// queued before any worker ran are delivered), unless it exists.
    async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.queue())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Claims up to `max` jobs, marking them RUNNING for this worker. When
    /// none is queued, waits up to `block` for one; returns an empty list if
    /// none came. The same as [`Self::claim_ready`], then, if that found
    /// nothing, [`Self::claim_waiting`]. A job claimed whose stored data
    /// this version cannot read is not returned: it is ended ERROR, saying
    /// so.
    pub async fn claim(&self, max: usize, block: Duration) -> Result<Vec<Claimed>> {
        let claimed = self.claim_ready(max).await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        self.claim_waiting(max, block).await
    }

    /// Claims up to `max` jobs already queued, without waiting.
    pub async fn claim_ready(&self, max: usize) -> Result<Vec<Claimed>> {
        self.retry_without_group(|| self.mark(max, &[])).await
    }

    /// Waits up to `block` for new jobs and claims up to `max` of them. Do not
    /// abandon it: Redis still serves an abandoned read, and what it delivers
    /// waits for recovery (one lease).
    pub async fn claim_waiting(&self, max: usize, block: Duration) -> Result<Vec<Claimed>> {
        let delivered = self.retry_without_group(|| self.wait(max, block)).await?;
        if delivered.is_empty() {
            return Ok(Vec::new());
        }
        self.mark(max, &delivered).await
    }

    /// Runs `op`, recreating the consumer group once if it has gone (the
    /// stream key was deleted, for instance).
    async fn retry_without_group<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(Error::Redis(err)) if err.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                op().await
            }
            other => other,
        }
    }

    /// Ends a [`Self::claim_waiting`] in progress now, as if its time had
    /// passed: it returns what it has, which is nothing (Redis's `CLIENT
    /// UNBLOCK`; no entry is delivered and left behind). For shutdown, so
    /// that an idle worker need not wait out its read. Without a read in
    /// progress it does nothing.
    pub async fn end_wait(&self) -> Result<()> {
        let id = self.blocking_id.load(Ordering::Relaxed);
        if id != 0 {
            let mut conn = self.conn.clone();
            let _ended: u8 = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Blocks until new entries are delivered to this consumer or `block`
    /// passes; returns (entry id, jid) pairs.
    async fn wait(&self, max: usize, block: Duration) -> Result<Vec<(String, String)>> {
        let read = self.read_blocking(max, block).await;
        if read.is_err() {
            self.blocking_id.store(0, Ordering::Relaxed);
        }
        read
    }

    async fn read_blocking(&self, max: usize, block: Duration) -> Result<Vec<(String, String)>> {
        let mut conn = self.blocking.clone();
        if self.blocking_id.load(Ordering::Relaxed) == 0 {
            let id: u64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            self.blocking_id.store(id, Ordering::Relaxed);
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.min(MAX_BLOCK).as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.keys.queue())
            .arg(">")
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .map(|entry| {
                let jid = entry.get::<String>("jid").unwrap_or_default();
                (entry.id, jid)
            })
            .collect())
    }

    /// Runs the claim script: over `delivered` entries, or over up to `max`
    /// new ones it reads itself when `delivered` is empty. Ends the jobs it
    /// cannot read as ERROR (one more round trip, only then).
    async fn mark(&self, max: usize, delivered: &[(String, String)]) -> Result<Vec<Claimed>> {
        let mut invocation = scripts::CLAIM.key(self.keys.queue());
        invocation
            .key(self.keys.delayed())
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg(max)
            .arg(self.keys.prefix())
            .arg(self.lease_ms());
        for (id, jid) in delivered {
            invocation.arg(id).arg(jid);
        }
        let mut conn = self.conn.clone();
        let rows: Vec<String> = invocation.invoke_async(&mut conn).await?;
        Ok(self.take_rows(&rows).await)
    }

    /// After a claim failed in a way that may have run it in Redis (its
    /// reply lost to a timeout or a dropped connection), returns up to
    /// `max` of the jobs it took: RUNNING under this worker, their entries
    /// pending to it, and not among `held`, the jobs it knows it holds.
    /// Call it while none of this worker's claims is under way (another
    /// claim's jobs would look lost until its reply came), and run what it
    /// returns as claimed jobs: their leases are the lost claim's.
    pub async fn take_up(&self, max: usize, held: &[JobId]) -> Result<Vec<Claimed>> {
        let mut invocation = scripts::TAKE_UP.key(self.keys.queue());
        invocation
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg(max)
            .arg(self.keys.prefix());
        for jid in held {
            invocation.arg(jid.to_string());
        }
        let mut conn = self.conn.clone();
        let rows: Vec<String> = invocation.invoke_async(&mut conn).await?;
        Ok(self.take_rows(&rows).await)
    }

    /// The jobs of claim rows. Row by row: every job in the reply is already
    /// RUNNING, so one this worker cannot read (written by a newer release,
    /// say) must not strand the others until their leases lapse: it is
    /// ended ERROR.
    async fn take_rows(&self, rows: &[String]) -> Vec<Claimed> {
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            match claimed_from_row(row) {
                Ok(claim) => claimed.push(claim),
                Err(err) => match lease_from_row(row) {
                    Some(lease) => {
                        tracing::error!(%err, jid = %lease.jid, "cannot read a claimed job: ending it as ERROR");
                        let problem = match err {
                            Error::Corrupt(detail) => detail,
                            other => other.to_string(),
                        };
                        unreadable.push(Finished {
                            lease,
                            outcome: Outcome::Error(format!(
                                "the job's stored data is unreadable by this worker: {problem}"
                            )),
                        });
                    }
                    None => {
                        tracing::error!(%err, "cannot read a claimed job, nor its lease: left to recovery")
                    }
                },
            }
        }
        if !unreadable.is_empty() {
            // If this fails too, the leases lapse and recovery takes the jobs.
            if let Err(err) = self.finish(&unreadable).await {
                tracing::error!(%err, jobs = unreadable.len(), "cannot end unreadable jobs: left to recovery");
            }
        }
        claimed
    }

    /// Records how attempts ended, all in one atomic step, and acknowledges
    /// their queue entries. Says for each what became of it.
    pub async fn finish(&self, finished: &[Finished]) -> Result<Vec<Recorded>> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = scripts::FINISH.key(self.keys.queue());
        invocation
            .key(self.keys.delayed())
            .key(self.keys.retention())
            .arg(GROUP)
            .arg(self.keys.prefix())
            .arg(self.settings.retention.job_ms())
            .arg(self.settings.retention.result_ms())
            .arg(u8::from(self.trim_due(finished.len())));
        for done in finished {
            let (outcome, payload, delay) = match &done.outcome {
                Outcome::Success(value) => ("SUCCESS", value.to_string(), Duration::ZERO),
                Outcome::Failed { error, retry_in } => ("FAILED", error.clone(), *retry_in),
                Outcome::Error(error) => ("ERROR", error.clone(), Duration::ZERO),
                Outcome::Cancelled(reason) => ("CANCELLED", reason.clone(), Duration::ZERO),
                Outcome::Released(reason) => ("RELEASE", reason.clone(), Duration::ZERO),
            };
            invocation
                .arg(&done.lease.entry_id)
                .arg(done.lease.jid.to_string())
                .arg(done.lease.token)
                .arg(outcome)
                .arg(payload)
                .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        }
        let mut conn = self.conn.clone();
        let recorded: Vec<String> = invocation.invoke_async(&mut conn).await?;
        recorded
            .iter()
            .map(|status| match status.as_str() {
                "" => Ok(Recorded::Refused),
                status => status.parse().map(Recorded::Now).map_err(|_| {
                    Error::Corrupt(format!("finish.lua answered the status {status:?}"))
                }),
            })
            .collect()
    }

    /// Whether the finish acknowledging `acking` more entries should also
    /// trim the queue: once per [`TRIM_EVERY`] entries acknowledged, about
    /// one stream node (trimming drops whole nodes only, so trimming more
    /// often finds nothing to drop, while finding the bound is a good part
    /// of a small batch's cost). Approximate when finishes overlap, which
    /// only moves a trim by a call.
    fn trim_due(&self, acking: usize) -> bool {
        let acked = self.acked_since_trim.fetch_add(acking, Ordering::Relaxed) + acking;
        let due = acked >= TRIM_EVERY;
        if due {
            self.acked_since_trim.store(0, Ordering::Relaxed);
        }
        due
    }

    /// Records how far an attempt has got (`fraction` from 0 to 1).
    pub async fn report_progress(&self, lease: &Lease, fraction: f64) -> Result<LeaseAck> {
        let mut conn = self.conn.clone();
        let ack: i64 = scripts::PROGRESS
            .key(self.keys.job(&lease.jid))
            .key(self.keys.events(&lease.jid))
            .arg(lease.token)
            .arg(fraction.clamp(0.0, 1.0))
            .invoke_async(&mut conn)
            .await?;
        Ok(LeaseAck::from_reply(ack))
    }

    /// Extends the leases held, all in one step; one answer per lease.
    pub async fn renew(&self, leases: &[Lease]) -> Result<Vec<LeaseAck>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = scripts::RENEW.key(self.keys.queue());
        invocation
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg(self.keys.prefix())
            .arg(self.lease_ms());
        for lease in leases {
            invocation
                .arg(&lease.entry_id)
                .arg(lease.jid.to_string())
                .arg(lease.token);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        Ok(replies.into_iter().map(LeaseAck::from_reply).collect())
    }

    /// Gives back the jobs of workers whose leases lapsed, and drops jobs
    /// past their retention from the indexes: all that is due, in short
    /// script calls (each does a bounded share), so that a worker keeps up
    /// with however many jobs finish and other clients are served between
    /// the calls.
    pub async fn recover(&self) -> Result<Recovered> {
        // Bounds one pass even if jobs were to expire as fast as it forgets
        // them; the next pass goes on.
        const MAX_CALLS: usize = 1000;
        let run = || async {
            let mut conn = self.conn.clone();
            let mut total = Recovered::default();
            let mut cursor = String::from("0-0");
            for _ in 0..MAX_CALLS {
                let (requeued, failed, forgotten, more, next, cancelled, ended): RecoverReply =
                    scripts::RECOVER
                        .key(self.keys.queue())
                        .key(self.keys.retention())
                        .key(self.keys.index())
                        .key(self.keys.earlier_expiry())
                        .arg(GROUP)
                        .arg(&*self.consumer)
                        .arg(self.keys.prefix())
                        .arg(self.lease_ms())
                        .arg(self.settings.retention.job_ms())
                        .arg(&cursor)
                        .invoke_async(&mut conn)
                        .await?;
                total.requeued += requeued;
                total.failed += failed;
                total.forgotten += forgotten;
                total.cancelled += cancelled;
                total.ended.extend(
                    ended.into_iter().filter_map(|(kind, status)| {
                        Some((kind, status.parse::<JobStatus>().ok()?))
                    }),
                );
                cursor = next;
                if more == 0 {
                    break;
                }
            }
            Ok(total)
        };
        self.retry_without_group(run).await
    }

    /// The jids of running jobs whose cancellation is requested, as they are
    /// requested. The stream ends if the connection drops; subscribe again.
    pub async fn cancel_requests(&self) -> Result<impl Stream<Item = JobId> + Send + 'static> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.keys.cancel_channel()).await?;
        Ok(pubsub.into_on_message().filter_map(|message| async move {
            let jid: String = message.get_payload().ok()?;
            JobId::parse(&jid).ok()
        }))
    }
}

/// recover.lua's reply: jobs queued again, ended ERROR and forgotten; 1
/// when work remains; where the next call goes on; jobs ended CANCELLED;
/// the (kind, status) of each job ended.
type RecoverReply = (u64, u64, u64, u8, String, u64, Vec<(String, String)>);

/// What claim.lua returns for each job, in this order, after the entry id
/// and before the job's `spec` (only what a handler and the worker use: the
/// attempt history, say, stays in Redis).
const CLAIM_REPLY: [&str; 6] = ["jid", "attempts", "lease", "version", "seq", "start_time"];

/// A claim script row, as the job now RUNNING and its lease: the entry id,
/// the CLAIM_REPLY values and the job's `spec`, joined by NUL (an empty
/// value is an absent field).
fn claimed_from_row(row: &str) -> Result<Claimed> {
    let malformed = || Error::Corrupt(format!("malformed claim row: {row:?}"));
    let mut parts = record::NulSeparated::new(row);
    let entry_id = parts
        .next()
        .filter(|id| !id.is_empty())
        .ok_or_else(malformed)?;
    let mut stored = record::Stored::default();
    stored.set("status", "RUNNING");
    for name in CLAIM_REPLY {
        match parts.next() {
            Some("") => {}
            Some(value) => stored.set(name, value),
            None => return Err(malformed()),
        }
    }
    stored.set("spec", parts.rest().ok_or_else(malformed)?);
    let job = stored.job()?;
    let lease = Lease {
        entry_id: entry_id.to_owned(),
        jid: job.jid,
        attempt: job.attempts,
        token: job.lease,
    };
    Ok(Claimed { job, lease })
}

/// The lease of a claim row [`claimed_from_row`] cannot read, from its
/// first fields (entry id, jid, attempts, lease token), so that its job can
/// still be ended; `None` if even those are unreadable.
fn lease_from_row(row: &str) -> Option<Lease> {
    let mut parts = record::NulSeparated::new(row);
    let entry_id = parts.next().filter(|id| !id.is_empty())?;
    let jid = JobId::parse(parts.next()?).ok()?;
    let attempt = parts.next()?.parse().ok()?;
    let token = parts.next()?.parse().ok()?;
    Some(Lease {
        entry_id: entry_id.to_owned(),
        jid,
        attempt,
        token,
    })
}

/// How many entries a worker acknowledges between trims of the queue: the
/// entries of one stream node (Redis's `stream-node-max-entries` default).
const TRIM_EVERY: usize = 100;

/// The longest a blocking read waits; the worker asks for less.
const MAX_BLOCK: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

    use jobs_testkit::TestRedis;

    use super::*;
    use crate::{NewJob, Store};

    /// A worker paused between its blocking read and its claim, for longer
    /// than a lease: recovery queues the job again under a new entry, and the
    /// late claim must not take it over the dead entry.
    #[tokio::test]
    async fn a_delivery_recovered_meanwhile_is_not_taken_late() {
        let redis = TestRedis::start();
        let lease = Duration::from_millis(300);
        let config = RedisConfig::new(redis.url(), redis.prefix());
        let settings = QueueSettings {
            lease,
            ..QueueSettings::default()
        };
        let paused = Queue::connect(&config, "paused-worker", settings)
            .await
            .unwrap();
        let alive = Queue::connect(&config, "live-worker", settings)
            .await
            .unwrap();
        let store = Store::connect(&config).await.unwrap();
        let jid = store
            .create(&NewJob::parse(1, 3, "sum", None).unwrap())
            .await
            .unwrap()
            .job
            .jid;

        let delivered = paused.wait(1, Duration::from_millis(50)).await.unwrap();
        assert_eq!(delivered.len(), 1);
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert_eq!(alive.recover().await.unwrap().requeued, 1);

        assert!(paused.mark(1, &delivered).await.unwrap().is_empty());
        let taken = alive.claim_ready(1).await.unwrap();
        assert_eq!(taken.len(), 1, "the job waits under its new entry");
        assert_eq!(taken[0].job.jid, jid);
        assert_eq!(store.get(&jid).await.unwrap().status, JobStatus::Running);
        let finished = Finished {
            lease: taken[0].lease.clone(),
            outcome: crate::Outcome::Success(6.into()),
        };
        assert_eq!(
            alive.finish(&[finished]).await.unwrap(),
            [Recorded::Now(JobStatus::Success)]
        );
        assert_eq!(store.get(&jid).await.unwrap().status, JobStatus::Success);
    }
}
