//! What the server shows of itself: a span and metrics for every request
//! (REST and gRPC), the job counts only the API sees, and the queue's depth,
//! read from Redis when `/metrics` is scraped (never per request).
//!
//! Each request span takes the caller's W3C `traceparent` (HTTP header or
//! gRPC metadata) as its parent; a job created inside it stores the context
//! to hand on (see `jobs_worker::telemetry::trace_parent_to_store`), so the
//! worker's attempt joins the same trace.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use futures_util::future::BoxFuture;
use jobs_core::{JobStatus, Store, TraceParent};
use jobs_worker::{WorkerMetrics, metrics::render, telemetry};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tracing::Instrument;

/// The W3C trace context header, in HTTP and in gRPC metadata alike.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Request latency buckets, in seconds: 0.1 ms to about 6 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.5, 13)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    rpc: String,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabel {
    rpc: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The API's metrics and the registry `/metrics` renders. Cheap to clone:
/// one reference count, since every request clones it.
#[derive(Debug, Clone)]
pub(crate) struct Observer(Arc<Metrics>);

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    store: Store,
    jobs: WorkerMetrics,
    created: Family<KindLabel, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<RouteLabels>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_latency: HistogramFamily<RpcLabel>,
    queue_waiting: Gauge,
    queue_running: Gauge,
    queue_delayed: Gauge,
    queue_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    redis_up: Gauge,
}

impl std::ops::Deref for Observer {
    type Target = Metrics;

    fn deref(&self) -> &Metrics {
        &self.0
    }
}

impl Observer {
    /// Metrics over `store`'s queue. `jobs` holds the job series a worker
    /// counts; the API adds to it only jobs cancelled before any worker took
    /// them, and `--dev` hands it to the in-process workers. Only when
    /// `runs_jobs` (`--dev`) are the worker's series shown: otherwise they
    /// would sit at 0, as if a worker were there and idle.
    pub(crate) fn new(store: Store, jobs: WorkerMetrics, runs_jobs: bool) -> Self {
        let mut registry = Registry::default();
        if runs_jobs {
            jobs.register(&mut registry);
        } else {
            jobs.register_finished(&mut registry);
        }
        let observer = Metrics {
            registry: Registry::default(),
            store,
            jobs,
            created: Family::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            grpc_requests: Family::default(),
            grpc_latency: Family::new_with_constructor(latency_histogram),
            queue_waiting: Gauge::default(),
            queue_running: Gauge::default(),
            queue_delayed: Gauge::default(),
            queue_oldest: Gauge::default(),
            redis_up: Gauge::default(),
        };
        registry.register(
            "jobs_created",
            "Jobs accepted, by kind (a repeat under an idempotency key is not counted)",
            observer.created.clone(),
        );
        registry.register(
            "jobs_queue_waiting",
            "Jobs queued that no worker has taken yet (read from Redis at scrape time)",
            observer.queue_waiting.clone(),
        );
        registry.register(
            "jobs_queue_running",
            "Jobs a worker has taken and not yet finished (read from Redis at scrape time)",
            observer.queue_running.clone(),
        );
        registry.register(
            "jobs_queue_delayed",
            "Jobs waiting out a retry backoff (read from Redis at scrape time)",
            observer.queue_delayed.clone(),
        );
        registry.register(
            "jobs_queue_oldest_waiting_seconds",
            "How long the oldest waiting job has waited since it was queued; 0 when none waits",
            observer.queue_oldest.clone(),
        );
        registry.register(
            "jobs_redis_up",
            "1 when the last scrape could read the queue from Redis, else 0 (the queue gauges then keep their last values)",
            observer.redis_up.clone(),
        );
        registry.register(
            "jobs_http_requests",
            "REST requests answered, by method, route template and status",
            observer.http_requests.clone(),
        );
        registry.register(
            "jobs_http_request_duration_seconds",
            "REST request latency until the response head, by method and route template",
            observer.http_latency.clone(),
        );
        registry.register(
            "jobs_grpc_requests",
            "gRPC calls answered, by method and status code (a stream's code as of its response head)",
            observer.grpc_requests.clone(),
        );
        registry.register(
            "jobs_grpc_request_duration_seconds",
            "gRPC call latency until the response head (for a stream, its first message), by method",
            observer.grpc_latency.clone(),
        );
        Self(Arc::new(Metrics {
            registry,
            ..observer
        }))
    }

