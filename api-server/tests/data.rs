//! The dataset over REST (`/data`) and gRPC (`jobs.v1.DataService`), against
//! a real Redis: load, list, search, get, clear; whole-load rejection of a
//! bad record; and a 100,000-record load written in a few round trips.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use jobs_proto::pb::{self, data_service_client::DataServiceClient};
use jobs_testkit::TestRedis;
use serde_json::{Value, json};
use support::{TestApp, within};
use tonic::Code;

fn ids(page: &Value) -> Vec<String> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|record| match &record["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The URL in a `Link: <…>; rel="next"` header.
fn next_url(link: &str) -> &str {
    link.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("bad Link: {link}"))
}

#[tokio::test]
async fn records_load_list_search_get_and_clear() {
    let app = TestApp::start().await;
    let loaded = app
        .http_json(
            "POST",
            "/data",
            json!([
                {"id": "ada", "name": "Ada Lovelace", "field": "Mathematics"},
                {"name": "Alan Turing", "tags": ["computing", {"note": "Enigma"}]},
                {"id": 42, "name": "Grace Hopper", "year": 1906},
                {"id": "big", "value": 123456789012345678901234567890u128}
            ]),
        )
        .await;
    assert_eq!(loaded.status, 200);
    let loaded = loaded.json();
    assert_eq!(loaded["loaded"], 4);
    let returned: Vec<String> = serde_json::from_value(loaded["ids"].clone()).unwrap();
    assert_eq!(returned[0], "ada");
    assert_eq!(returned[2], "42");
    let generated = returned[1].clone();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    // The generated id is written into the record.
    let turing = app.http("GET", &format!("/data/{generated}"), None).await;
    assert_eq!(turing.status, 200);
    assert_eq!(turing.json()["id"], generated.as_str());
    assert_eq!(turing.json()["name"], "Alan Turing");
    let hopper = app.http("GET", "/data/42", None).await.json();
    assert_eq!(
        hopper,
        json!({"id": 42, "name": "Grace Hopper", "year": 1906})
    );
    // Big numbers stay exact.
    let big = app.http("GET", "/data/big", None).await;
    let text = String::from_utf8(big.body).unwrap();
    assert!(text.contains("123456789012345678901234567890"), "{text}");

    // Load order, paged through Link.
    let all = app.http("GET", "/data", None).await;
    assert_eq!(ids(&all.json()), returned);
    assert!(all.header("link").is_none());
    let first = app.http("GET", "/data?limit=3", None).await;
    assert_eq!(ids(&first.json()), &returned[..3]);
    let second = app
        .http("GET", next_url(first.header("link").unwrap()), None)
        .await;
    assert_eq!(ids(&second.json()), &returned[3..]);
    assert!(second.header("link").is_none());

    // Search: any string value, at any depth, ignoring case.
    for (search, expected) in [
        ("lovelace", vec!["ada"]),
        ("ENIGMA", vec![generated.as_str()]),
        ("a", vec!["ada", generated.as_str(), "42"]),
        ("1906", vec![]),
        ("Hopper", vec!["42"]),
    ] {
        let page = app
            .http("GET", &format!("/data?search={search}"), None)
            .await
            .json();
        assert_eq!(ids(&page), expected, "search {search}");
    }
    let paged = app.http("GET", "/data?search=a&limit=2", None).await;
    assert_eq!(ids(&paged.json()), ["ada", generated.as_str()]);
    let link = paged.header("link").unwrap();
    assert!(link.contains("search=a"), "{link}");
    let rest = app.http("GET", next_url(link), None).await.json();
    assert_eq!(ids(&rest), ["42"]);

    // Loading an id again replaces the record.
    app.http_json(
        "POST",
        "/data",
        json!([{"id": "ada", "name": "Augusta Ada King"}]),
    )
    .await;
    let ada = app.http("GET", "/data/ada", None).await.json();
    assert_eq!(ada, json!({"id": "ada", "name": "Augusta Ada King"}));

    let cleared = app.http("DELETE", "/data", None).await;
    assert_eq!(cleared.status, 200);
    assert_eq!(cleared.json(), json!({"deleted": 4}));
    assert_eq!(app.http("GET", "/data", None).await.json(), json!([]));
    app.http("GET", "/data/ada", None).await.problem(404);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_record_rejects_the_whole_load_by_its_index_and_writes_nothing() {
    let app = TestApp::start_with(&["--http-data-body-limit", "4096"]).await;
    let cases = [
        (json!([{"id": "a"}, {"id": "b"}, 7]), "records[2]"),
        (json!([{"id": "a"}, {"id": true}]), "records[1].id"),
        (json!([{"id": "a"}, {"id": 1.5}]), "records[1].id"),
        (json!([{"id": "a"}, {"id": ""}]), "records[1].id"),
        (json!([{"id": "a"}, {"id": "x\u{1}y"}]), "records[1].id"),
        (
            json!([{"id": "a"}, {"id": "b"}, {"id": "a"}]),
            "records[2].id",
        ),
        (json!([{"id": 1}, {"id": "1"}]), "records[1].id"),
        (json!([{"id": 1}, {"id": 1.0}]), "records[1].id"),
    ];
    for (body, field) in cases {
        let problem = app
            .http_json("POST", "/data", body.clone())
            .await
            .problem(400);
        assert_eq!(problem["field"], field, "{body}");
        assert!(problem["detail"].as_str().unwrap().contains(field));
    }
    app.http_json("POST", "/data", json!({"id": "a"}))
        .await
        .problem(422);
    app.http(
        "POST",
        "/data",
        Some(("application/json", b"[{\"id\":".to_vec())),
    )
    .await
    .problem(400);
    app.http("POST", "/data", Some(("text/csv", b"id\n1\n".to_vec())))
        .await
        .problem(415);
    let padding = "x".repeat(5000);
    app.http_json("POST", "/data", json!([{"id": "a", "pad": padding}]))
        .await
        .problem(413);
    assert!(
        app.redis.keys().iter().all(|key| !key.contains(":data:")),
        "a rejected load wrote {:?}",
        app.redis.keys()
    );
    assert_eq!(app.http("GET", "/data", None).await.json(), json!([]));

    // Bad paths and queries.
    app.http("GET", "/data/nothing-here", None)
        .await
        .problem(404);
    app.http("GET", &format!("/data/{}", "x".repeat(300)), None)
        .await
        .problem(400);
    for query in ["limit=0", "limit=5000", "page_token=zz"] {
        app.http("GET", &format!("/data?{query}"), None)
            .await
            .problem(400);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_100_000_record_load_is_written_in_a_few_round_trips() {
    // A private Redis, so its command count is this test's alone.
    let app = TestApp::start_on(TestRedis::private(), &[]).await;
    let count = 100_000;
    let records: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("r{i}"), "name": format!("Name {i}"), "n": i}))
        .collect();
    let body = serde_json::to_vec(&records).unwrap();

    let commands_before = total_commands(&app.redis);
    let loaded = within(
        std::time::Duration::from_secs(120),
        app.http("POST", "/data", Some(("application/json", body))),
    )
    .await;
    let commands = total_commands(&app.redis) - commands_before;
    assert_eq!(
        loaded.status,
        200,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    assert_eq!(loaded.json()["loaded"], count);
    // INCRBY, MULTI, one HSET and one ZADD per 1,000 records, EXEC; and a
    // little slack for the INFO calls themselves.
    assert!(commands < 250, "{commands} commands for {count} records");

    let mut conn = app.redis.connection();
    let stored: usize = redis::cmd("HLEN")
        .arg(format!("{}:data:records", app.redis.prefix()))
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, count);

    assert_eq!(
        app.http("GET", "/data/r99999", None).await.json(),
        json!({"id": "r99999", "name": "Name 99999", "n": 99999})
    );
    let found = app
        .http("GET", "/data?search=name%2099998", None)
        .await
        .json();
    assert_eq!(ids(&found), ["r99998"]);
    let page = app.http("GET", "/data?limit=1000", None).await;
    assert_eq!(ids(&page.json()).len(), 1000);
    assert!(page.header("link").unwrap().contains("page_token="));

    assert_eq!(
        app.http("DELETE", "/data", None).await.json(),
        json!({"deleted": count})
    );
    app.stop().await;
}

