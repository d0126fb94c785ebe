//! The Jobs API server: the gRPC `JobService` and `DataService`,
//! `grpc.health.v1.Health` and server reflection, and the REST gateway, over
//! the Redis store of `jobs-core`.
//!
//! # Layout
//!
//! - [`Config`] and [`run`]: what `main` calls. The caller binds the
//!   listeners and owns the shutdown token, so tests bind port 0 and drive
//!   the real server over TCP.
//! - `grpc`, `data_grpc`: the `JobService` and `DataService` handlers: parse
//!   the request into domain values, call the store, convert back. No job
//!   logic lives there.
//! - `rest`: the REST gateway (axum): the same calls over HTTP/JSON.
//! - `http`: serves the gateway's connections, with the header timeout
//!   that bounds slow and idle clients.
//! - `errors`: the one place where store errors become gRPC statuses and
//!   HTTP problem responses.
//! - `observe`: a span and metrics per request (REST middleware, gRPC tower
//!   layer), the API's job counts, and the text of `/metrics`.

mod auth;
mod data_grpc;
mod errors;
mod grpc;
mod http;
mod observe;
mod rest;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use jobs_core::{Dataset, JobDefaults, RedisConfig, Retention, Store};
use jobs_proto::pb::{
    data_service_server::DataServiceServer, job_service_server::JobServiceServer,
};
use jobs_worker::{Registry, WorkerConfig, WorkerMetrics, telemetry::TracingConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    server::NamedService, service::interceptor::InterceptedService, transport::server::TcpIncoming,
};

/// The largest gRPC message the server accepts.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Serves the Jobs API: gRPC with health and reflection, and the REST
/// gateway. With `--dev` it also
/// runs workers in-process, so one command gives a working system.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "jobs-api", version)]
pub struct Config {
    /// Where Redis is.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Threads serving requests (default: half the CPUs, at least one).
    /// Redis does about as much work per request as this server, and usually
    /// shares its machine: more threads than that only add hand-offs
    /// between them (on 2 CPUs, one thread serves ~25 % more requests than
    /// two).
    #[arg(long, env = "JOBS_API_THREADS", default_value_t = default_threads())]
    pub threads: std::num::NonZeroUsize,

    /// Address the gRPC server listens on.
    #[arg(long, env = "JOBS_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// Address the REST gateway listens on.
    #[arg(long, env = "JOBS_HTTP_ADDR", default_value = "0.0.0.0:5000")]
    pub http_addr: SocketAddr,

    /// The largest request body the REST gateway takes on /jobs, in bytes.
    #[arg(long, env = "JOBS_HTTP_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub http_body_limit: usize,

    /// The largest request body the REST gateway takes on /data (a whole
    /// dataset), in bytes; also the most a gRPC LoadData stream may send.
    #[arg(long, env = "JOBS_HTTP_DATA_BODY_LIMIT", default_value_t = 64 * 1024 * 1024)]
    pub http_data_body_limit: usize,

    /// How long the REST gateway waits for a request's headers, in
    /// milliseconds, and how long it keeps an idle connection open between
    /// requests: a client that sends half a request, or nothing, cannot
    /// hold a connection longer (slowloris).
    #[arg(long, env = "JOBS_HTTP_HEADER_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,

    /// How long the REST gateway waits for a request's whole body, in
    /// milliseconds, before it answers 408 and closes the connection.
    #[arg(long, env = "JOBS_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_timeout_ms: u64,

    /// Also run workers in this process (for a first look or local
    /// development; production runs `jobs-worker` processes).
    #[arg(long, env = "JOBS_DEV")]
    pub dev: bool,

    /// What jobs get when they do not say.
    #[command(flatten)]
    pub defaults: JobDefaults,

    /// How long finished jobs and results are kept.
    #[command(flatten)]
    pub retention: Retention,

    /// A bearer token every call must carry (`authorization: Bearer …`),
    /// except the health service. Unset: no authentication.
    #[arg(long, env = "JOBS_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Settings of the in-process workers, used with --dev.
    #[command(flatten)]
    pub worker: WorkerConfig,

    /// Span export.
    #[command(flatten)]
    pub tracing: TracingConfig,
}

