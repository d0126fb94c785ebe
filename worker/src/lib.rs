//! The Jobs worker: takes jobs off the queue, runs their handlers, records
//! the outcome.
//!
//! # Layout
//!
//! - [`WorkerConfig`] and [`run`]: what `jobs-api --dev` and tests call;
//!   the caller owns the shutdown token. [`serve`] is the binary's: the same
//!   with a metrics endpoint on a listener the caller bound.
//! - `runner`: the claim loop, the per-job tasks, the batched recording of
//!   outcomes, and the cancellation listener.
//! - [`handlers`]: the [`Registry`] of handlers, one file per job kind.
//! - [`metrics`]: [`WorkerMetrics`], what a worker counts, and the tiny HTTP
//!   server of `GET /metrics`.
//! - [`telemetry`]: tracing for every binary (log, optional OTLP export) and
//!   the W3C trace context that links a job's attempts to its submitter.
//! - [`process`]: what every binary does at its edge: signals.

pub mod handlers;
pub mod metrics;
pub mod process;
mod runner;
pub mod telemetry;

use std::{num::NonZeroUsize, time::Duration};

use jobs_core::{Queue, QueueSettings, RedisConfig, Retention};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use handlers::{Handler, JobContext, JobFailure, Registry};
pub use metrics::{MetricsAddr, WorkerMetrics};

/// How a worker runs.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// How many jobs this worker runs at once (default: the number of CPUs).
    #[arg(long = "concurrency", env = "JOBS_WORKER_CONCURRENCY", default_value_t = all_cpus())]
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
            concurrency: all_cpus(),
            name: None,
            lease_ms: 30_000,
            shutdown_grace_ms: 30_000,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 300_000,
        }
    }
}

/// The CPUs this process may use: the default concurrency, and the
/// `jobs-worker` binary's default thread count.
pub fn all_cpus() -> NonZeroUsize {
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
    run_with_metrics(
        redis,
        config,
        retention,
        registry,
        WorkerMetrics::new(),
        shutdown,
    )
    .await
}

/// [`serve`] without the endpoint: counts into `metrics`, which the caller
/// registered where it serves metrics (`jobs-api --dev` adds them to its own
/// `/metrics`).
pub async fn run_with_metrics(
    redis: &RedisConfig,
    config: &WorkerConfig,
    retention: Retention,
    registry: Registry,
    metrics: WorkerMetrics,
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
    // On a runtime thread, not the caller's: under `#[tokio::main]` the
    // caller is the main thread, and the claim loops there would hand every
    // reply and every job to a worker thread and back (a cross-thread wake
    // each, slow on an idle machine). Nothing aborts the task, so an error
    // is a panic: it goes on up, as it would have without the task.
    let runner = runner::Runner::new(queue, registry, config, metrics);
    if let Err(err) = tokio::spawn(runner.run(shutdown)).await {
        std::panic::resume_unwind(err.into_panic());
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// What the `jobs-worker` binary runs: [`run`], and, given a listener,
/// `GET /metrics` on it until the worker has stopped (so a last scrape sees
/// the jobs it finished while draining).
pub async fn serve(
    redis: &RedisConfig,
    config: &WorkerConfig,
    retention: Retention,
    registry: Registry,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), jobs_core::Error> {
    let metrics = WorkerMetrics::new();
    let stop_endpoint = CancellationToken::new();
    let endpoint = metrics_listener.map(|listener| {
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving metrics on /metrics");
        }
        tokio::spawn(metrics::serve(listener, registry, stop_endpoint.clone()))
    });
    let ran = run_with_metrics(redis, config, retention, registry, metrics, shutdown).await;
    stop_endpoint.cancel();
    if let Some(endpoint) = endpoint {
        match endpoint.await {
            Ok(Err(err)) => tracing::warn!(%err, "the metrics endpoint failed"),
            Err(err) => tracing::warn!(%err, "the metrics endpoint panicked"),
            Ok(Ok(())) => {}
        }
    }
    ran
}
