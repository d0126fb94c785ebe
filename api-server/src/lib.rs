//! The Jobs API server: the gRPC `JobService`, `grpc.health.v1.Health` and
//! server reflection, over the Redis store of `jobs-core`.
//!
//! # Layout
//!
//! - [`Config`] and [`run`]: what `main` calls. The caller binds the listener
//!   and owns the shutdown token, so tests bind port 0 and drive the real
//!   server over TCP.
//! - `grpc`: the `JobService` handlers: parse the request into domain values,
//!   call the store, convert back. No job logic lives there.
//! - `errors`: the one place where store errors become gRPC statuses.

mod errors;
mod grpc;

use std::net::SocketAddr;

use anyhow::Context;
use jobs_core::{RedisConfig, Store};
use jobs_proto::pb::job_service_server::JobServiceServer;
use jobs_worker::{Registry, WorkerConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// The largest gRPC message the server accepts.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Serves the Jobs API: gRPC with health and reflection. With `--dev` it also
/// runs workers in-process, so one command gives a working system.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "jobs-api", version)]
pub struct Config {
    /// Where Redis is.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Address the gRPC server listens on.
    #[arg(long, env = "JOBS_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// Also run workers in this process (for a first look or local
    /// development; production runs `jobs-worker` processes).
    #[arg(long, env = "JOBS_DEV")]
    pub dev: bool,

    /// Settings of the in-process workers, used with --dev.
    #[command(flatten)]
    pub worker: WorkerConfig,
}

/// Serves gRPC on `grpc` until `shutdown` is cancelled, then drains calls in
/// flight (watch streams end) and returns.
pub async fn run(
    config: &Config,
    grpc: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.redis)
        .await
        .with_context(|| format!("connecting to Redis at {}", config.redis.url()))?;

    let dev_worker = config.dev.then(|| {
        let (redis, worker, shutdown) = (
            config.redis.clone(),
            config.worker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            jobs_worker::run(&redis, &worker, Registry::builtin(), shutdown).await
        })
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<JobServiceServer<grpc::JobsGrpc>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jobs_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl before 1.9 speaks only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jobs_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let jobs = JobServiceServer::new(grpc::JobsGrpc::new(store, shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    tracing::info!(addr = %grpc.local_addr()?, dev = config.dev, "gRPC listening");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(jobs)
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.cancelled())
        .await
        .context("gRPC server")?;

    if let Some(worker) = dev_worker {
        worker.await.context("in-process worker")??;
    }
    Ok(())
}
