//! `jobs-api`: the Jobs API server.

use anyhow::Context;
use clap::Parser;
use jobs_api::Config;
use jobs_worker::{process, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
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
