//! `jobs-worker`: runs jobs from the queue until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use jobs_core::{RedisConfig, Retention};
use jobs_worker::{MetricsAddr, Registry, WorkerConfig, process, telemetry};

/// Takes jobs off the Jobs queue in Redis, runs them and records their
/// status and results. Run as many as you like; each job runs on one.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    redis: RedisConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    retention: Retention,
    /// Where to serve metrics (`GET /metrics`, Prometheus text), or `off`.
    /// Port 0 picks a free port (logged). Workers sharing a host need an
    /// address each.
    #[arg(long, env = "JOBS_WORKER_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: MetricsAddr,
    #[command(flatten)]
    tracing: telemetry::TracingConfig,
}

// glibc's allocator took about a sixth of this server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tracing = telemetry::init(&args.tracing, "jobs-worker")?;
    let metrics = match args.metrics_addr {
        MetricsAddr::Off => None,
        // Running jobs matters more than being scraped: a taken address (a
        // second worker on the host) costs the endpoint, not the worker.
        MetricsAddr::At(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::error!(%addr, %err, "no metrics endpoint: cannot bind JOBS_WORKER_METRICS_ADDR (give each worker its own, or `off`)");
                None
            }
        },
    };
    let shutdown = process::shutdown_on_signals();
    let ran = jobs_worker::serve(
        &args.redis,
        &args.worker,
        args.retention,
        Registry::builtin(),
        metrics,
        shutdown,
    )
    .await
    .with_context(|| format!("worker against {}", args.redis.url()));
    tracing.shutdown().await;
    ran
}
