//! The Jobs worker: takes jobs off the queue, runs their handlers, records
//! the outcome.
//!
//! # Layout
//!
//! - [`WorkerConfig`] and [`run`]: what the binary (and `jobs-api --dev`)
//!   calls; the caller owns the shutdown token.
//! - `runner`: the claim loop, the per-job tasks, the batched recording of
//!   outcomes, and the cancellation listener.
//! - [`handlers`]: the [`Registry`] of handlers, one file per job kind.
//! - [`process`]: what every binary does at its edge: logging and signals.

pub mod handlers;
pub mod process;
mod runner;

use std::{num::NonZeroUsize, time::Duration};

use jobs_core::{Queue, QueueSettings, RedisConfig, Retention};
use tokio_util::sync::CancellationToken;

pub use handlers::{Handler, JobContext, JobFailure, Registry};

/// How a worker runs.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// How many jobs this worker runs at once (default: the number of CPUs).
    #[arg(long = "concurrency", env = "JOBS_WORKER_CONCURRENCY", default_value_t = default_concurrency())]
    pub concurrency: NonZeroUsize,

    /// The name this worker reads the queue as; unique per process
    /// (default: host name, process id and start time).
    #[arg(long = "worker-name", env = "JOBS_WORKER_NAME")]
    pub name: Option<String>,

    /// How long a job stays leased to this worker without renewal, in
    /// milliseconds. The worker renews every third of it; if it dies, another
    /// worker takes its jobs once their lease lapses.
    #[arg(long, env = "JOBS_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub lease_ms: u64,

    /// On SIGTERM or SIGINT, how long jobs in flight may run on before they
    /// are handed back to the queue for another worker, in milliseconds.
    #[arg(long, env = "JOBS_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,

    /// Backoff before the first retry of a failed attempt, in milliseconds;
    /// it doubles with each attempt, with jitter.
    #[arg(long, env = "JOBS_RETRY_BACKOFF_MS", default_value_t = 1_000)]
    pub retry_backoff_ms: u64,

    /// The longest backoff between retries, in milliseconds.
    #[arg(long, env = "JOBS_RETRY_BACKOFF_MAX_MS", default_value_t = 300_000)]
    pub retry_backoff_max_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            name: None,
            lease_ms: 30_000,
            shutdown_grace_ms: 30_000,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 300_000,
        }
    }
}

fn default_concurrency() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn default_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros())
        .unwrap_or_default();
    format!("{host}-{}-{started:x}", std::process::id())
}

/// Runs a worker against the Redis of `redis` until `shutdown` is cancelled;
/// then it takes no more jobs, lets the jobs in flight finish within the
/// shutdown grace, hands the rest back to the queue, and records every
/// outcome before it returns.
pub async fn run(
    redis: &RedisConfig,
    config: &WorkerConfig,
    retention: Retention,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), jobs_core::Error> {
    let name = config.name.clone().unwrap_or_else(default_name);
    let settings = QueueSettings {
        lease: Duration::from_millis(config.lease_ms),
        retention,
    };
    // Redis may come up after the worker (or be restarting): wait for it.
    let mut pause = Duration::from_millis(100);
    let queue = loop {
        match Queue::connect(redis, name.clone(), settings).await {
            Ok(queue) => break queue,
            Err(err) if err.is_unavailable() => {
                tracing::warn!(%err, url = %redis.url(), retry_in = ?pause, "Redis not reachable yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    };
    tracing::info!(
        consumer = queue.consumer(),
        concurrency = config.concurrency,
        lease_ms = config.lease_ms,
        "worker started"
    );
    runner::Runner::new(queue, registry, config)
        .run(shutdown)
        .await;
    tracing::info!("worker stopped");
    Ok(())
}
