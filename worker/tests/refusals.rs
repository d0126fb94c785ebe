//! What a real Redis refuses or a worker cannot read: an outcome is kept
//! through a Redis that refuses writes for a while (and given up only once
//! its lease is gone), and a claimed job this worker cannot read ends ERROR
//! without stranding the jobs claimed with it.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use support::{Worker, finished, sleep_job, store, submit, wait_for};

use std::time::Duration;

use jobs_core::{JobId, JobStatus, NewJob, Store};
use jobs_testkit::TestRedis;

/// A sleep job with one attempt: an outcome lost is a job ended ERROR.
fn one_shot_sleep(millis: i64) -> NewJob {
    sleep_job(millis, 1)
}

fn command(conn: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query::<()>(conn).unwrap();
}

/// A user on the test's private Redis that may do anything until told
/// otherwise, and a URL that connects as it.
fn worker_user(redis: &TestRedis) -> String {
    command(
        &mut redis.connection(),
        &[
            "ACL", "SETUSER", "worker", "on", ">secret", "~*", "&*", "+@all",
        ],
    );
    redis
        .url()
        .replacen("redis://", "redis://worker:secret@", 1)
}

/// A worker running a job as a Redis user that has then lost the right to
/// run scripts: Redis refuses every outcome it records (NOPERM) until
/// `admin` gives the right back.
struct Denied {
    store: Store,
    worker: Worker,
    jid: JobId,
    admin: redis::Connection,
}

impl Denied {
    async fn start(redis: &TestRedis, lease_ms: &str) -> Self {
        let store = store(redis).await;
        let url = worker_user(redis);
        let mut admin = redis.connection();
        let jid = submit(&store, one_shot_sleep(300)).await;
        let worker = Worker::start(
            redis,
            "denied",
            &[("REDIS_URL", &url), ("JOBS_LEASE_MS", lease_ms)],
        );
        running(&store, jid).await;
        command(&mut admin, &["ACL", "SETUSER", "worker", "-@scripting"]);
        Self {
            store,
            worker,
            jid,
            admin,
        }
    }
}

async fn running(store: &Store, jid: JobId) {
    wait_for(store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
}

#[tokio::test]
async fn an_outcome_refused_while_redis_is_out_of_memory_is_recorded_once_it_has_room() {
    let redis = TestRedis::private();
    let store = store(&redis).await;
    let mut admin = redis.connection();
    let jid = submit(&store, one_shot_sleep(300)).await;
    let worker = Worker::start(&redis, "oom", &[("JOBS_LEASE_MS", "5000")]);
    running(&store, jid).await;

    // Every write is refused (OOM) from here, the outcome's included.
    command(
        &mut admin,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    );
    command(&mut admin, &["CONFIG", "SET", "maxmemory", "1"]);
    worker
        .wait_for_log("cannot record outcomes", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    command(&mut admin, &["CONFIG", "SET", "maxmemory", "0"]);

    let job = finished(&store, jid).await;
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Success, 1),
        "{job:?}\n{}",
        worker.read_log()
    );
    let outcome = store.outcome(&jid).await.unwrap();
    assert_eq!(outcome.result, Some(serde_json::Value::Null));
    worker.terminate();
}

#[tokio::test]
async fn an_outcome_redis_refuses_for_another_reason_is_kept_while_its_lease_holds() {
    let redis = TestRedis::private();
    // Not a state Redis leaves by itself (NOPERM): still no reason to drop
    // an outcome while Redis may take it later.
    let Denied {
        store,
        worker,
        jid,
        mut admin,
    } = Denied::start(&redis, "5000").await;
    worker
        .wait_for_log("cannot record outcomes", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    command(&mut admin, &["ACL", "SETUSER", "worker", "+@scripting"]);

    let job = finished(&store, jid).await;
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Success, 1),
        "{job:?}\n{}",
        worker.read_log()
    );
    worker.terminate();
}

#[tokio::test]
async fn an_outcome_redis_never_takes_is_given_up_once_its_lease_has_lapsed() {
    let redis = TestRedis::private();
    let Denied {
        store,
        worker,
        jid,
        mut admin,
    } = Denied::start(&redis, "1000").await;
    worker
        .wait_for_log(
            "giving up an outcome that cannot be recorded",
            Duration::from_secs(10),
        )
        .await;
    command(&mut admin, &["ACL", "SETUSER", "worker", "+@scripting"]);

    // Recovery takes the job whose lease lapsed: its one attempt was lost.
    let job = finished(&store, jid).await;
    assert_eq!(job.status, JobStatus::Error, "{job:?}");
    worker.terminate();
}

#[tokio::test]
async fn a_claimed_job_the_worker_cannot_read_ends_error_and_the_others_run() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let good = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let unreadable = submit(&store, NewJob::parse(1, 4, "sum", None).unwrap()).await;
    // As a newer release might write it: one part more than this one knows.
    let key = format!("{}:job:{unreadable}", redis.prefix());
    let mut conn = redis.connection();
    let spec: String = redis::cmd("HGET")
        .arg(&key)
        .arg("spec")
        .query(&mut conn)
        .unwrap();
    command(
        &mut conn,
        &["HSET", &key, "spec", &format!("{spec}\0future-field")],
    );

    // Two jobs per claim: both come in the worker's first.
    let worker = Worker::start(
        &redis,
        "reader",
        &[("JOBS_LEASE_MS", "3000"), ("JOBS_WORKER_CONCURRENCY", "4")],
    );
    let job = finished(&store, good).await;
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Success, 1),
        "{job:?}\n{}",
        worker.read_log()
    );
    assert_eq!(
        store.outcome(&good).await.unwrap().result,
        Some(serde_json::json!(6))
    );

    // Its hash, read as it is: the store cannot read the job either.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, error) = loop {
        let (status, error): (String, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("status")
            .arg("error")
            .query(&mut conn)
            .unwrap();
        if status != "QUEUED" && status != "RUNNING" {
            break (status, error);
        }
        assert!(std::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, "ERROR", "{}", worker.read_log());
    let error = error.unwrap_or_default();
    assert!(
        error.contains("stored data is unreadable") && error.contains("9 parts, not 8"),
        "{error}"
    );
    worker.terminate();
}