/// Serves gRPC on `grpc` and the REST gateway on `http` until `shutdown` is
/// cancelled, then drains calls in flight (watch streams end) and returns.
pub async fn run(
    config: &Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.redis)
        .await
        .with_context(|| format!("Redis at {}", config.redis.url()))?
        .with_defaults(config.defaults.clone())
        .with_retention(config.retention);
    let dataset =
        Dataset::new(&config.redis).with_context(|| format!("Redis at {}", config.redis.url()))?;

    let observer = observe::Observer::new(store.clone(), WorkerMetrics::new(), config.dev);
    let dev_worker = config.dev.then(|| {
        let (redis, worker, retention, shutdown) = (
            config.redis.clone(),
            config.worker.clone(),
            config.retention,
            shutdown.clone(),
        );
        // The in-process workers count into the API's own /metrics.
        let metrics = observer.job_metrics();
        tokio::spawn(async move {
            jobs_worker::run_with_metrics(
                &redis,
                &worker,
                retention,
                Registry::builtin(),
                metrics,
                shutdown,
            )
            .await
        })
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    // Known before the first call is served, so a probe never sees a
    // service as unknown.
    let up = store.ping().await.is_ok();
    set_health(&health, up).await;
    tokio::spawn(report_health(
        store.clone(),
        dataset.clone(),
        health,
        up,
        shutdown.clone(),
    ));
    let auth = auth::BearerToken::new(config.api_token.clone());
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jobs_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl before 1.9 speaks only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jobs_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let jobs = JobServiceServer::new(grpc::JobsGrpc::new(
        store.clone(),
        observer.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let data = DataServiceServer::new(data_grpc::DataGrpc::new(
        dataset.clone(),
        config.http_data_body_limit,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let rest = rest::router(
        rest::AppState::new(rest::Services {
            store,
            dataset,
            observer: observer.clone(),
        }),
        rest::BodyLimits {
            jobs: config.http_body_limit,
            data: config.http_data_body_limit,
            timeout: Duration::from_millis(config.http_body_timeout_ms),
        },
        auth.clone(),
    )?;

    tracing::info!(addr = %grpc.local_addr()?, dev = config.dev, auth = config.api_token.is_some(), "gRPC listening");
    tracing::info!(addr = %http.local_addr()?, "REST gateway listening");
    let grpc_server = async {
        tonic::transport::Server::builder()
            .layer(observe::GrpcLayer::new(observer))
            .add_service(health_service)
            .add_service(InterceptedService::new(reflection_v1, auth.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, auth.clone()))
            .add_service(InterceptedService::new(jobs, auth.clone()))
            .add_service(InterceptedService::new(data, auth))
            .serve_with_incoming_shutdown(
                // Watch streams send small messages: Nagle's algorithm would
                // hold each one back for the client's delayed acknowledgement.
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                shutdown.cancelled(),
            )
            .await
            .context("gRPC server")
    };
    let http_server = async {
        let header_timeout = Duration::from_millis(config.http_header_timeout_ms);
        http::serve(http, rest, header_timeout, shutdown.clone()).await;
        anyhow::Ok(())
    };
    // Either failing stops both (try_join drops the other).
    tokio::try_join!(grpc_server, http_server)?;

    if let Some(worker) = dev_worker {
        worker.await.context("in-process worker")??;
    }
    Ok(())
}

/// The services whose health is reported: the server as a whole ("") and
/// each Jobs service.
const HEALTH_SERVICES: [&str; 3] = [
    "",
    <JobServiceServer<grpc::JobsGrpc> as NamedService>::NAME,
    <DataServiceServer<data_grpc::DataGrpc> as NamedService>::NAME,
];

/// Sets every reported service's health from whether Redis answers.
async fn set_health(health: &tonic_health::server::HealthReporter, up: bool) {
    let status = if up {
        tonic_health::ServingStatus::Serving
    } else {
        tracing::warn!("Redis does not answer: reporting NOT_SERVING");
        tonic_health::ServingStatus::NotServing
    };
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Keeps the gRPC health status in step with Redis: NOT_SERVING while Redis
/// does not answer, so orchestrators route around the outage. `serving` is
/// the status already reported. The dataset's connections are pinged too:
/// one that dropped (Redis restarted) fails the next command sent on it,
/// which should be a ping, not a client's call.
async fn report_health(
    store: Store,
    dataset: Dataset,
    health: tonic_health::server::HealthReporter,
    mut serving: bool,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let (store_ping, dataset_ping) = tokio::join!(store.ping(), dataset.ping());
        let up = store_ping.is_ok();
        if up && let Err(err) = dataset_ping {
            tracing::debug!(%err, "a dataset connection did not answer the ping");
        }
        if serving != up {
            set_health(&health, up).await;
            serving = up;
        }
    }
}

/// Half the CPUs this process may use, at least one.
fn default_threads() -> std::num::NonZeroUsize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    std::num::NonZeroUsize::new(cpus.div_ceil(2)).unwrap_or(std::num::NonZeroUsize::MIN)
}
