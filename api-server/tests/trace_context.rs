//! The caller's trace, followed from CreateJob (gRPC and REST) through Redis
//! to the worker's attempt span, with spans exported as with
//! `--otlp-endpoint` (to memory here instead of a collector).
//!
//! This file installs the process-wide subscriber: it is a test binary of
//! its own, so no other test sees it.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::{sync::OnceLock, time::Duration};

use jobs_proto::pb;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use support::{TestApp, http_request_with};
use tonic::Request;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

struct Exported {
    spans: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

/// Every span closed in this process, exported as it closes.
fn exported() -> &'static InMemorySpanExporter {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    &EXPORTED
        .get_or_init(|| {
            let spans = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build();
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
                .init();
            Exported {
                spans,
                _provider: provider,
            }
        })
        .spans
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The exported span that satisfies `pick`, waiting (bounded) for it.
async fn span_where(what: &str, pick: impl Fn(&SpanData) -> bool) -> SpanData {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let spans = exported().get_finished_spans().unwrap();
        if let Some(span) = spans.iter().find(|span| pick(span)) {
            return span.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} among {:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that the worker's attempt span of `jid` is in the caller's trace,
/// the child of the API's request span named `request`, itself the child of
/// the caller's span.
async fn assert_joined(jid: &str, request: &str) {
    let attempt = span_where("attempt span", |span| {
        span.name == "job" && attribute(span, "jid").as_deref() == Some(jid)
    })
    .await;
    assert_eq!(attempt.span_context.trace_id().to_string(), TRACE_ID);
    // The trace id is a field of the span, so every log line of the attempt has it.
    assert_eq!(attribute(&attempt, "trace_id").as_deref(), Some(TRACE_ID));

    let parent = attempt.parent_span_id;
    let server = span_where("request span", |span| span.span_context.span_id() == parent).await;
    assert_eq!(server.name, request);
    assert_eq!(server.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(server.parent_span_id.to_string(), CALLER_SPAN);
    assert_eq!(attribute(&server, "jid").as_deref(), Some(jid));
}

#[tokio::test]
async fn a_job_created_over_grpc_runs_in_the_callers_trace() {
    exported();
    let mut app = TestApp::with_worker().await;
    let mut request = Request::new(pb::CreateJobRequest {
        start: 1,
        end: 10,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent().parse().unwrap());
    let job = app.client.create_job(request).await.unwrap().into_inner();
    let jid = job.job.unwrap().jid;
    app.wait_finished(&jid).await;
    assert_joined(&jid, "jobs.v1.JobService/CreateJob").await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_created_over_rest_runs_in_the_callers_trace() {
    exported();
    let mut app = TestApp::with_worker().await;
    let created = http_request_with(
        &format!("{}/jobs", app.http_base()),
        "POST",
        &[("traceparent", &traceparent())],
        Some(("application/json", br#"{"start":1,"end":10}"#.to_vec())),
    )
    .await;
    assert_eq!(created.status, 201);
    let jid = created.json()["jid"].as_str().unwrap().to_owned();
    app.wait_finished(&jid).await;
    assert_joined(&jid, "POST /jobs").await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_created_without_a_trace_starts_its_own() {
    exported();
    let mut app = TestApp::with_worker().await;
    let jid = app.create(1, 10, "sum").await.jid;
    app.wait_finished(&jid).await;
    let attempt = span_where("attempt span", |span| {
        span.name == "job" && attribute(span, "jid").as_deref() == Some(jid.as_str())
    })
    .await;
    assert_ne!(attempt.span_context.trace_id().to_string(), TRACE_ID);
    // Its parent is the API's request span, in the trace the API started.
    let parent = attempt.parent_span_id;
    let server = span_where("request span", |span| span.span_context.span_id() == parent).await;
    assert_eq!(server.name, "jobs.v1.JobService/CreateJob");
    assert_eq!(
        server.span_context.trace_id(),
        attempt.span_context.trace_id()
    );
    app.stop().await;
}