fn total_commands(redis: &TestRedis) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn record(value: Value) -> pb::LoadDataRequest {
    let Value::Object(map) = value else {
        panic!("an object")
    };
    pb::LoadDataRequest {
        record: Some(jobs_proto::params_to_struct(map)),
    }
}

#[tokio::test]
async fn the_data_service_over_grpc_shares_the_dataset_with_rest() {
    let app = TestApp::start().await;
    let mut client = DataServiceClient::new(app.channel.clone());
    let loaded = client
        .load_data(tokio_stream::iter([
            record(json!({"id": "one", "city": "Lisbon"})),
            record(json!({"city": "Oslo", "n": 7})),
            record(json!({"id": 3, "city": "Lima"})),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.loaded, 3);
    assert_eq!(loaded.ids[0], "one");
    assert_eq!(loaded.ids[2], "3");

    // REST sees what gRPC loaded, and the reverse.
    let oslo = app
        .http("GET", &format!("/data/{}", loaded.ids[1]), None)
        .await
        .json();
    assert_eq!(
        (oslo["city"].clone(), oslo["n"].clone()),
        (json!("Oslo"), json!(7))
    );
    app.http_json("POST", "/data", json!([{"id": "four", "city": "Lagos"}]))
        .await;

    let page = client
        .list_data(pb::ListDataRequest {
            page_size: 0,
            page_token: String::new(),
            search: "li".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let cities: Vec<_> = page
        .records
        .iter()
        .map(|r| jobs_proto::struct_to_params(r.clone()).unwrap()["city"].clone())
        .collect();
    assert_eq!(cities, [json!("Lisbon"), json!("Lima")]);
    assert!(page.next_page_token.is_empty());

    let first = client
        .list_data(pb::ListDataRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.records.len(), 2);
    let second = client
        .list_data(pb::ListDataRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.records.len(), 2);
    assert!(second.next_page_token.is_empty());

    let lagos = client
        .get_data(pb::GetDataRequest { id: "four".into() })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(
        jobs_proto::struct_to_params(lagos).unwrap()["city"],
        json!("Lagos")
    );
    let missing = client
        .get_data(pb::GetDataRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // A bad record rejects the whole stream, by its index.
    let bad = client
        .load_data(tokio_stream::iter([
            record(json!({"id": "five"})),
            record(json!({"id": true})),
        ]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("records[1].id"),
        "{}",
        bad.message()
    );
    app.http("GET", "/data/five", None).await.problem(404);

    let deleted = client
        .delete_data(pb::DeleteDataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 4);
    assert_eq!(app.http("GET", "/data", None).await.json(), json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_query_on_a_data_route_that_takes_none_is_refused_and_changes_nothing() {
    let app = TestApp::start().await;
    app.http_json("POST", "/data", json!([{"id": "ada"}, {"id": "bob"}]))
        .await;
    for (method, path, unknown) in [
        ("DELETE", "/data?search=ada", "search"),
        ("GET", "/data/ada?fields=name", "fields"),
        ("POST", "/data?replace=true", "replace"),
    ] {
        let body = (method == "POST").then(|| ("application/json", br#"[{"id": "cy"}]"#.to_vec()));
        let problem = app.http(method, path, body).await.problem(400);
        assert_eq!(problem["field"], unknown, "{method} {path}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("unknown query parameter `{unknown}`")),
            "{method} {path}: {detail}"
        );
    }
    // The DELETE cleared nothing, and the POST loaded nothing.
    let all = app.http("GET", "/data", None).await.json();
    assert_eq!(ids(&all), ["ada", "bob"]);
    app.stop().await;
}

/// `[{},{},…]`: `count` empty records.
fn empty_records(count: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 * count + 2);
    body.push(b'[');
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.push(b']');
    body
}

#[tokio::test]
async fn a_load_over_the_record_limit_is_refused_before_the_rest_is_parsed() {
    let app = TestApp::start().await;
    let limit = jobs_core::MAX_LOAD_RECORDS;
    // One record too many, then text that is not JSON: were the whole body
    // parsed, the answer would be "malformed JSON".
    let mut body = empty_records(limit + 1);
    body.pop();
    body.extend_from_slice(b", not JSON");
    let problem = app
        .http("POST", "/data", Some(("application/json", body)))
        .await
        .problem(400);
    assert_eq!(problem["field"], "records", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("at most {limit}")), "{detail}");
    assert!(
        app.redis.keys().iter().all(|key| !key.contains(":data:")),
        "a rejected load wrote {:?}",
        app.redis.keys()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_large_load_does_not_hold_up_other_requests() {
    // The test's runtime has one thread, shared by the server and this
    // client: a body parsed on it would stall every other request.
    let app = TestApp::start().await;
    let body = empty_records(16 * 1024 * 1024 / 3);
    let url = format!("{}/data", app.http_base());
    let load = tokio::spawn(async move {
        support::http_request(&url, "POST", Some(("application/json", body))).await
    });
    let mut longest = std::time::Duration::ZERO;
    let mut last = std::time::Instant::now();
    while !load.is_finished() {
        assert_eq!(app.http("GET", "/healthz", None).await.status, 200);
        longest = longest.max(last.elapsed());
        last = std::time::Instant::now();
    }
    let problem = load.await.unwrap().problem(400);
    assert_eq!(problem["field"], "records", "{problem}");
    // A hang guard with a wide margin, not a speed assertion: parsing the
    // body here took seconds.
    assert!(
        longest < std::time::Duration::from_secs(1),
        "/healthz waited {longest:?} for the load"
    );
    app.stop().await;
}

#[tokio::test]
async fn out_of_memory_a_load_is_503_and_a_clear_still_frees_the_dataset() {
    let app = TestApp::start_on(TestRedis::private(), &[]).await;
    let loaded = app
        .http_json("POST", "/data", json!([{"id": "a"}, {"id": "b"}]))
        .await;
    assert_eq!(loaded.status, 200);
    app.redis.out_of_memory();

    let refused = app.http_json("POST", "/data", json!([{"id": "c"}])).await;
    refused.problem(503);
    let cleared = app.http("DELETE", "/data", None).await;
    assert_eq!(
        cleared.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&cleared.body)
    );
    assert_eq!(cleared.json(), json!({"deleted": 2}));
    assert_eq!(app.http("GET", "/data", None).await.json(), json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_clear_redis_did_not_answer_is_504_within_the_timeout() {
    let app = TestApp::start_on(TestRedis::private(), &["--redis-timeout-ms", "300"]).await;
    let mut client = DataServiceClient::new(app.channel.clone());
    // Both of the dataset's connections open, and the clear's script cached:
    // a frozen Redis is sent the calls themselves.
    app.http_json("POST", "/data", json!([{"id": "a"}])).await;
    app.http("DELETE", "/data", None).await;
    app.http_json("POST", "/data", json!([{"id": "a"}])).await;

    app.redis.freeze(true);
    let started = std::time::Instant::now();
    let cleared = app.http("DELETE", "/data", None).await;
    let over_grpc = client.delete_data(pb::DeleteDataRequest {}).await;
    let loaded = app.http_json("POST", "/data", json!([{"id": "b"}])).await;
    let took = started.elapsed();
    app.redis.freeze(false);

    // It may have been made: not 503, "try again".
    let problem = cleared.problem(504);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("may have been made"),
        "{problem}"
    );
    assert_eq!(over_grpc.unwrap_err().code(), Code::DeadlineExceeded);
    // The load fails reserving its numbers, before it writes a record.
    loaded.problem(503);
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_numeric_id_is_stored_as_the_id_it_is_found_by() {
    let app = TestApp::start().await;
    let body = r#"[{"id": 1e3, "name": "thousand"}, {"id": 7.0}]"#;
    let loaded = app
        .http("POST", "/data", Some(("application/json", body.into())))
        .await;
    assert_eq!(loaded.json()["ids"], json!(["1000", "7"]));
    let thousand = app.http("GET", "/data/1000", None).await;
    assert_eq!(
        String::from_utf8(thousand.body).unwrap(),
        r#"{"id":1000,"name":"thousand"}"#
    );
    let listed = app.http("GET", "/data", None).await;
    assert_eq!(ids(&listed.json()), ["1000", "7"]);
    app.stop().await;
}
