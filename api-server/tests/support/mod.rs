//! Starts the real API server (and, when asked, workers) on port 0 against
//! the test's own Redis prefix, and hands back a connected gRPC client and
//! the REST gateway's base URL, with a small HTTP client for it.

#![allow(dead_code, unreachable_pub)]

use std::{future::Future, time::Duration};

use clap::Parser;
use jobs_api::Config;
use jobs_core::{RedisConfig, Retention};
use jobs_proto::pb::{self, job_service_client::JobServiceClient};
use jobs_testkit::TestRedis;
use jobs_worker::{Registry, WorkerConfig};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct TestApp {
    pub redis: TestRedis,
    pub client: JobServiceClient<Channel>,
    pub channel: Channel,
    pub addr: std::net::SocketAddr,
    /// The REST gateway's base URL, `http://127.0.0.1:{port}`.
    pub http: String,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    workers: Vec<(CancellationToken, JoinHandle<Result<(), jobs_core::Error>>)>,
}

impl TestApp {
    /// The API server alone: jobs stay QUEUED until a worker is started.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The API server alone, with these extra flags.
    pub async fn start_with(flags: &[&str]) -> Self {
        Self::start_on(TestRedis::start(), flags).await
    }

    /// The API server alone, on this Redis, with these extra flags.
    pub async fn start_on(redis: TestRedis, flags: &[&str]) -> Self {
        let mut args = vec![
            "jobs-api",
            "--redis-url",
            redis.url(),
            "--key-prefix",
            redis.prefix(),
        ];
        args.extend_from_slice(flags);
        let config = Config::parse_from(args);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = format!("http://{}", http_listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { jobs_api::run(&config, listener, http_listener, shutdown).await }
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            redis,
            client: JobServiceClient::new(channel.clone()),
            channel,
            addr,
            http,
            shutdown,
            server: Some(server),
            workers: Vec::new(),
        }
    }

    /// The API server with one worker running the built-in handlers.
    pub async fn with_worker() -> Self {
        let mut app = Self::start().await;
        app.start_worker(Registry::builtin(), 4);
        app
    }

    pub fn redis_config(&self) -> RedisConfig {
        RedisConfig::new(self.redis.url(), self.redis.prefix())
    }

    /// Starts one more worker with these handlers and this concurrency.
    pub fn start_worker(&mut self, registry: Registry, concurrency: usize) {
        let config = WorkerConfig {
            concurrency: concurrency.try_into().unwrap(),
            ..WorkerConfig::default()
        };
        self.start_worker_with(registry, config);
    }

    /// Starts one more worker with these handlers and settings.
    pub fn start_worker_with(&mut self, registry: Registry, mut config: WorkerConfig) {
        let redis = self.redis_config();
        config.name = Some(format!("test-worker-{}", self.workers.len()));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                jobs_worker::run(&redis, &config, Retention::default(), registry, shutdown).await
            }
        });
        self.workers.push((shutdown, handle));
    }

    pub async fn create(&mut self, start: i64, end: i64, kind: &str) -> pb::Job {
        self.create_with(start, end, kind, None).await
    }

    pub async fn create_with(
        &mut self,
        start: i64,
        end: i64,
        kind: &str,
        params: Option<serde_json::Value>,
    ) -> pb::Job {
        let params = params.map(|p| jobs_proto::params_to_struct(p.as_object().unwrap().clone()));
        self.client
            .create_job(pb::CreateJobRequest {
                start,
                end,
                kind: kind.into(),
                params,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap()
    }

    /// The first page of every job, newest first.
    pub async fn list(&mut self) -> pb::ListJobsResponse {
        self.client
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn get(&mut self, jid: &str) -> pb::Job {
        self.client
            .get_job(pb::GetJobRequest { jid: jid.into() })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap()
    }

    /// Opens a watch on the job.
    pub async fn watch(&mut self, jid: &str) -> tonic::Streaming<pb::WatchJobResponse> {
        self.client
            .watch_job(pb::WatchJobRequest { jid: jid.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// The job's outcome, which must be ready.
    pub async fn result(&mut self, jid: &str) -> pb::GetJobResultResponse {
        self.client
            .get_job_result(pb::GetJobResultRequest { jid: jid.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// Follows the job until it ends; returns its final state.
    pub async fn wait_finished(&mut self, jid: &str) -> pb::Job {
        let mut stream = self.watch(jid).await;
        let mut last = None;
        within(Duration::from_secs(30), async {
            while let Some(update) = stream.message().await.unwrap() {
                last = update.job;
            }
        })
        .await;
        let job = last.expect("the watch sent at least one state");
        assert!(
            is_terminal(job.status()),
            "the watch ended before the job did: {job:?}"
        );
        job
    }

    /// Tells the server to shut down, without waiting: calls in flight
    /// drain, and what they send meanwhile can be observed.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the workers (letting jobs in flight finish), then the server.
    pub async fn stop(mut self) {
        self.stop_workers().await;
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn stop_workers(&mut self) {
        for (shutdown, handle) in self.workers.drain(..) {
            shutdown.cancel();
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for (shutdown, _) in &self.workers {
            shutdown.cancel();
        }
    }
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Asserts a problem+json error with this status, and returns its body.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert_eq!(problem["type"], "about:blank");
        assert!(problem["title"].is_string() && problem["detail"].is_string());
        problem
    }
}

impl TestApp {
    /// Sends one HTTP request to the REST gateway. A body is sent with
    /// `content_type` when both are given.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> HttpResponse {
        http_request(&format!("{}{path}", self.http), method, body).await
    }

    /// The REST gateway's base URL.
    pub fn http_base(&self) -> &str {
        &self.http
    }

    /// A JSON request to the REST gateway.
    pub async fn http_json(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> HttpResponse {
        self.http(
            method,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }
}

/// Sends one HTTP/1.1 request and reads the whole response.
pub async fn http_request(url: &str, method: &str, body: Option<(&str, Vec<u8>)>) -> HttpResponse {
    http_request_with(url, method, &[], body).await
}

/// The same, with extra headers.
pub async fn http_request_with(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> HttpResponse {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = axum::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            request = request.header("content-type", content_type);
            bytes
        }
        None => Vec::new(),
    };
    let request = request.body(Full::from(payload)).unwrap();
    let response = within(Duration::from_secs(60), client.request(request))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    HttpResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub fn is_terminal(status: pb::JobStatus) -> bool {
    matches!(
        status,
        pb::JobStatus::Success | pb::JobStatus::Error | pb::JobStatus::Cancelled
    )
}

/// Fails the test if `future` takes longer than `limit` (a hang guard, not
/// a speed assertion).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .expect("timed out: the awaited event never came")
}
