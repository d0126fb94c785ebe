//! `jobs-worker`: runs jobs from the queue until SIGINT or SIGTERM.

use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;
use jobs_core::{RedisConfig, Retention};
use jobs_worker::{MetricsAddr, Registry, WorkerConfig, all_cpus, process, telemetry};

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
    /// Threads that run the claim loops and the handlers (default: the
    /// number of CPUs). Fewer cost less CPU per job, and leave more to a
    /// Redis on the same machine: on 2 CPUs, one thread spent 10-20 % less
    /// CPU per short job than two; the drain was as fast on a quiet host
    /// and ~10 % slower on a loaded one (BENCHMARKS.md).
    #[arg(long, env = "JOBS_WORKER_THREADS", default_value_t = all_cpus())]
    threads: NonZeroUsize,
    #[command(flatten)]
    tracing: telemetry::TracingConfig,
}

// glibc's allocator took about a sixth of this server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Before the runtime's threads exist and allocate.
    let huge_pages_off = huge_pages_off();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.get())
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args, huge_pages_off))
}

/// Turns transparent huge pages off for this process. mimalloc is built
/// not to ask for them (`no_thp`, in the workspace's Cargo.toml); this
/// covers hosts that hand them to every mapping unasked (`always`). With
/// them a drain ran 7–18 % slower on the project's machine
/// (`scripts/profile.sh drain`), and a start waited up to 4 ms for each
/// fresh 2 MiB page to be zeroed. The worker's heap is small: 4 KiB pages
/// cost it nothing measurable.
#[cfg(target_os = "linux")]
fn huge_pages_off() -> std::io::Result<()> {
    Ok(rustix::thread::disable_transparent_huge_pages(true)?)
}

#[cfg(not(target_os = "linux"))]
fn huge_pages_off() -> std::io::Result<()> {
    Ok(())
}

async fn serve(args: Args, huge_pages_off: std::io::Result<()>) -> anyhow::Result<()> {
    let tracing = telemetry::init(&args.tracing, "jobs-worker")?;
    if let Err(err) = huge_pages_off {
        tracing::debug!(%err, "transparent huge pages stay on");
    }
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
