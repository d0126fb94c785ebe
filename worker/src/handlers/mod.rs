//! The handlers that run jobs, one file per kind, and the [`Registry`] that
//! maps kind names to them. Adding a kind: its spec in `jobs_core::kinds`, a
//! file here, and one line in [`Registry::builtin`].

mod fail;
mod sleep;
mod sum;

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use jobs_core::{Job, LeaseAck, Queue};
use tokio_util::sync::CancellationToken;

use crate::runner::{Attempt, Stop};

/// Runs jobs of one kind.
///
/// A handler runs on the worker's async runtime, side by side with the other
/// jobs of its claim, several to a task (one task per runtime thread): one
/// that computes for long, or blocks, holds up the jobs sharing its task
/// until it awaits. Such work belongs in `tokio::task::spawn_blocking`.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt of the job in `ctx`; returns its result as JSON.
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobFailure>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, JobFailure>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobFailure>> {
        Box::pin(self(ctx))
    }
}

/// Why an attempt failed, as the job's `error` will say, and whether another
/// attempt could succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobFailure {
    message: String,
    retryable: bool,
}

impl JobFailure {
    /// A failure another attempt may not repeat: retried while the job has
    /// attempts left.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (bad input, say): the job ends ERROR now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// The handlers a worker knows, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    /// A handler for every built-in kind.
    pub fn builtin() -> Self {
        use jobs_core::kinds;
        Self::default()
            .with(kinds::sum::NAME, sum::run)
            .with(kinds::sleep::NAME, sleep::run)
            .with(kinds::fail::NAME, fail::run)
    }

    /// Adds (or replaces) the handler of `kind`.
    pub fn with(mut self, kind: &str, handler: impl Handler) -> Self {
        self.handlers.insert(kind.to_owned(), Arc::new(handler));
        self
    }

    /// The handler of `kind`, if any.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }
}

/// The shortest interval between two progress reports of one attempt.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What a handler gets: the job, a cancellation token, and a way to report
/// progress.
#[derive(Debug)]
pub struct JobContext {
    job: Job,
    attempt: Arc<Attempt>,
    queue: Queue,
    last_report: Option<Instant>,
}

impl JobContext {
    pub(crate) fn new(job: Job, attempt: Arc<Attempt>, queue: Queue) -> Self {
        Self {
            job,
            attempt,
            queue,
            last_report: None,
        }
    }

    /// The job, as it was when this attempt started (without its attempt
    /// history and earlier error, which the claim leaves in Redis).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt.lease().attempt()
    }

    /// Cancelled when the handler should stop: the job was cancelled, this
    /// worker lost its lease, or it is shutting down. Long handlers should
    /// select on it; the worker also drops the handler's future then.
    pub fn cancellation(&self) -> &CancellationToken {
        self.attempt.token()
    }

    /// Reports how far the attempt has got (`fraction` from 0 to 1). Reports
    /// closer together than 100 ms are skipped, so calling it often is cheap.
    /// If the job was cancelled meanwhile, cancels [`Self::cancellation`].
    pub async fn report_progress(&mut self, fraction: f64) {
        if self
            .last_report
            .is_some_and(|last| last.elapsed() < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_report = Some(Instant::now());
        match self
            .queue
            .report_progress(self.attempt.lease(), fraction)
            .await
        {
            Ok(LeaseAck::Held) => {}
            Ok(LeaseAck::CancelRequested) => self.attempt.stop(Stop::Cancelled),
            Ok(LeaseAck::Lost) => self.attempt.stop(Stop::Lost),
            // Progress is advisory: a failed report must not fail the job.
            Err(err) => tracing::debug!(jid = %self.job.jid, %err, "progress report failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Registry;

    #[test]
    fn every_kind_the_api_accepts_has_a_handler() {
        let registry = Registry::builtin();
        for kind in jobs_core::kinds::names() {
            assert!(registry.get(kind).is_some(), "no handler for kind {kind}");
        }
    }
}
