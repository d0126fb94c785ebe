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

use std::num::NonZeroUsize;

use jobs_core::{Queue, RedisConfig};
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            name: None,
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
/// then it takes no more jobs, lets the jobs in flight finish and records
/// their outcomes before it returns.
pub async fn run(
    redis: &RedisConfig,
    config: &WorkerConfig,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), jobs_core::Error> {
    let name = config.name.clone().unwrap_or_else(default_name);
    let queue = Queue::connect(redis, name).await?;
    tracing::info!(
        consumer = queue.consumer(),
        concurrency = config.concurrency,
        "worker started"
    );
    runner::Runner::new(queue, registry, config.concurrency.get())
        .run(shutdown)
        .await;
    tracing::info!("worker stopped");
    Ok(())
}
