//! `jobs-api`: the Jobs API server.

use anyhow::Context;
use clap::Parser;
use jobs_api::Config;
use jobs_worker::{process, telemetry};
use tokio::net::TcpListener;

// glibc's allocator took about a sixth of this server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.get())
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let tracing = telemetry::init(&config.tracing, "jobs-api")?;
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", config.http_addr))?;
    let shutdown = process::shutdown_on_signals();
    let ran = jobs_api::run(&config, grpc, http, shutdown).await;
    tracing.shutdown().await;
    ran
}
