//! Bulk submission: `CreateJobs` over gRPC and an array posted to `/jobs`,
//! against a real Redis: order, all-or-nothing validation, the batch bound,
//! idempotency keys inside a batch, and the single-object contract intact.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use jobs_proto::pb;
use serde_json::{Value, json};
use support::{TestApp, http_request_with};

fn job(start: i64, end: i64) -> pb::CreateJobRequest {
    pb::CreateJobRequest {
        start,
        end,
        ..Default::default()
    }
}

/// How many jobs the store holds, through the API.
async fn count_jobs(app: &mut TestApp) -> usize {
    app.client
        .list_jobs(pb::ListJobsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .len()
}

#[tokio::test]
async fn create_jobs_returns_the_jobs_in_order_and_runs_them() {
    let mut app = TestApp::with_worker().await;
    let jobs = app
        .client
        .create_jobs(pb::CreateJobsRequest {
            jobs: (1..=20).map(|n| job(1, n)).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let ends: Vec<i64> = jobs.iter().map(|job| job.end).collect();
    assert_eq!(ends, (1..=20).collect::<Vec<_>>());
    assert!(
        jobs.iter()
            .all(|job| job.status() == pb::JobStatus::Queued && !job.jid.is_empty())
    );
    // Each is a real job: it runs and its result is its own.
    for job in [&jobs[0], &jobs[19]] {
        app.wait_finished(&job.jid).await;
        let result = app.result(&job.jid).await;
        let n = job.end;
        assert_eq!(
            result.result,
            Some(jobs_proto::json_to_value(json!(n * (n + 1) / 2)))
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn create_jobs_refuses_the_whole_batch_naming_the_bad_job() {
    let mut app = TestApp::start().await;
    let mut bad_kind = job(1, 2);
    bad_kind.kind = "nope".into();
    for (jobs, field) in [
        (
            vec![job(1, 2), job(1, 2), job(1, 2), job(5, 1)],
            "jobs[3].end",
        ),
        (vec![bad_kind, job(1, 2)], "jobs[0].kind"),
        (vec![], "jobs"),
        (vec![job(1, 2); 1001], "jobs"),
    ] {
        let err = app
            .client
            .create_jobs(pb::CreateJobsRequest { jobs })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(&format!("{field}: ")), "{err:?}");
    }
    assert_eq!(count_jobs(&mut app).await, 0, "nothing stored");
    // The bound itself is accepted.
    let jobs = app
        .client
        .create_jobs(pb::CreateJobsRequest {
            jobs: vec![job(1, 2); 1000],
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1000);
    app.stop().await;
}

#[tokio::test]
async fn create_jobs_keeps_idempotency_keys_per_job() {
    let mut app = TestApp::start().await;
    let keyed = |end, key: &str| pb::CreateJobRequest {
        idempotency_key: key.into(),
        ..job(1, end)
    };
    let first = app.client.create_job(keyed(5, "k1")).await.unwrap();
    let first = first.into_inner().job.unwrap();
    let jobs = app
        .client
        .create_jobs(pb::CreateJobsRequest {
            jobs: vec![keyed(5, "k1"), keyed(6, "k2"), keyed(6, "k2"), job(1, 7)],
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs[0].jid, first.jid, "an earlier key returns its job");
    assert_eq!(jobs[1].jid, jobs[2].jid, "a key repeated in the batch");
    assert_ne!(jobs[1].jid, jobs[3].jid);
    assert_eq!(count_jobs(&mut app).await, 3);

    // A key reused for another job refuses the batch, and stores nothing.
    let err = app
        .client
        .create_jobs(pb::CreateJobsRequest {
            jobs: vec![job(1, 8), keyed(9, "k1")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("jobs[1].idempotency_key: "),
        "{err:?}"
    );
    assert_eq!(count_jobs(&mut app).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn an_array_posted_to_jobs_creates_them_all_in_order() {
    let mut app = TestApp::start().await;
    let response = app
        .http_json(
            "POST",
            "/jobs",
            json!([{"start": 1, "end": 2}, {"start": 3, "end": 4, "kind": "sleep"}]),
        )
        .await;
    assert_eq!(response.status, 201);
    assert!(response.headers.get("location").is_none());
    let jobs = response.json();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0]["start"].clone(), jobs[0]["end"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(jobs[1]["kind"], "sleep");
    for job in jobs {
        assert_eq!(job["status"], "QUEUED");
        // The classic shape, as a single job has it.
        let fetched = app
            .http(
                "GET",
                &format!("/jobs/{}", job["jid"].as_str().unwrap()),
                None,
            )
            .await
            .json();
        assert_eq!(&fetched, job);
    }
    assert_eq!(count_jobs(&mut app).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_element_names_its_index_and_nothing_is_stored() {
    let mut app = TestApp::start().await;
    let cases: &[(Value, u16, Option<&str>)] = &[
        (
            json!([{"start": 1, "end": 2}, {"start": 5, "end": 1}]),
            400,
            Some("[1].end"),
        ),
        (
            json!([{"start": 1, "end": 2}, {"start": 1, "end": 2, "kind": "nope"}]),
            400,
            Some("[1].kind"),
        ),
        (
            json!([{"start": 1, "end": 2}, {"start": "x", "end": 2}]),
            422,
            Some("[1].start"),
        ),
        (
            json!([{"start": 1, "end": 2}, {"start": 1}]),
            422,
            Some("[1].end"),
        ),
        (json!([{"start": 1, "end": 2}, [1, 2]]), 422, Some("[1]")),
        (json!([]), 400, None),
        (json!(vec![json!({"start": 1, "end": 2}); 1001]), 400, None),
    ];
    for (body, status, field) in cases {
        let problem = app
            .http_json("POST", "/jobs", body.clone())
            .await
            .problem(*status);
        assert_eq!(problem["field"].as_str(), *field, "{body}: {problem}");
    }
    assert_eq!(count_jobs(&mut app).await, 0, "nothing stored");
    app.stop().await;
}

#[tokio::test]
async fn an_array_with_an_idempotency_key_is_safe_to_repeat() {
    let mut app = TestApp::start().await;
    let url = format!("{}/jobs", app.http_base());
    let body = json!([{"start": 1, "end": 2}, {"start": 1, "end": 3}]).to_string();
    let post = |key: &'static str, body: String| {
        let url = url.clone();
        async move {
            http_request_with(
                &url,
                "POST",
                &[("idempotency-key", key)],
                Some(("application/json", body.into_bytes())),
            )
            .await
        }
    };
    let first = post("batch-1", body.clone()).await;
    assert_eq!(first.status, 201);
    let again = post("batch-1", body).await;
    assert_eq!(again.status, 200, "nothing new");
    assert_eq!(first.json(), again.json());
    // The same key with another array is refused, whole: one with the same
    // two jobs and a third is not half replayed, half created.
    let longer = json!([{"start": 1, "end": 2}, {"start": 1, "end": 3}, {"start": 1, "end": 4}]);
    for other in [
        post("batch-1", longer.to_string()).await,
        post("batch-1", json!([{"start": 1, "end": 9}]).to_string()).await,
        // Nor does the key serve a single job.
        post("batch-1", json!({"start": 1, "end": 2}).to_string()).await,
    ] {
        let problem = other.problem(400);
        assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    }
    // A single job's key does not serve an array either.
    assert_eq!(
        post("solo", json!({"start": 5, "end": 6}).to_string())
            .await
            .status,
        201
    );
    let problem = post("solo", json!([{"start": 5, "end": 6}]).to_string())
        .await
        .problem(400);
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    assert_eq!(
        app.list().await.jobs.len(),
        3,
        "nothing stored when refused"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_single_object_keeps_the_classic_contract() {
    let app = TestApp::start().await;
    let response = app
        .http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await;
    assert_eq!(response.status, 201);
    let job = response.json();
    assert!(job.is_object(), "{job}");
    assert_eq!(
        response.headers["location"].to_str().unwrap(),
        format!("/jobs/{}", job["jid"].as_str().unwrap())
    );
    let problem = app
        .http_json("POST", "/jobs", json!({"start": 5, "end": 1}))
        .await
        .problem(400);
    assert_eq!(problem["field"], "end");
    let problem = app.http_json("POST", "/jobs", json!(5)).await.problem(422);
    assert!(problem["field"].is_null(), "{problem}");
    app.stop().await;
}
