//! The dataset against a real Redis, in the states a deployment meets: out
//! of memory, stalled, answering late; and the ids it stores.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::time::{Duration, Instant};

use jobs_core::{Dataset, Error, NewRecords, RecordId, RedisConfig};
use jobs_testkit::{Fault, FaultyProxy, TestRedis};
use serde_json::{Value, json};

/// The dataset of `redis`'s prefix, reached at `url`, whose commands time
/// out after `timeout_ms`.
fn dataset_at(redis: &TestRedis, url: &str, timeout_ms: u64) -> Dataset {
    let mut config = RedisConfig::new(url, redis.prefix());
    config.redis_timeout_ms = timeout_ms;
    Dataset::new(&config).unwrap()
}

fn records(value: Value) -> NewRecords {
    let Value::Array(items) = value else {
        panic!("an array")
    };
    NewRecords::parse(items).unwrap()
}

#[tokio::test]
async fn a_transaction_refused_for_lack_of_memory_is_unavailable() {
    let redis = TestRedis::private();
    redis.out_of_memory();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let err = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(format!("{}:k", redis.prefix()))
        .arg("v")
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    // Redis refuses each queued command (OOM), then discards the lot.
    assert_eq!(err.code(), Some("EXECABORT"), "{err:?}");
    let err = Error::from(err);
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.may_have_run(), "{err:?}");
}

#[tokio::test]
async fn the_dataset_can_be_cleared_while_redis_is_out_of_memory() {
    let redis = TestRedis::private();
    let dataset = dataset_at(&redis, redis.url(), 2000);
    dataset
        .load(&records(json!([{"id": "a"}, {"id": "b"}])))
        .await
        .unwrap();
    redis.out_of_memory();

    let err = dataset
        .load(&records(json!([{"id": "c"}])))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    // Deleting needs no memory, and frees some: the way out of the state.
    assert_eq!(dataset.clear().await.unwrap(), 2);
    let left: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|key| !key.ends_with(":data:seq"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_clear_redis_did_not_answer_is_unconfirmed_within_the_timeout() {
    let redis = TestRedis::private();
    let dataset = dataset_at(&redis, redis.url(), 300);
    // Redis caches the clear's script, and both connections are open: a
    // frozen Redis is sent the calls themselves.
    dataset.clear().await.unwrap();
    dataset
        .load(&records(json!([{"id": "a"}, {"id": "b"}])))
        .await
        .unwrap();
    dataset.ping().await.unwrap();

    redis.freeze(true);
    let started = Instant::now();
    let cleared = dataset.clear().await;
    let clear_took = started.elapsed();
    let started = Instant::now();
    let loaded = dataset.load(&records(json!([{"id": "c"}]))).await;
    let load_took = started.elapsed();
    redis.freeze(false);

    // The clear was sent: it may have been made, so "try again" is not
    // the answer.
    let err = cleared.unwrap_err();
    assert!(matches!(err, Error::Unconfirmed(_)), "{err:?}");
    assert!(clear_took < Duration::from_secs(2), "took {clear_took:?}");
    // A small load gets little more than a single command's timeout.
    assert!(loaded.is_err(), "{loaded:?}");
    assert!(load_took < Duration::from_secs(2), "took {load_took:?}");

    // And it was made, once Redis resumed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = dataset.get(&RecordId::parse("a").unwrap()).await;
    assert!(matches!(err, Err(Error::RecordNotFound(_))), "{err:?}");
}

/// Whether a chunk from Redis answers a transaction's queued commands.
fn queued_reply(chunk: &[u8]) -> bool {
    chunk.windows(6).any(|window| window == b"QUEUED")
}

#[tokio::test]
async fn a_load_may_take_longer_in_proportion_to_its_size() {
    let redis = TestRedis::private();
    let late = Fault::Delay(Duration::from_millis(1200));

    // A small load answered 1.2 s late, with a 300 ms timeout: unconfirmed.
    let proxy = FaultyProxy::start(redis.url(), late, queued_reply);
    let dataset = dataset_at(&redis, proxy.url(), 300);
    let err = dataset
        .load(&records(json!([{"id": "small"}])))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unconfirmed(_)), "{err:?}");

    // Two MiB of records may take two seconds more: the same delay is fine.
    let proxy = FaultyProxy::start(redis.url(), late, queued_reply);
    let dataset = dataset_at(&redis, proxy.url(), 300);
    let filler = "x".repeat(200);
    let big: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("big-{i}"), "text": filler}))
        .collect();
    let ids = dataset
        .load(&NewRecords::parse(big).unwrap())
        .await
        .unwrap();
    assert_eq!(ids.len(), 10_000);
}

#[tokio::test]
async fn a_numeric_id_is_stored_in_its_canonical_form() {
    let redis = TestRedis::start();
    let dataset = dataset_at(&redis, redis.url(), 2000);
    let load: Vec<Value> =
        serde_json::from_str(r#"[{"id": 1e3}, {"id": 7.0, "n": 2.50}, {"id": -0}]"#).unwrap();
    let ids = dataset
        .load(&NewRecords::parse(load).unwrap())
        .await
        .unwrap();
    let ids: Vec<&str> = ids.iter().map(RecordId::as_str).collect();
    assert_eq!(ids, ["1000", "7", "0"]);

    // The record answers under its id, and holds that id.
    let thousand = dataset
        .get(&RecordId::parse("1000").unwrap())
        .await
        .unwrap();
    assert_eq!(Value::Object(thousand).to_string(), r#"{"id":1000}"#);
    let seven = dataset.get(&RecordId::parse("7").unwrap()).await.unwrap();
    // Only the id is rewritten: other numbers keep their text.
    assert_eq!(Value::Object(seven).to_string(), r#"{"id":7,"n":2.50}"#);
    let zero = dataset.get(&RecordId::parse("0").unwrap()).await.unwrap();
    assert_eq!(zero["id"], json!(0));
}