    /// The job series, for the in-process workers of `--dev`.
    pub(crate) fn job_metrics(&self) -> WorkerMetrics {
        self.jobs.clone()
    }

    /// Counts a job just created (not a replay).
    pub(crate) fn created(&self, kind: &str) {
        self.created
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts a cancellation that ended a job at once (it was queued): no
    /// worker will see it, so the API counts it as finished.
    pub(crate) fn cancelled(&self, kind: &str, status: JobStatus) {
        if status == JobStatus::Cancelled {
            self.jobs.cancelled_before_start(kind);
        }
    }

    /// The text of a scrape: the queue read from Redis now, then every
    /// series. One script call; when Redis does not answer, `jobs_redis_up`
    /// says so and the rest is still served.
    pub(crate) async fn render(&self) -> Result<String, std::fmt::Error> {
        match self.store.queue_stats().await {
            Ok(stats) => {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                self.queue_waiting.set(count(stats.waiting));
                self.queue_running.set(count(stats.running));
                self.queue_delayed.set(count(stats.delayed));
                self.queue_oldest
                    .set(stats.oldest_waiting.map_or(0.0, |age| age.as_secs_f64()));
                self.redis_up.set(1);
            }
            Err(err) => {
                tracing::warn!(%err, "cannot read the queue for /metrics");
                self.redis_up.set(0);
            }
        }
        render(&self.registry)
    }

    fn http(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    fn grpc(&self, rpc: &str, code: tonic::Code, took: Duration) {
        // The path is the client's to choose: only served methods get a series.
        let rpc = if code == tonic::Code::Unimplemented {
            "unknown"
        } else {
            rpc.trim_start_matches('/')
        };
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                rpc: rpc.to_owned(),
                code: code_name(code),
            })
            .inc();
        self.grpc_latency
            .get_or_create(&RpcLabel {
                rpc: rpc.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The caller's trace context from a `traceparent` header, if it sent a
/// valid one (an invalid one is ignored, as W3C asks).
fn caller_trace(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| TraceParent::parse(text).ok())
}

/// A span per REST request, as the caller's trace's child, and its count and
/// latency by route template.
pub(crate) async fn observe_http(observer: Observer, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    // Templates only: raw paths would make a series per job id.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http request",
        otel.name = %format_args!("{method} {route}"),
        http.request.method = method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        jid = tracing::field::Empty,
    );
    if let Some(parent) = caller_trace(request.headers()) {
        telemetry::set_parent(&span, &parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    observer.http(method, &route, status, started.elapsed());
    response
}

/// A tower layer that gives each gRPC call a span (the caller's trace's
/// child) and counts it by method and status code.
#[derive(Debug, Clone)]
pub(crate) struct GrpcLayer {
    observer: Observer,
}

impl GrpcLayer {
    pub(crate) fn new(observer: Observer) -> Self {
        Self { observer }
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcObserved<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcObserved {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// A gRPC service inside [`GrpcLayer`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcObserved<S> {
    inner: S,
    observer: Observer,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcObserved<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "grpc request",
            otel.name = %path.trim_start_matches('/'),
            rpc.system = "grpc",
            rpc.method = %path,
            rpc.grpc.status_code = tracing::field::Empty,
            jid = tracing::field::Empty,
        );
        if let Some(parent) = caller_trace(request.headers()) {
            telemetry::set_parent(&span, &parent);
        }
        // The clone that was made ready must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let observer = self.observer.clone();
        Box::pin(
            {
                let span = span.clone();
                async move {
                    let response = inner.call(request).await;
                    // An error returned by a handler travels in the response head
                    // (trailers-only); a success's code comes in the trailers.
                    let code = match &response {
                        Ok(response) => response
                            .headers()
                            .get("grpc-status")
                            .and_then(|value| value.to_str().ok())
                            .and_then(|text| text.parse::<i32>().ok())
                            .map_or(tonic::Code::Ok, tonic::Code::from),
                        Err(_) => tonic::Code::Internal,
                    };
                    span.record("rpc.grpc.status_code", code as i32);
                    observer.grpc(&path, code, started.elapsed());
                    response
                }
            }
            .instrument(span),
        )
    }
}

/// gRPC's own name for a status code.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Names the job in the current request's span, so its logs and its trace
/// carry the jid.
pub(crate) fn record_jid(jid: &jobs_core::JobId) {
    tracing::Span::current().record("jid", tracing::field::display(jid));
}
