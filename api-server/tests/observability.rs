//! What the API shows of itself: `/metrics` (without a token), its values
//! moving as jobs are created, cancelled and run, and the caller's trace
//! context stored with the job it submitted.
//!
//! No tracing subscriber is installed here: this is the default deployment,
//! with span export off, where the `traceparent` is stored as it came.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::time::Duration;

use jobs_core::{JobId, Store, TraceParent};
use jobs_proto::pb;
use jobs_testkit::metrics::Scrape;
use support::{TestApp, http_request_with};
use tonic::Request;

const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn scrape(app: &TestApp) -> (String, Scrape) {
    let response = app.http("GET", "/metrics", None).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers
    );
    let text = String::from_utf8(response.body).unwrap();
    let scrape = Scrape::parse(&text);
    (text, scrape)
}

#[tokio::test]
async fn metrics_need_no_token_and_count_requests_jobs_and_the_queue() {
    let mut app = TestApp::start_with(&["--api-token", "s3cret"]).await;
    let auth = [("authorization", "Bearer s3cret")];

    let (text, before) = scrape(&app).await;
    for name in [
        "jobs_queue_waiting",
        "jobs_queue_running",
        "jobs_queue_delayed",
        "jobs_queue_oldest_waiting_seconds",
        "jobs_redis_up",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name}:\n{text}"
        );
    }
    assert_eq!(before.value("jobs_queue_waiting"), 0.0);
    assert_eq!(before.value("jobs_queue_oldest_waiting_seconds"), 0.0);
    assert_eq!(before.value("jobs_redis_up"), 1.0);

    // Two jobs over gRPC, one over REST; no worker runs, so they wait.
    for _ in 0..2 {
        let mut request = Request::new(pb::CreateJobRequest {
            start: 1,
            end: 2,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        app.client.create_job(request).await.unwrap();
    }
    let created = http_request_with(
        &format!("{}/jobs", app.http_base()),
        "POST",
        &auth,
        Some(("application/json", br#"{"start":1,"end":2}"#.to_vec())),
    )
    .await;
    assert_eq!(created.status, 201);
    let rest_jid = created.json()["jid"].as_str().unwrap().to_owned();
    // Refused without the token: counted, and no job.
    let refused = app.http("GET", "/jobs", None).await;
    assert_eq!(refused.status, 401);
    // A job cancelled while queued ends without a worker: the API counts it.
    let cancelled = http_request_with(
        &format!("{}/jobs/{rest_jid}", app.http_base()),
        "DELETE",
        &auth,
        None,
    )
    .await;
    assert_eq!(cancelled.status, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (text, after) = scrape(&app).await;
    for (series, expected) in [
        (r#"jobs_created_total{kind="sum"}"#, 3.0),
        (r#"jobs_finished_total{kind="sum",status="CANCELLED"}"#, 1.0),
        ("jobs_queue_waiting", 2.0),
        ("jobs_queue_running", 0.0),
        (
            r#"jobs_grpc_requests_total{rpc="jobs.v1.JobService/CreateJob",code="OK"}"#,
            2.0,
        ),
        (
            r#"jobs_grpc_request_duration_seconds_count{rpc="jobs.v1.JobService/CreateJob"}"#,
            2.0,
        ),
        (
            r#"jobs_http_requests_total{method="POST",route="/jobs",status="201"}"#,
            1.0,
        ),
        (
            r#"jobs_http_requests_total{method="GET",route="/jobs",status="401"}"#,
            1.0,
        ),
        (
            r#"jobs_http_requests_total{method="DELETE",route="/jobs/{jid}",status="200"}"#,
            1.0,
        ),
        (
            r#"jobs_http_request_duration_seconds_count{method="POST",route="/jobs"}"#,
            1.0,
        ),
        // The scrape before this one.
        (
            r#"jobs_http_requests_total{method="GET",route="/metrics",status="200"}"#,
            1.0,
        ),
    ] {
        assert_eq!(after.value(series), expected, "{series} in\n{text}");
    }
    let oldest = after.value("jobs_queue_oldest_waiting_seconds");
    assert!(oldest > 0.0 && oldest < 30.0, "{oldest}");
    // Job ids never become labels.
    assert!(!text.contains(&rest_jid), "{text}");
    // Without --dev no worker runs here: series only a worker moves would
    // read 0 as if one were there, idle.
    for name in [
        "jobs_attempts_started",
        "jobs_lease_reclaims",
        "jobs_outcomes_refused",
        "jobs_run_duration_seconds",
    ] {
        assert!(!after.has_metric(name), "{name} in\n{text}");
    }

    app.stop().await;
}

#[tokio::test]
async fn with_dev_workers_the_api_metrics_show_jobs_run() {
    let mut app = TestApp::start_with(&["--dev"]).await;
    let (_, before) = scrape(&app).await;
    assert_eq!(
        before.value(r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#),
        0.0
    );
    let mut jids = Vec::new();
    for _ in 0..3 {
        jids.push(app.create(1, 100, "sum").await.jid);
    }
    for jid in &jids {
        app.wait_finished(jid).await;
    }
    let (text, after) = scrape(&app).await;
    for (series, expected) in [
        (r#"jobs_created_total{kind="sum"}"#, 3.0),
        (r#"jobs_attempts_started_total{kind="sum"}"#, 3.0),
        (r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#, 3.0),
        (r#"jobs_run_duration_seconds_count{kind="sum"}"#, 3.0),
        ("jobs_queue_waiting", 0.0),
        ("jobs_queue_running", 0.0),
    ] {
        assert_eq!(after.value(series), expected, "{series} in\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_callers_traceparent_is_stored_with_the_job_over_grpc_and_rest() {
    let mut app = TestApp::start().await;
    let store = Store::connect(&app.redis_config()).await.unwrap();
    let caller = TraceParent::parse(CALLER).unwrap();

    let mut request = Request::new(pb::CreateJobRequest {
        start: 1,
        end: 2,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", CALLER.parse().unwrap());
    let grpc_job = app.client.create_job(request).await.unwrap().into_inner();
    let grpc_jid = JobId::parse(&grpc_job.job.unwrap().jid).unwrap();
    assert_eq!(
        store.get(&grpc_jid).await.unwrap().trace_parent,
        Some(caller.clone())
    );

    let rest = http_request_with(
        &format!("{}/jobs", app.http_base()),
        "POST",
        &[("traceparent", CALLER)],
        Some(("application/json", br#"{"start":1,"end":2}"#.to_vec())),
    )
    .await;
    assert_eq!(rest.status, 201);
    let rest_jid = JobId::parse(rest.json()["jid"].as_str().unwrap()).unwrap();
    assert_eq!(
        store.get(&rest_jid).await.unwrap().trace_parent,
        Some(caller)
    );

    // No header, or a malformed one: the job is created, with no parent.
    let malformed = http_request_with(
        &format!("{}/jobs", app.http_base()),
        "POST",
        &[("traceparent", "00-not-a-trace-01")],
        Some(("application/json", br#"{"start":1,"end":2}"#.to_vec())),
    )
    .await;
    assert_eq!(malformed.status, 201);
    let jid = JobId::parse(malformed.json()["jid"].as_str().unwrap()).unwrap();
    assert_eq!(store.get(&jid).await.unwrap().trace_parent, None);
    let plain = app.create(1, 2, "sum").await;
    let jid = JobId::parse(&plain.jid).unwrap();
    assert_eq!(store.get(&jid).await.unwrap().trace_parent, None);

    app.stop().await;
}
