//! The job lifecycle over real gRPC, against a real Redis.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{StreamExt, stream};
use jobs_proto::pb::{self, JobStatus};
use jobs_worker::{JobContext, Registry};
use prost_types::value::Kind;
use support::{TestApp, within};
use tonic::Code;

fn result_kind(response: &pb::GetJobResultResponse) -> Option<&Kind> {
    response
        .result
        .as_ref()
        .and_then(|value| value.kind.as_ref())
}

#[tokio::test]
async fn a_sum_job_runs_to_success_with_its_times_and_result() {
    let mut app = TestApp::with_worker().await;
    let created = app.create(1, 100, "").await;
    assert_eq!(created.status(), JobStatus::Queued);
    assert_eq!(
        (created.start, created.end, created.kind.as_str()),
        (1, 100, "sum")
    );
    assert!(created.create_time.is_some());
    assert!(created.start_time.is_none() && created.end_time.is_none());

    let done = app.wait_finished(&created.jid).await;
    assert_eq!(done.status(), JobStatus::Success);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.progress, 1.0);
    let (create, start, end) = (
        done.create_time.unwrap(),
        done.start_time.unwrap(),
        done.end_time.unwrap(),
    );
    let micros = |t: prost_types::Timestamp| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000;
    assert!(micros(create) <= micros(start) && micros(start) <= micros(end));

    let result = app.result(&done.jid).await;
    assert_eq!(result.status(), JobStatus::Success);
    assert_eq!(result_kind(&result), Some(&Kind::NumberValue(5050.0)));
    assert!(result.error.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_sum_beyond_a_double_is_exact_as_a_decimal_string() {
    let mut app = TestApp::with_worker().await;
    let job = app.create(i64::MIN, i64::MAX - 1, "sum").await;
    app.wait_finished(&job.jid).await;
    let result = app.result(&job.jid).await;
    // The whole i64 range sums to i64::MIN; leaving out i64::MAX gives -2^64 + 1.
    let expected = (i128::from(i64::MIN) - i128::from(i64::MAX)).to_string();
    assert_eq!(result_kind(&result), Some(&Kind::StringValue(expected)));
    app.stop().await;
}

#[tokio::test]
async fn a_sleep_job_succeeds_with_a_null_result() {
    let mut app = TestApp::with_worker().await;
    let job = app.create(0, 50, "sleep").await;
    let done = app.wait_finished(&job.jid).await;
    assert_eq!(done.status(), JobStatus::Success);
    assert!(done.start_time.is_some() && done.end_time.is_some());
    let result = app.result(&job.jid).await;
    assert_eq!(result_kind(&result), Some(&Kind::NullValue(0)));
    app.stop().await;
}

#[tokio::test]
async fn a_failing_job_ends_in_error_with_its_message() {
    let mut app = TestApp::with_worker().await;
    let job = app
        .create_with(
            1,
            2,
            "fail",
            Some(serde_json::json!({"message": "disk on fire"})),
        )
        .await;
    let done = app.wait_finished(&job.jid).await;
    assert_eq!(done.status(), JobStatus::Error);
    assert_eq!(done.error, "disk on fire");
    assert!(done.end_time.is_some());
    let result = app.result(&job.jid).await;
    assert_eq!(result.status(), JobStatus::Error);
    assert_eq!(result.error, "disk on fire");
    assert!(result.result.is_none());

    // A job whose fail_attempts are used up succeeds.
    let lucky = app
        .create_with(1, 2, "fail", Some(serde_json::json!({"fail_attempts": 0})))
        .await;
    assert_eq!(
        app.wait_finished(&lucky.jid).await.status(),
        JobStatus::Success
    );
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_jobs_all_finish_once_with_correct_sums() {
    let mut app = TestApp::start().await;
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let counting = {
        let sum = Registry::builtin().get("sum").unwrap();
        let runs = runs.clone();
        move |ctx: JobContext| {
            *runs
                .lock()
                .unwrap()
                .entry(ctx.job().jid.to_string())
                .or_default() += 1;
            sum.run(ctx)
        }
    };
    let registry = Registry::builtin().with("sum", counting);
    // Two workers compete for the same queue.
    app.start_worker(registry.clone(), 8);
    app.start_worker(registry, 8);

    let client = app.client.clone();
    let created: Vec<(String, i64, i64)> = stream::iter(0..1000i64)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let (start, end) = (i - 500, i * 7);
                let job = client
                    .create_job(pb::CreateJobRequest {
                        start,
                        end,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .job
                    .unwrap();
                (job.jid, start, end)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(created.len(), 1000);

    within(Duration::from_secs(60), async {
        loop {
            let done = app
                .client
                .list_jobs(pb::ListJobsRequest {
                    page_size: 1000,
                    status: JobStatus::Success.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if done.jobs.len() == 1000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    for (jid, start, end) in &created {
        let result = app.result(jid).await;
        let expected: i128 = (*start..=*end).map(i128::from).sum();
        #[allow(clippy::cast_precision_loss)]
        let expected = Kind::NumberValue(expected as f64);
        assert_eq!(
            result_kind(&result),
            Some(&expected),
            "job {jid} ({start}..={end})"
        );
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1000, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice");
    app.stop().await;
}

#[tokio::test]
async fn errors_carry_the_right_codes_and_name_the_field() {
    let mut app = TestApp::start().await;
    let unknown = "0b0e2f0e-8a4c-4f65-9d2a-4f1e1d6d3c11".to_owned();

    let err = app
        .client
        .get_job(pb::GetJobRequest {
            jid: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&unknown));
    let err = app
        .client
        .get_job(pb::GetJobRequest { jid: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("jid:"), "{}", err.message());

    let bad_requests = [
        (
            pb::CreateJobRequest {
                start: 5,
                end: 1,
                ..Default::default()
            },
            "end:",
        ),
        (
            pb::CreateJobRequest {
                start: 1,
                end: 2,
                kind: "nope".into(),
                ..Default::default()
            },
            "kind:",
        ),
        (
            pb::CreateJobRequest {
                start: 1,
                end: 2,
                kind: "fail".into(),
                params: Some(jobs_proto::params_to_struct(
                    serde_json::json!({"message": "x".repeat(70_000)})
                        .as_object()
                        .unwrap()
                        .clone(),
                )),
                ..Default::default()
            },
            "params:",
        ),
        (
            pb::CreateJobRequest {
                start: 1,
                end: 2,
                kind: "fail".into(),
                params: Some(jobs_proto::params_to_struct(
                    serde_json::json!({"fail_attempts": "two"})
                        .as_object()
                        .unwrap()
                        .clone(),
                )),
                ..Default::default()
            },
            "params.fail_attempts:",
        ),
        (
            pb::CreateJobRequest {
                start: 0,
                end: 10_000_000,
                kind: "sleep".into(),
                ..Default::default()
            },
            "end:",
        ),
    ];
    for (request, field) in bad_requests {
        let err = app.client.create_job(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(field),
            "{:?} should name {field}",
            err.message()
        );
    }
    assert!(
        app.redis.keys().is_empty(),
        "a rejected job stores nothing: {:?}",
        app.redis.keys()
    );

    let err = app
        .client
        .list_jobs(pb::ListJobsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_token:"));
    let err = app
        .client
        .list_jobs(pb::ListJobsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // No worker runs, so the job stays queued and its result is not ready.
    let queued = app.create(1, 2, "sum").await;
    let err = app
        .client
        .get_job_result(pb::GetJobResultRequest {
            jid: queued.jid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("QUEUED"));
    let err = app
        .client
        .get_job_result(pb::GetJobResultRequest { jid: unknown })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn watch_sees_queued_running_success_then_ends() {
    let mut app = TestApp::start().await;
    let job = app.create(0, 400, "sleep").await;
    let mut stream = app.watch(&job.jid).await;
    let first = stream.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(first.status(), JobStatus::Queued);

    // The worker starts only after the watch has its first state.
    app.start_worker(Registry::builtin(), 1);
    let mut statuses = vec![first.status()];
    let mut progress = Vec::new();
    within(Duration::from_secs(10), async {
        while let Some(update) = stream.message().await.unwrap() {
            let job = update.job.unwrap();
            if statuses.last() != Some(&job.status()) {
                statuses.push(job.status());
            }
            progress.push(job.progress);
        }
    })
    .await;
    assert_eq!(
        statuses,
        [JobStatus::Queued, JobStatus::Running, JobStatus::Success]
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert!(
        progress.len() > 2,
        "progress was reported while it ran: {progress:?}"
    );

    // A finished job's watch sends its state once and ends.
    let mut stream = app.watch(&job.jid).await;
    let only = stream.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(only.status(), JobStatus::Success);
    assert!(stream.message().await.unwrap().is_none());

    let err = app
        .client
        .watch_job(pb::WatchJobRequest {
            jid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn list_pages_newest_first_without_gaps_while_jobs_arrive() {
    let mut app = TestApp::start().await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(app.create(i, i + 1, "sum").await.jid);
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut arrivals = Vec::new();
    loop {
        let page = app
            .client
            .list_jobs(pb::ListJobsRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 7);
        seen.extend(page.jobs.into_iter().map(|job| job.jid));
        // New jobs keep arriving between pages.
        arrivals.push(app.create(0, 1, "sum").await.jid);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created, "every job once, newest first");
    assert!(arrivals.iter().all(|jid| !seen.contains(jid)));

    // The newest jobs come first on a fresh listing.
    let fresh = app
        .client
        .list_jobs(pb::ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.jobs[0].jid, *arrivals.last().unwrap());
    assert!(!fresh.next_page_token.is_empty());

    // The status filter shows only jobs with that status.
    let queued = app
        .client
        .list_jobs(pb::ListJobsRequest {
            status: JobStatus::Queued.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.jobs.len(), created.len() + arrivals.len());
    let succeeded = app
        .client
        .list_jobs(pb::ListJobsRequest {
            status: JobStatus::Success.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(succeeded.jobs.is_empty() && succeeded.next_page_token.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_queued_job_ends_it_at_once_and_no_worker_runs_it() {
    let mut app = TestApp::start().await;
    let job = app.create(1, 10, "sum").await;
    let cancelled = app
        .client
        .cancel_job(pb::CancelJobRequest {
            jid: job.jid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(cancelled.status(), JobStatus::Cancelled);
    assert!(cancelled.end_time.is_some());

    let ran = Arc::new(Mutex::new(0));
    let counting = {
        let ran = ran.clone();
        let sum = Registry::builtin().get("sum").unwrap();
        move |ctx: JobContext| {
            *ran.lock().unwrap() += 1;
            sum.run(ctx)
        }
    };
    app.start_worker(Registry::builtin().with("sum", counting), 2);
    // A job queued after the cancelled one finishing proves the worker read past it.
    let later = app.create(1, 2, "sum").await;
    assert_eq!(
        app.wait_finished(&later.jid).await.status(),
        JobStatus::Success
    );
    let after = app.get(&job.jid).await;
    assert_eq!(after.status(), JobStatus::Cancelled);
    assert_eq!(after.attempts, 0);
    assert_eq!(*ran.lock().unwrap(), 1, "only the later job ran");

    let err = app
        .client
        .cancel_job(pb::CancelJobRequest { jid: job.jid })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_running_job_stops_its_handler_promptly() {
    let mut app = TestApp::with_worker().await;
    let job = app.create(0, 60_000, "sleep").await;
    let mut stream = app.watch(&job.jid).await;
    within(Duration::from_secs(10), async {
        while let Some(update) = stream.message().await.unwrap() {
            if update.job.unwrap().status() == JobStatus::Running {
                break;
            }
        }
    })
    .await;
    let requested = app
        .client
        .cancel_job(pb::CancelJobRequest {
            jid: job.jid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(requested.status(), JobStatus::Running);

    // A 60 s job: ending within a few seconds means the handler was stopped.
    let done = within(Duration::from_secs(5), app.wait_finished(&job.jid)).await;
    assert_eq!(done.status(), JobStatus::Cancelled);
    assert_eq!(done.error, "cancelled by request");
    app.stop().await;
}

#[tokio::test]
async fn malformed_durations_are_refused_naming_the_field() {
    let mut app = TestApp::start().await;
    let with_timeout = |seconds: i64, nanos: i32| pb::CreateJobRequest {
        start: 1,
        end: 2,
        timeout: Some(prost_types::Duration { seconds, nanos }),
        ..Default::default()
    };
    // protobuf's Duration: nanos within ±999,999,999, with the sign of seconds.
    for (seconds, nanos) in [
        (1, -5),
        (0, 1_500_000_000),
        (0, -1_500_000_000),
        (-1, 5),
        (2, 1_000_000_000),
    ] {
        let err = app
            .client
            .create_job(with_timeout(seconds, nanos))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{seconds}s {nanos}ns");
        assert!(
            err.message().starts_with("timeout:"),
            "{seconds}s {nanos}ns: {}",
            err.message()
        );
        let err = app
            .client
            .create_jobs(pb::CreateJobsRequest {
                jobs: vec![with_timeout(1, 0), with_timeout(seconds, nanos)],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with("jobs[1].timeout:"),
            "{}",
            err.message()
        );
    }
    let listed = app.list().await;
    assert!(listed.jobs.is_empty(), "nothing was stored: {listed:?}");

    // Well-formed ones still pass, a negative nanos with negative seconds
    // being well-formed but not a positive timeout.
    let job = app.client.create_job(with_timeout(1, 500_000_000)).await;
    let job = job.unwrap().into_inner().job.unwrap();
    assert_eq!(
        job.timeout,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    let err = app
        .client
        .create_job(with_timeout(-1, -5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("timeout:"), "{}", err.message());
    app.stop().await;
}

#[tokio::test]
async fn an_empty_kind_is_refused_over_rest_and_the_default_over_grpc() {
    let mut app = TestApp::start().await;
    // JSON can leave the kind out: one written empty is a mistake.
    let refused = app
        .http_json(
            "POST",
            "/jobs",
            serde_json::json!({"start": 1, "end": 2, "kind": ""}),
        )
        .await;
    assert_eq!(refused.problem(400)["field"], "kind");
    let created = app
        .http_json("POST", "/jobs", serde_json::json!({"start": 1, "end": 2}))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["kind"], "sum");
    // proto3 cannot tell an empty string from an unset one.
    assert_eq!(app.create(1, 2, "").await.kind, "sum");
    app.stop().await;
}

#[tokio::test]
async fn a_fail_job_must_have_something_to_say() {
    let mut app = TestApp::start().await;
    for message in ["", "  \t"] {
        let params = serde_json::json!({"message": message});
        let refused = app
            .http_json(
                "POST",
                "/jobs",
                serde_json::json!({"start": 1, "end": 1, "kind": "fail", "params": params}),
            )
            .await;
        assert_eq!(refused.problem(400)["field"], "params.message");
        let err = app
            .client
            .create_job(pb::CreateJobRequest {
                start: 1,
                end: 1,
                kind: "fail".into(),
                params: Some(jobs_proto::params_to_struct(
                    params.as_object().unwrap().clone(),
                )),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with("params.message:"),
            "{}",
            err.message()
        );
    }
    assert!(app.list().await.jobs.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_expired_result_is_gone_and_a_null_one_is_null() {
    use jobs_core::{Finished, Outcome, Queue, QueueSettings, Retention};

    let mut app = TestApp::start().await;
    // A worker that keeps jobs a minute and results a second.
    let settings = QueueSettings {
        retention: Retention {
            retention_secs: 60,
            result_ttl_secs: 1,
        },
        ..QueueSettings::default()
    };
    let queue = Queue::connect(&app.redis_config(), "w", settings)
        .await
        .unwrap();
    let job = app.create(1, 1, "sleep").await;
    let lease = queue
        .claim(1, Duration::from_millis(50))
        .await
        .unwrap()
        .remove(0)
        .lease;
    let outcome = Outcome::Success(serde_json::Value::Null);
    queue.finish(&[Finished { lease, outcome }]).await.unwrap();
    let path = format!("/jobs/{}/results", job.jid);
    let null = app.http("GET", &path, None).await;
    assert_eq!(null.status, 200);
    assert_eq!(null.json()["result"], serde_json::Value::Null);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let gone = app.http("GET", &path, None).await.problem(410);
    let detail = gone["detail"].as_str().unwrap();
    assert!(
        detail.contains("expired") && detail.contains("JOBS_RESULT_TTL_SECS"),
        "{detail}"
    );
    let err = app
        .client
        .get_job_result(pb::GetJobResultRequest {
            jid: job.jid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("expired"), "{}", err.message());
    // The job itself is still there.
    assert_eq!(app.get(&job.jid).await.status(), JobStatus::Success);
    app.stop().await;
}

#[tokio::test]
async fn a_page_of_large_jobs_is_short_not_huge() {
    use prost::Message;

    let mut app = TestApp::start().await;
    // 150 jobs whose params take about 6 KiB each as JSON: more than a page
    // may hold.
    let params = serde_json::json!({"message": "\u{1}".repeat(1024)});
    let new = pb::CreateJobRequest {
        start: 1,
        end: 1,
        kind: "fail".into(),
        params: Some(jobs_proto::params_to_struct(
            params.as_object().unwrap().clone(),
        )),
        ..Default::default()
    };
    app.client
        .create_jobs(pb::CreateJobsRequest {
            jobs: vec![new; 150],
        })
        .await
        .unwrap();

    let first = app
        .client
        .list_jobs(pb::ListJobsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.jobs.len() < 150, "{} jobs", first.jobs.len());
    assert!(first.encoded_len() <= jobs_core::MAX_PAGE_BYTES);
    let second = app
        .client
        .list_jobs(pb::ListJobsRequest {
            page_size: 1000,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.jobs.len() + second.jobs.len(), 150);
    assert!(second.next_page_token.is_empty());

    // Over REST the same: a short page, and the rest behind its Link.
    let page = app.http("GET", "/jobs?limit=1000", None).await;
    assert_eq!(page.json().as_array().unwrap().len(), first.jobs.len());
    assert!(page.header("link").is_some());
    app.stop().await;
}
