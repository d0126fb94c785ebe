//! Retries, timeouts, idempotency, the bearer token and Redis outages, seen
//! from a gRPC client.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::time::{Duration, Instant};

use jobs_proto::pb::{self, JobStatus, job_service_client::JobServiceClient};
use jobs_testkit::TestRedis;
use jobs_worker::{Registry, WorkerConfig};
use support::TestApp;
use tonic::{Code, Request, metadata::MetadataValue};

fn fast_retries() -> WorkerConfig {
    WorkerConfig {
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 1000,
        ..WorkerConfig::default()
    }
}

fn micros(time: &prost_types::Timestamp) -> i64 {
    time.seconds * 1_000_000 + i64::from(time.nanos) / 1000
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    let mut app = TestApp::start().await;
    app.start_worker_with(Registry::builtin(), fast_retries());
    let job = app
        .create_with(
            1,
            1,
            "fail",
            Some(serde_json::json!({"message": "flaky", "fail_attempts": 2})),
        )
        .await;
    assert_eq!(job.max_attempts, 3, "the server's default");
    let done = app.wait_finished(&job.jid).await;
    assert_eq!(done.status(), JobStatus::Success);
    assert_eq!(done.attempts, 3);
    let history: Vec<_> = done
        .history
        .iter()
        .map(|a| (a.number, a.outcome.as_str(), a.error.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            (1, "FAILED", "flaky"),
            (2, "FAILED", "flaky"),
            (3, "SUCCESS", "")
        ]
    );
    // Each retry waited at least half its backoff: 50 ms, then 100 ms.
    for (pair, least) in done.history.windows(2).zip([50_000, 100_000]) {
        let gap = micros(pair[1].start_time.as_ref().unwrap())
            - micros(pair[0].end_time.as_ref().unwrap());
        assert!(
            gap >= least,
            "retried after {gap} µs, sooner than its backoff"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_job_out_of_attempts_ends_in_error_with_its_last_error() {
    let mut app = TestApp::start().await;
    app.start_worker_with(Registry::builtin(), fast_retries());
    let mut request = pb::CreateJobRequest {
        start: 1,
        end: 1,
        kind: "fail".into(),
        max_attempts: 2,
        ..Default::default()
    };
    request.params = Some(jobs_proto::params_to_struct(
        serde_json::json!({"message": "always"})
            .as_object()
            .unwrap()
            .clone(),
    ));
    let job = app
        .client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let done = app.wait_finished(&job.jid).await;
    assert_eq!(
        (done.status(), done.attempts, done.error.as_str()),
        (JobStatus::Error, 2, "always")
    );
    assert_eq!(done.history.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn an_attempt_past_its_timeout_is_stopped_and_fails() {
    let mut app = TestApp::with_worker().await;
    let request = pb::CreateJobRequest {
        start: 0,
        end: 60_000,
        kind: "sleep".into(),
        max_attempts: 1,
        timeout: Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000,
        }),
        ..Default::default()
    };
    let job = app
        .client
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let started = Instant::now();
    let done = app.wait_finished(&job.jid).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped long before the 60 s sleep"
    );
    assert_eq!(done.status(), JobStatus::Error);
    assert_eq!(done.error, "timed out after 200 ms");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_running_job_is_never_retried() {
    let mut app = TestApp::start().await;
    app.start_worker_with(Registry::builtin(), fast_retries());
    let job = app.create(0, 60_000, "sleep").await;
    while app.get(&job.jid).await.status() != JobStatus::Running {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.client
        .cancel_job(pb::CancelJobRequest {
            jid: job.jid.clone(),
        })
        .await
        .unwrap();
    let done = app.wait_finished(&job.jid).await;
    assert_eq!((done.status(), done.attempts), (JobStatus::Cancelled, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get(&job.jid).await.status(), JobStatus::Cancelled);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_job() {
    let mut app = TestApp::start().await;
    let request = pb::CreateJobRequest {
        start: 1,
        end: 5,
        idempotency_key: "order-1".into(),
        ..Default::default()
    };
    let first = app
        .client
        .create_job(request.clone())
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let again = app
        .client
        .create_job(request.clone())
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(first.jid, again.jid);
    let listed = app.list().await;
    assert_eq!(listed.jobs.len(), 1, "created once");
    let other = pb::CreateJobRequest { end: 6, ..request };
    let err = app.client.create_job(other).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("idempotency_key:"),
        "{}",
        err.message()
    );
    app.stop().await;
}

#[tokio::test]
async fn with_a_token_every_call_but_health_needs_it() {
    let app = TestApp::start_on(TestRedis::start(), &["--api-token", "s3cret"]).await;
    let mut client = JobServiceClient::new(app.channel.clone());
    let get = || pb::ListJobsRequest::default();
    assert_eq!(
        client.list_jobs(get()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let mut wrong = Request::new(get());
    wrong
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer s3cres"));
    assert_eq!(
        client.list_jobs(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let mut right = Request::new(get());
    right
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer s3cret"));
    assert!(client.list_jobs(right).await.is_ok());

    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    assert!(health.check(check).await.is_ok(), "health needs no token");
    app.stop().await;
}

/// Asserts that CreateJob fails as UNAVAILABLE (Redis is not there).
async fn assert_create_is_unavailable(app: &mut TestApp) {
    let err = app
        .client
        .create_job(pb::CreateJobRequest {
            start: 1,
            end: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn while_redis_is_down_calls_fail_fast_as_unavailable_then_recover() {
    let mut app = TestApp::start_on(TestRedis::private_persistent(), &[]).await;
    let job = app.create(1, 2, "sum").await;
    app.redis.stop();

    let started = Instant::now();
    let err = app
        .client
        .get_job(pb::GetJobRequest {
            jid: job.jid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?}",
        started.elapsed()
    );
    assert_create_is_unavailable(&mut app).await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let serving = |health: &mut tonic_health::pb::health_client::HealthClient<_>| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "jobs.v1.JobService".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while serving(&mut health).await
        != tonic_health::pb::health_check_response::ServingStatus::NotServing
    {
        assert!(
            Instant::now() < deadline,
            "health never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        match app
            .client
            .get_job(pb::GetJobRequest {
                jid: job.jid.clone(),
            })
            .await
        {
            Ok(reply) => break reply.into_inner().job.unwrap(),
            Err(err) => {
                assert_eq!(err.code(), Code::Unavailable);
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(
        back.jid, job.jid,
        "the job accepted before the outage survived it"
    );
    app.stop().await;
}

/// Every connection the API holds dropped with the restart; each is
/// re-opened by the health check's pings within a second, not by failing a
/// client's first call on it.
#[tokio::test]
async fn after_a_quick_redis_restart_the_first_calls_succeed() {
    let mut app = TestApp::start_on(TestRedis::private_persistent(), &[]).await;
    let record = serde_json::json!([{"id": "a", "n": 1}]);
    assert_eq!(
        app.http_json("POST", "/data", record.clone()).await.status,
        200
    );
    assert_eq!(app.http("GET", "/data", None).await.status, 200);

    app.redis.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.http("GET", "/data", None).await.status, 200);
    assert_eq!(app.http_json("POST", "/data", record).await.status, 200);
    app.create(1, 2, "sum").await;
    app.stop().await;
}

#[tokio::test]
async fn the_api_starts_before_redis_and_serves_once_it_is_up() {
    let mut redis = TestRedis::private_persistent();
    redis.stop();
    let mut app = TestApp::start_on(redis, &[]).await;

    // Up and answering, though not yet able to serve: both the job store
    // and the dataset say so.
    let job = serde_json::json!({"start": 1, "end": 2});
    app.http_json("POST", "/jobs", job.clone())
        .await
        .problem(503);
    app.http("GET", "/data", None).await.problem(503);
    assert_create_is_unavailable(&mut app).await;

    app.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let created = app.http_json("POST", "/jobs", job.clone()).await;
        if created.status == 201 {
            break;
        }
        created.problem(503);
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = app.http("GET", "/data", None).await;
    assert_eq!(
        records.status,
        200,
        "{}",
        String::from_utf8_lossy(&records.body)
    );
    assert_eq!(records.json(), serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn rest_honours_the_token_and_the_idempotency_key() {
    let app = TestApp::start_on(TestRedis::start(), &["--api-token", "s3cret"]).await;
    let url = |path: &str| format!("{}{path}", app.http_base());
    let body = || Some(("application/json", br#"{"start": 1, "end": 2}"#.to_vec()));

    support::http_request(&url("/jobs"), "POST", body())
        .await
        .problem(401);
    support::http_request_with(
        &url("/jobs"),
        "GET",
        &[("authorization", "Bearer nope")],
        None,
    )
    .await
    .problem(401);
    // The probes stay open for orchestrators.
    assert_eq!(
        support::http_request(&url("/healthz"), "GET", None)
            .await
            .status,
        200
    );
    assert_eq!(
        support::http_request(&url("/readyz"), "GET", None)
            .await
            .status,
        200
    );

    let auth = ("authorization", "Bearer s3cret");
    let key = ("idempotency-key", "order-9");
    let first = support::http_request_with(&url("/jobs"), "POST", &[auth, key], body()).await;
    assert_eq!(first.status, 201);
    let again = support::http_request_with(&url("/jobs"), "POST", &[auth, key], body()).await;
    assert_eq!(again.status, 200, "a repeat creates nothing");
    assert_eq!(first.json()["jid"], again.json()["jid"]);
    let other = Some(("application/json", br#"{"start": 1, "end": 3}"#.to_vec()));
    let refused = support::http_request_with(&url("/jobs"), "POST", &[auth, key], other).await;
    let problem = refused.problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("Idempotency-Key:"),
        "{problem}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rest_takes_attempts_and_shows_every_attempt() {
    let mut app = TestApp::start().await;
    app.start_worker_with(Registry::builtin(), fast_retries());
    let created = app
        .http_json(
            "POST",
            "/jobs",
            serde_json::json!({"start": 1, "end": 1, "kind": "fail", "max_attempts": 2.0, "timeout_ms": 5000,
                               "params": {"message": "nope"}}),
        )
        .await;
    assert_eq!(created.status, 201);
    let jid = created.json()["jid"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["max_attempts"], 2);
    assert_eq!(created.json()["timeout_ms"], 5000);
    app.wait_finished(&jid).await;

    let job = app.http("GET", &format!("/jobs/{jid}"), None).await.json();
    assert_eq!(job["status"], "FINISHED -- ERROR");
    assert_eq!(job["error"], "nope");
    let history = job["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    for (n, attempt) in history.iter().enumerate() {
        assert_eq!(attempt["number"], n + 1);
        assert_eq!(attempt["outcome"], "FAILED");
        assert_eq!(attempt["error"], "nope");
        assert!(
            attempt["worker"]
                .as_str()
                .unwrap()
                .starts_with("test-worker")
        );
        assert!(attempt["start_time"].is_string() && attempt["end_time"].is_string());
    }
    let refused = app
        .http_json(
            "POST",
            "/jobs",
            serde_json::json!({"start": 1, "end": 1, "max_attempts": 0}),
        )
        .await;
    assert!(
        refused.problem(400)["detail"]
            .as_str()
            .unwrap()
            .starts_with("max_attempts")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_watch_cut_short_by_shutdown_ends_unavailable_not_ok() {
    let mut app = TestApp::start().await;
    let job = app.create(1, 2, "sum").await;
    let mut stream = app.watch(&job.jid).await;
    let first = stream.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(first.status(), JobStatus::Queued);

    app.begin_shutdown();
    // No worker: the job is still QUEUED, so an OK end would read as "the
    // job is done" to a client that trusts the contract.
    let end = support::within(Duration::from_secs(10), stream.message()).await;
    let status = end.expect_err("the stream must not end OK before the job does");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_ignoring_case() {
    let app = TestApp::start_on(TestRedis::start(), &["--api-token", "s3cret"]).await;
    let mut client = JobServiceClient::new(app.channel.clone());
    for header in ["bearer s3cret", "BEARER s3cret", "Bearer s3cret"] {
        let mut request = Request::new(pb::ListJobsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", MetadataValue::try_from(header).unwrap());
        assert!(client.list_jobs(request).await.is_ok(), "gRPC: {header}");
        let response = support::http_request_with(
            &format!("{}/jobs", app.http_base()),
            "GET",
            &[("authorization", header)],
            None,
        )
        .await;
        assert_eq!(response.status, 200, "REST: {header}");
    }
    // The scheme is the only part that ignores case; the token is exact.
    for header in ["bearer S3CRET", "Basic s3cret", "bearers3cret", "s3cret"] {
        let mut request = Request::new(pb::ListJobsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", MetadataValue::try_from(header).unwrap());
        assert_eq!(
            client.list_jobs(request).await.unwrap_err().code(),
            Code::Unauthenticated,
            "gRPC: {header}"
        );
        support::http_request_with(
            &format!("{}/jobs", app.http_base()),
            "GET",
            &[("authorization", header)],
            None,
        )
        .await
        .problem(401);
    }
    app.stop().await;
}
