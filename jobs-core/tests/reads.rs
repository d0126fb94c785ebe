//! What a client reads back, against a real Redis: a result that has
//! expired is told apart from a null one, and a page of jobs stays bounded
//! in bytes however large its jobs are.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::{collections::HashSet, time::Duration};

use jobs_core::{
    Error, Finished, JobId, JobStatus, ListQuery, MAX_PAGE_BYTES, NewJob, Outcome, Queue,
    QueueSettings, RedisConfig, Retention, Store,
};
use jobs_testkit::TestRedis;
use serde_json::{Value, json};

/// A store, and a worker's queue that keeps jobs for a minute and results
/// for `result_ttl_secs`.
async fn setup(redis: &TestRedis, result_ttl_secs: u64) -> (Store, Queue) {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let settings = QueueSettings {
        retention: Retention {
            retention_secs: 60,
            result_ttl_secs,
        },
        ..QueueSettings::default()
    };
    let queue = Queue::connect(&config, "w", settings).await.unwrap();
    (store, queue)
}

/// Creates a sum job, and lets a worker succeed with `result`.
async fn succeed_with(store: &Store, queue: &Queue, result: Value) -> JobId {
    let new = NewJob::parse(1, 3, "sum", None).unwrap();
    let jid = store.create(&new).await.unwrap().job.jid;
    let lease = queue
        .claim(1, Duration::from_millis(50))
        .await
        .unwrap()
        .remove(0)
        .lease;
    let outcome = Outcome::Success(result);
    queue.finish(&[Finished { lease, outcome }]).await.unwrap();
    jid
}

#[tokio::test]
async fn an_expired_result_is_told_apart_from_a_null_one() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis, 1).await;
    let null = succeed_with(&store, &queue, Value::Null).await;
    let number = succeed_with(&store, &queue, json!(6)).await;
    assert_eq!(
        store.outcome(&null).await.unwrap().result,
        Some(Value::Null)
    );
    assert_eq!(store.outcome(&number).await.unwrap().result, Some(json!(6)));

    // The results outlive their TTL; the jobs stay.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for jid in [null, number] {
        assert_eq!(store.get(&jid).await.unwrap().status, JobStatus::Success);
        let err = store.outcome(&jid).await.unwrap_err();
        assert!(
            matches!(err, Error::ResultExpired(expired) if expired == jid),
            "{err:?}"
        );
        assert!(err.to_string().contains("JOBS_RESULT_TTL_SECS"), "{err}");
    }

    // Kept as long as its job, a small result lives in the job's hash and
    // a null one is still null.
    let (store, queue) = setup(&redis, 60).await;
    let null = succeed_with(&store, &queue, Value::Null).await;
    assert_eq!(
        store.outcome(&null).await.unwrap().result,
        Some(Value::Null)
    );
}

/// What a job takes as stored: its hash's field names and values.
fn stored_bytes(redis: &TestRedis, jid: &str) -> usize {
    let fields: Vec<String> = redis::cmd("HGETALL")
        .arg(format!("{}:job:{jid}", redis.prefix()))
        .query(&mut redis.connection())
        .unwrap();
    fields.iter().map(String::len).sum()
}

/// Pages through the jobs of `status` (all of them for `None`), checking
/// that each page stays within the budget and that a short one ends only at
/// a job that would not fit; returns the jids listed and the page count.
async fn page_through(
    redis: &TestRedis,
    store: &Store,
    status: Option<JobStatus>,
    expected: &[String],
) -> usize {
    let mut listed: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let query = ListQuery::new(100, &token, status).unwrap();
        let page = store.list(&query).await.unwrap();
        pages += 1;
        let jids: Vec<String> = page.jobs.iter().map(|job| job.jid.to_string()).collect();
        let bytes: usize = jids.iter().map(|jid| stored_bytes(redis, jid)).sum();
        assert!(
            bytes <= MAX_PAGE_BYTES,
            "page {pages}: {} jobs, {bytes} bytes",
            jids.len()
        );
        listed.extend(jids);
        let Some(next) = page.next_page_token else {
            break;
        };
        if page.jobs.len() < 100 {
            let next_jid = &expected[listed.len()];
            assert!(bytes + stored_bytes(redis, next_jid) > MAX_PAGE_BYTES);
        }
        token = next;
    }
    assert_eq!(listed, expected, "{status:?}");
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), expected.len());
    pages
}

#[tokio::test]
async fn a_page_of_large_jobs_ends_early_and_the_next_goes_on_from_it() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis, 60).await;
    // Each job's params take about 6 KiB as JSON: 1024 characters that
    // JSON escapes; 150 of them take more than any page may hold.
    let message: String = "\u{1}".repeat(1024);
    let params = json!({ "message": message }).as_object().unwrap().clone();
    let new = NewJob::parse(1, 1, "fail", Some(params)).unwrap();
    let created = store.create_many(&vec![new; 150]).await.unwrap();
    let newest_first: Vec<String> = created
        .iter()
        .rev()
        .map(|created| created.job.jid.to_string())
        .collect();
    assert!(page_through(&redis, &store, None, &newest_first).await >= 2);

    // The oldest 100 running: their pending entries are merged into the
    // pages of every job, and make the pages of RUNNING ones.
    let mut running = 0;
    while running < 100 {
        running += queue.claim_ready(100 - running).await.unwrap().len();
    }
    assert!(page_through(&redis, &store, None, &newest_first).await >= 2);
    let pages = page_through(
        &redis,
        &store,
        Some(JobStatus::Running),
        &newest_first[50..],
    )
    .await;
    assert!(pages >= 2);
    let queued = Some(JobStatus::Queued);
    assert_eq!(
        page_through(&redis, &store, queued, &newest_first[..50]).await,
        1
    );
}
