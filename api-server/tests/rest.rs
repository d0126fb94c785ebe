//! The REST gateway's `/jobs` contract over real HTTP, against a real Redis:
//! the classic call field by field, paging, results, cancellation, every
//! error class, and one store behind both REST and gRPC.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use jobs_proto::pb;
use jobs_testkit::TestRedis;
use serde_json::{Value, json};
use support::TestApp;

/// Asserts an RFC 3339 UTC time.
fn assert_utc_time(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    assert!(text.ends_with('Z'), "not UTC: {text}");
    chrono::DateTime::parse_from_rfc3339(text).unwrap();
}

/// Polls the job over REST until it is finished (the watch is gRPC's; REST
/// has only GET, so this is what a REST client does too).
async fn wait_finished_rest(app: &TestApp, jid: &str) -> Value {
    support::within(std::time::Duration::from_secs(30), async {
        loop {
            let job = app.http("GET", &format!("/jobs/{jid}"), None).await.json();
            if job["status"].as_str().unwrap().starts_with("FINISHED") {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_classic_curl_call_answers_201_with_the_job_in_the_classic_shape() {
    let app = TestApp::start().await;
    // curl localhost:5000/jobs -X POST -d '{"start":1, "end":2}' -H "Content-Type: application/json"
    let created = app
        .http(
            "POST",
            "/jobs",
            Some(("application/json", br#"{"start":1, "end":2}"#.to_vec())),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("content-type"), Some("application/json"));
    let job = created.json();
    let jid = job["jid"].as_str().unwrap();
    assert_eq!(jid.len(), 36, "a UUID: {jid}");
    assert_eq!(
        created.header("location"),
        Some(format!("/jobs/{jid}").as_str())
    );
    assert_eq!(job["status"], "QUEUED");
    assert_eq!(
        (job["start"].as_i64(), job["end"].as_i64()),
        (Some(1), Some(2))
    );
    assert!(job["start_time"].is_null() && job["end_time"].is_null());
    assert!(job.get("start_time").is_some() && job.get("end_time").is_some());
    assert_eq!(job["kind"], "sum");
    assert_utc_time(&job["create_time"]);

    // The classic fields come first, in the classic order.
    let text = String::from_utf8(created.body.clone()).unwrap();
    assert!(text.starts_with(r#"{"jid":"#), "{text}");
    let positions: Vec<usize> = ["jid", "status", "start", "end", "start_time", "end_time"]
        .iter()
        .map(|field| text.find(&format!("\"{field}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "classic order broken: {text}");

    let fetched = app.http("GET", &format!("/jobs/{jid}"), None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), job);
    app.stop().await;
}

#[tokio::test]
async fn whole_numbers_in_any_notation_are_taken_for_start_and_end() {
    let app = TestApp::start().await;
    for body in [
        r#"{"start": 1.0, "end": 2e1}"#,
        r#"{"start": 10e-1, "end": 20.000}"#,
    ] {
        let created = app
            .http("POST", "/jobs", Some(("application/json", body.into())))
            .await;
        assert_eq!(created.status, 201, "{body}");
        let job = created.json();
        assert_eq!(job["start"], 1, "{body}");
        assert!(job["end"] == 20, "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_job_runs_to_finished_success_with_times_and_an_exact_result() {
    let app = TestApp::with_worker().await;
    let job = app
        .http_json("POST", "/jobs", json!({"start": 1, "end": 100}))
        .await
        .json();
    let jid = job["jid"].as_str().unwrap();
    let done = wait_finished_rest(&app, jid).await;
    assert_eq!(done["status"], "FINISHED -- SUCCESS");
    assert_utc_time(&done["start_time"]);
    assert_utc_time(&done["end_time"]);
    assert!(done["error"].is_null());

    let result = app.http("GET", &format!("/jobs/{jid}/results"), None).await;
    assert_eq!(result.status, 200);
    let result = result.json();
    assert_eq!(result["jid"], jid);
    assert_eq!(result["result"], 5050);

    // A sum far beyond 2^64 stays exact in the JSON text.
    let big = app
        .http_json(
            "POST",
            "/jobs",
            json!({"start": 0, "end": i64::MAX, "kind": "sum"}),
        )
        .await
        .json();
    let jid = big["jid"].as_str().unwrap();
    wait_finished_rest(&app, jid).await;
    let result = app.http("GET", &format!("/jobs/{jid}/results"), None).await;
    let text = String::from_utf8(result.body).unwrap();
    let n = i128::from(i64::MAX);
    assert!(
        text.contains(&format!("\"result\":{}", n * (n + 1) / 2)),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn results_are_409_until_finished_and_carry_the_error_of_a_failed_job() {
    let mut app = TestApp::start().await;
    let queued = app
        .http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await
        .json();
    let jid = queued["jid"].as_str().unwrap().to_owned();
    let problem = app
        .http("GET", &format!("/jobs/{jid}/results"), None)
        .await
        .problem(409);
    assert!(problem["detail"].as_str().unwrap().contains("QUEUED"));

    app.start_worker(jobs_worker::Registry::builtin(), 2);
    let failing = app
        .http_json(
            "POST",
            "/jobs",
            json!({"start": 1, "end": 1, "kind": "fail", "params": {"message": "boom"}}),
        )
        .await;
    assert_eq!(failing.status, 201);
    let failing = failing.json();
    assert_eq!(failing["params"], json!({"message": "boom"}));
    let fid = failing["jid"].as_str().unwrap();
    let done = wait_finished_rest(&app, fid).await;
    assert_eq!(done["status"], "FINISHED -- ERROR");
    let result = app.http("GET", &format!("/jobs/{fid}/results"), None).await;
    assert_eq!(result.status, 200);
    let result = result.json();
    assert_eq!(result["status"], "FINISHED -- ERROR");
    assert!(result["result"].is_null());
    assert!(result["error"].as_str().unwrap().contains("boom"));
    app.stop().await;
}

#[tokio::test]
async fn delete_cancels_a_queued_job_and_is_409_once_it_has_finished() {
    let app = TestApp::start().await;
    let job = app
        .http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await
        .json();
    let jid = job["jid"].as_str().unwrap();
    let cancelled = app.http("DELETE", &format!("/jobs/{jid}"), None).await;
    assert_eq!(cancelled.status, 200);
    let cancelled = cancelled.json();
    assert_eq!(cancelled["status"], "FINISHED -- CANCELLED");
    assert_utc_time(&cancelled["end_time"]);
    let result = app
        .http("GET", &format!("/jobs/{jid}/results"), None)
        .await
        .json();
    assert_eq!(result["status"], "FINISHED -- CANCELLED");
    app.http("DELETE", &format!("/jobs/{jid}"), None)
        .await
        .problem(409);
    app.stop().await;
}

#[tokio::test]
async fn the_list_is_newest_first_filtered_and_paged_through_link() {
    let app = TestApp::start().await;
    let mut jids = Vec::new();
    for start in 0..3 {
        let job = app
            .http_json("POST", "/jobs", json!({"start": start, "end": 10}))
            .await
            .json();
        jids.push(job["jid"].as_str().unwrap().to_owned());
    }
    let cancelled = &jids[0];
    app.http("DELETE", &format!("/jobs/{cancelled}"), None)
        .await;

    let first = app.http("GET", "/jobs?limit=2", None).await;
    assert_eq!(first.status, 200);
    let page: Vec<Value> = serde_json::from_value(first.json()).unwrap();
    let got: Vec<_> = page
        .iter()
        .map(|job| job["jid"].as_str().unwrap())
        .collect();
    assert_eq!(got, [jids[2].as_str(), jids[1].as_str()]);
    let link = first.header("link").unwrap();
    let next = link
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("bad Link: {link}"));
    assert!(next.starts_with("/jobs?"), "{next}");
    let second = app.http("GET", next, None).await;
    let page = second.json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["jid"], jids[0].as_str());
    assert!(second.header("link").is_none());

    // The default page holds them all, with no Link.
    let all = app.http("GET", "/jobs", None).await;
    assert_eq!(all.json().as_array().unwrap().len(), 3);
    assert!(all.header("link").is_none());

    for (filter, expected) in [
        ("QUEUED", 2),
        ("FINISHED%20--%20CANCELLED", 1),
        ("CANCELLED", 1),
        ("FINISHED%20--%20SUCCESS", 0),
        ("RUNNING", 0),
    ] {
        let page = app
            .http("GET", &format!("/jobs?status={filter}"), None)
            .await;
        assert_eq!(page.status, 200, "{filter}");
        assert_eq!(page.json().as_array().unwrap().len(), expected, "{filter}");
    }
    // The filter travels in the next link.
    let filtered = app.http("GET", "/jobs?status=QUEUED&limit=1", None).await;
    assert!(filtered.header("link").unwrap().contains("status=QUEUED"));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_that_names_the_field_and_stores_nothing() {
    let app = TestApp::start_with(&["--http-body-limit", "1024"]).await;
    let json = |body: &str| Some(("application/json", body.as_bytes().to_vec()));
    let cases: &[(&str, u16, Option<&str>)] = &[
        (r#"{"start": 1, "end": "#, 400, None),
        (r#"{"start": 1, "end": 2} trailing"#, 400, None),
        ("", 400, None),
        (r#"{"start": "1", "end": 2}"#, 422, Some("start")),
        (r#"{"start": 1.5, "end": 2}"#, 422, Some("start")),
        (r#"{"start": 1, "end": 2.5e0}"#, 422, Some("end")),
        (r#"{"start": 1, "end": null}"#, 422, Some("end")),
        (
            r#"{"start": 1, "end": 99999999999999999999}"#,
            422,
            Some("end"),
        ),
        (r#"{"start": 1}"#, 422, Some("end")),
        (r#"{"start": 1, "end": 2, "strat": 1}"#, 422, Some("strat")),
        (
            r#"{"start": 1, "end": 2, "params": [1]}"#,
            422,
            Some("params"),
        ),
        ("[1, 2]", 422, Some("[0]")),
        (r#"{"start": 5, "end": 1}"#, 400, Some("end")),
        (
            r#"{"start": 1, "end": 2, "kind": "nope"}"#,
            400,
            Some("kind"),
        ),
        (
            r#"{"start": 1, "end": 2, "params": {"x": 1}}"#,
            400,
            Some("params.x"),
        ),
    ];
    for (body, status, field) in cases {
        let problem = app.http("POST", "/jobs", json(body)).await.problem(*status);
        assert_eq!(problem["field"].as_str(), *field, "{body}: {problem}");
        if let Some(field) = field {
            assert!(
                problem["detail"].as_str().unwrap().contains(field),
                "{body}: {problem}"
            );
        }
    }

    // Not JSON: 415.
    app.http("POST", "/jobs", None).await.problem(415);
    app.http(
        "POST",
        "/jobs",
        Some(("text/plain", br#"{"start":1,"end":2}"#.to_vec())),
    )
    .await
    .problem(415);
    app.http(
        "POST",
        "/jobs",
        Some((
            "application/x-www-form-urlencoded",
            b"start=1&end=2".to_vec(),
        )),
    )
    .await
    .problem(415);
    // Over the configured limit: 413.
    let padding = "x".repeat(2000);
    let big = format!(r#"{{"start": 1, "end": 2, "params": {{"message": "{padding}"}}}}"#);
    app.http("POST", "/jobs", json(&big)).await.problem(413);

    // Path and query.
    let problem = app
        .http("GET", "/jobs/__ready_probe__", None)
        .await
        .problem(400);
    assert_eq!(problem["field"], "jid");
    let unknown = uuid_like();
    app.http("GET", &format!("/jobs/{unknown}"), None)
        .await
        .problem(404);
    app.http("GET", &format!("/jobs/{unknown}/results"), None)
        .await
        .problem(404);
    app.http("DELETE", &format!("/jobs/{unknown}"), None)
        .await
        .problem(404);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("status=DONE", "status"),
        ("status=queued", "status"),
        ("page_token=abc", "page_token"),
    ] {
        let problem = app
            .http("GET", &format!("/jobs?{query}"), None)
            .await
            .problem(400);
        assert_eq!(problem["field"], field, "{query}");
    }
    app.http("GET", "/jobs?limit=1&limit=2", None)
        .await
        .problem(400);
    // Unknown routes and methods.
    app.http("GET", "/nowhere", None).await.problem(404);
    let put = app.http("PUT", "/jobs", None).await;
    put.problem(405);
    assert!(put.header("allow").unwrap().contains("POST"));

    // Nothing of all that was stored.
    let list = app.http("GET", "/jobs", None).await.json();
    assert_eq!(list, json!([]));
    app.stop().await;
}

fn uuid_like() -> String {
    "0b6f8d3e-2f0a-4c55-9d7e-0123456789ab".to_owned()
}

#[tokio::test]
async fn health_is_independent_of_redis_and_readiness_and_calls_are_503_without_it() {
    let mut app = TestApp::start_on(TestRedis::private(), &[]).await;
    assert_eq!(
        app.http("GET", "/healthz", None).await.json()["status"],
        "ok"
    );
    let ready = app.http("GET", "/readyz", None).await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );

    // Stop the private Redis (dropping it kills the server).
    drop(std::mem::replace(&mut app.redis, TestRedis::start()));

    assert_eq!(app.http("GET", "/healthz", None).await.status, 200);
    let asked = std::time::Instant::now();
    let down = app.http("GET", "/readyz", None).await;
    down.problem(503);
    let started = std::time::Instant::now();
    app.http("GET", &format!("/jobs/{}", uuid_like()), None)
        .await
        .problem(503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2)
            && asked.elapsed() < std::time::Duration::from_secs(4),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(down.header("retry-after"), Some("1"));
    app.http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await
        .problem(503);
    app.http("GET", "/jobs", None).await.problem(503);
    app.http("GET", "/data", None).await.problem(503);
    app.http_json("POST", "/data", json!([{"id": 1}]))
        .await
        .problem(503);
    // Bad input is still a 4xx: it is refused before Redis is asked.
    app.http_json("POST", "/jobs", json!({"start": 2, "end": 1}))
        .await
        .problem(400);
}

#[tokio::test]
async fn rest_and_grpc_see_the_same_jobs() {
    let mut app = TestApp::start().await;
    let over_rest = app
        .http_json("POST", "/jobs", json!({"start": 3, "end": 4}))
        .await
        .json();
    let jid = over_rest["jid"].as_str().unwrap();
    let seen = app.get(jid).await;
    assert_eq!((seen.start, seen.end), (3, 4));
    assert_eq!(seen.status(), pb::JobStatus::Queued);

    let over_grpc = app.create(7, 8, "").await;
    let seen = app
        .http("GET", &format!("/jobs/{}", over_grpc.jid), None)
        .await
        .json();
    assert_eq!(seen["status"], "QUEUED");
    assert_eq!(
        (seen["start"].as_i64(), seen["end"].as_i64()),
        (Some(7), Some(8))
    );

    // Cancelled over gRPC, seen cancelled over REST.
    app.client
        .cancel_job(pb::CancelJobRequest { jid: jid.into() })
        .await
        .unwrap();
    let seen = app.http("GET", &format!("/jobs/{jid}"), None).await.json();
    assert_eq!(seen["status"], "FINISHED -- CANCELLED");
    let list = app.http("GET", "/jobs", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_its_errors() {
    let app = TestApp::start().await;
    let response = app.http("GET", "/openapi.json", None).await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["info"]["title"], "Jobs");
    let paths = &document["paths"];
    for (path, method) in [
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{jid}", "get"),
        ("/jobs/{jid}", "delete"),
        ("/jobs/{jid}/results", "get"),
        ("/data", "post"),
        ("/data", "get"),
        ("/data", "delete"),
        ("/data/{id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let create = &paths["/jobs"]["post"]["responses"];
    for status in ["201", "400", "413", "415", "422", "503"] {
        assert!(create[status].is_object(), "POST /jobs lacks {status}");
    }
    assert!(
        create["400"]["content"]["application/problem+json"].is_object(),
        "errors are problem+json"
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_naming_them_and_the_accepted_ones() {
    let app = TestApp::start().await;
    app.http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await;
    for (path, unknown, accepted) in [
        (
            "/jobs?stauts=ERROR",
            "stauts",
            &["status", "limit", "page_token"],
        ),
        (
            "/jobs?page_size=1",
            "page_size",
            &["status", "limit", "page_token"],
        ),
        ("/jobs?limit=5&x", "x", &["status", "limit", "page_token"]),
        ("/data?q=ada", "q", &["search", "limit", "page_token"]),
    ] {
        let problem = app.http("GET", path, None).await.problem(400);
        assert_eq!(problem["field"], unknown, "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("query parameter"), "{path}: {detail}");
        for name in accepted {
            assert!(detail.contains(name), "{path}: {detail} lacks {name}");
        }
    }
    // The known ones still work.
    let listed = app.http("GET", "/jobs?status=QUEUED&limit=1", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert_eq!(
        app.http("GET", "/data?search=x&limit=1", None).await.status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_name_the_rest_inputs_not_the_grpc_fields() {
    let app = TestApp::start().await;
    let url = format!("{}/jobs", app.http_base());
    let body = |text: &str| Some(("application/json", text.as_bytes().to_vec()));
    for timeout in ["0", "86400001"] {
        let text = format!(r#"{{"start": 1, "end": 2, "timeout_ms": {timeout}}}"#);
        let problem = app.http("POST", "/jobs", body(&text)).await.problem(400);
        assert_eq!(problem["field"], "timeout_ms", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("timeout_ms: "), "{detail}");
        assert!(detail.contains(&format!("got {timeout})")), "{detail}");
        // In an array, the element is named too.
        let text = format!("[{text}]");
        let problem = app.http("POST", "/jobs", body(&text)).await.problem(400);
        assert_eq!(problem["field"], "[0].timeout_ms", "{problem}");
    }

    let long = "k".repeat(256);
    let problem = support::http_request_with(
        &url,
        "POST",
        &[("idempotency-key", &long)],
        body(r#"{"start": 1, "end": 2}"#),
    )
    .await
    .problem(400);
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("Idempotency-Key: "),
        "{problem}"
    );

    // A key used for another job, alone and in an array.
    for (first, second) in [
        (r#"{"start": 1, "end": 2}"#, r#"{"start": 1, "end": 3}"#),
        (r#"[{"start": 1, "end": 2}]"#, r#"[{"start": 1, "end": 3}]"#),
    ] {
        let key = (
            "idempotency-key",
            if first.starts_with('[') {
                "many"
            } else {
                "one"
            },
        );
        let created = support::http_request_with(&url, "POST", &[key], body(first)).await;
        assert_eq!(created.status, 201);
        let problem = support::http_request_with(&url, "POST", &[key], body(second))
            .await
            .problem(400);
        assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("Idempotency-Key: "), "{detail}");
        assert!(!detail.contains("idempotency_key"), "{detail}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_replays_the_key_and_the_token() {
    let app = TestApp::start().await;
    let document = app.http("GET", "/openapi.json", None).await.json();
    let create = &document["paths"]["/jobs"]["post"];
    assert!(
        create["responses"]["200"]["content"]["application/json"].is_object(),
        "the 200 of a replay: {create}"
    );
    let params = create["parameters"]
        .as_array()
        .expect("POST /jobs has parameters");
    let key = params
        .iter()
        .find(|param| param["name"] == "Idempotency-Key")
        .unwrap_or_else(|| panic!("no Idempotency-Key in {params:?}"));
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], false);
    // Without a token, nothing answers 401.
    assert!(create["responses"]["401"].is_null(), "{create}");
    assert!(document["components"]["securitySchemes"].is_null());
    app.stop().await;

    let app = TestApp::start_with(&["--api-token", "s3cret"]).await;
    let document = support::http_request_with(
        &format!("{}/openapi.json", app.http_base()),
        "GET",
        &[("authorization", "Bearer s3cret")],
        None,
    )
    .await
    .json();
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{document}");
    assert_eq!(scheme["scheme"], "bearer");
    let paths = &document["paths"];
    for (path, method) in [
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{jid}", "delete"),
        ("/data", "post"),
        ("/openapi.json", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(
            operation["responses"]["401"]["content"]["application/problem+json"].is_object(),
            "{method} {path}: {operation}"
        );
        assert_eq!(
            operation["security"][0]["bearer"],
            json!([]),
            "{method} {path}"
        );
    }
    // The probes and the metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(paths[path]["get"]["responses"]["401"].is_null(), "{path}");
        assert!(paths[path]["get"]["security"].is_null(), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn routes_that_take_no_query_refuse_any_parameter_naming_it() {
    let app = TestApp::start().await;
    let job = app
        .http_json("POST", "/jobs", json!({"start": 1, "end": 2}))
        .await
        .json();
    let jid = job["jid"].as_str().unwrap();
    let cases = [
        ("POST", "/jobs?kind=sleep".to_owned(), "kind"),
        ("GET", format!("/jobs/{jid}?x=1"), "x"),
        ("DELETE", format!("/jobs/{jid}?force"), "force"),
        ("GET", format!("/jobs/{jid}/results?format=text"), "format"),
        ("GET", "/healthz?foo=1".to_owned(), "foo"),
        ("GET", "/readyz?verbose".to_owned(), "verbose"),
        ("GET", "/metrics?name[]=x".to_owned(), "name[]"),
        ("GET", "/openapi.json?v=3".to_owned(), "v"),
    ];
    for (method, path, unknown) in cases {
        let body = (method == "POST").then(|| {
            (
                "application/json",
                br#"{"start": 0, "end": 10000}"#.to_vec(),
            )
        });
        let problem = app.http(method, &path, body).await.problem(400);
        assert_eq!(problem["field"], unknown, "{method} {path}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("unknown query parameter `{unknown}`")),
            "{method} {path}: {detail}"
        );
        assert!(detail.contains("takes none"), "{method} {path}: {detail}");
    }
    // The POST made no sum job, and the DELETE did not cancel the job.
    let jobs = app.http("GET", "/jobs", None).await.json();
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["status"], "QUEUED");
    // Without one, or with an empty query, they answer as ever.
    for path in [
        "/healthz",
        "/healthz?",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(app.http("GET", path, None).await.status, 200, "{path}");
    }
    assert_eq!(
        app.http("GET", &format!("/jobs/{jid}?"), None).await.status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_timeouts_unconfirmed_writes_and_query_refusals() {
    let app = TestApp::start().await;
    let document = app.http("GET", "/openapi.json", None).await.json();
    let paths = &document["paths"];
    // A body too slow to arrive, and a write Redis did not confirm.
    for (path, method, statuses) in [
        ("/jobs", "post", &["408", "504"][..]),
        ("/data", "post", &["408", "504"]),
        ("/data", "delete", &["504"]),
    ] {
        let responses = &paths[path][method]["responses"];
        for status in statuses {
            assert!(
                responses[status]["content"]["application/problem+json"].is_object(),
                "{method} {path} lacks {status}: {responses}"
            );
        }
    }
    // Every operation refuses a query parameter it does not take.
    for (path, item) in paths.as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"]["400"]["content"]["application/problem+json"].is_object(),
                "{method} {path} lacks 400"
            );
        }
    }
    // The key's rule as the server applies it: a space is taken.
    let key = paths["/jobs"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|param| param["name"] == "Idempotency-Key")
        .unwrap()
        .clone();
    let description = key["description"].as_str().unwrap();
    assert!(!description.contains("visible ASCII"), "{description}");
    assert!(description.contains("space"), "{description}");
    let url = format!("{}/jobs", app.http_base());
    let created = support::http_request_with(
        &url,
        "POST",
        &[("idempotency-key", "order 42")],
        Some(("application/json", br#"{"start": 1, "end": 2}"#.to_vec())),
    )
    .await;
    assert_eq!(created.status, 201);
    let refused = support::http_request_with(
        &url,
        "POST",
        &[("idempotency-key", "order\t42")],
        Some(("application/json", br#"{"start": 1, "end": 2}"#.to_vec())),
    )
    .await
    .problem(400);
    assert_eq!(refused["field"], "Idempotency-Key", "{refused}");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_answered_with_www_authenticate_bearer() {
    let app = TestApp::start_with(&["--api-token", "s3cret"]).await;
    let url = format!("{}/jobs", app.http_base());
    let missing = support::http_request_with(&url, "GET", &[], None).await;
    missing.problem(401);
    // No error code when no credentials were sent (RFC 6750 §3).
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong =
        support::http_request_with(&url, "GET", &[("authorization", "Bearer nope")], None).await;
    wrong.problem(401);
    assert_eq!(
        wrong.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    let document = support::http_request_with(
        &format!("{}/openapi.json", app.http_base()),
        "GET",
        &[("authorization", "Bearer s3cret")],
        None,
    )
    .await
    .json();
    let refused = &document["paths"]["/jobs"]["get"]["responses"]["401"];
    assert!(
        refused["headers"]["WWW-Authenticate"].is_object(),
        "{refused}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_content_encoding_other_than_identity_is_refused_with_415() {
    let app = TestApp::start().await;
    let url = format!("{}/jobs", app.http_base());
    let body = br#"{"start": 1, "end": 2}"#;
    // `body`, gzipped (Python's `gzip.compress(body, mtime=0)`).
    let gzipped = vec![
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x2a, 0x2e, 0x49,
        0x2c, 0x2a, 0x51, 0xb2, 0x52, 0x30, 0xd4, 0x51, 0x50, 0x4a, 0xcd, 0x4b, 0x01, 0xb2, 0x8c,
        0x6a, 0x01, 0x3c, 0xbb, 0xc6, 0xf7, 0x16, 0x00, 0x00, 0x00,
    ];
    for (encoding, payload) in [
        ("gzip", gzipped),
        // A plain body labelled as compressed is refused too: the label is
        // wrong, or the client expects a decoding that never happened.
        ("gzip", body.to_vec()),
        ("br", body.to_vec()),
        ("identity, gzip", body.to_vec()),
    ] {
        let refused = support::http_request_with(
            &url,
            "POST",
            &[("content-encoding", encoding)],
            Some(("application/json", payload)),
        )
        .await;
        let problem = refused.problem(415);
        assert_eq!(
            problem["field"], "Content-Encoding",
            "{encoding}: {problem}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("Content-Encoding"), "{detail}");
        assert_eq!(refused.header("accept-encoding"), Some("identity"));
    }
    for encoding in ["identity", "Identity"] {
        let created = support::http_request_with(
            &url,
            "POST",
            &[("content-encoding", encoding)],
            Some(("application/json", body.to_vec())),
        )
        .await;
        assert_eq!(created.status, 201, "{encoding}");
    }
    // Nothing was stored but the two identity jobs.
    let jobs = app.http("GET", "/jobs", None).await.json();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    app.stop().await;
}
