//! `jobs-worker`: runs jobs from the queue until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use jobs_core::{RedisConfig, Retention};
use jobs_worker::{Registry, WorkerConfig, process};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    process::init_tracing();
    let shutdown = process::shutdown_on_signals();
    jobs_worker::run(
        &args.redis,
        &args.worker,
        args.retention,
        Registry::builtin(),
        shutdown,
    )
    .await
    .with_context(|| format!("worker against {}", args.redis.url()))
}
