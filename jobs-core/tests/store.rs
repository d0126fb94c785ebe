//! The store's guarantees, checked against a real Redis: atomic creation,
//! guarded state changes, and a queue that keeps nothing it no longer needs.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::time::Duration;

use jobs_core::{
    Error, Finished, JobStatus, NewJob, Outcome, ProgressAck, Queue, RedisConfig, Store,
};
use jobs_testkit::TestRedis;

async fn setup(redis: &TestRedis) -> (Store, Queue) {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let queue = Queue::connect(&config, "test-consumer").await.unwrap();
    (store, queue)
}

fn stream_len(redis: &TestRedis) -> u64 {
    redis::cmd("XLEN")
        .arg(format!("{}:queue", redis.prefix()))
        .query(&mut redis.connection())
        .unwrap()
}

/// Entries delivered to a worker and not yet acknowledged.
fn pending(redis: &TestRedis) -> u64 {
    // XPENDING's summary starts with the count.
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(format!("{}:queue", redis.prefix()))
        .arg("workers")
        .query(&mut redis.connection())
        .unwrap();
    redis::from_redis_value(summary[0].clone()).unwrap()
}

#[tokio::test]
async fn create_saves_and_queues_in_one_step() {
    let redis = TestRedis::start();
    let (store, _queue) = setup(&redis).await;
    let job = store
        .create(&NewJob::parse(1, 2, "sum", None).unwrap())
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(store.get(&job.jid).await.unwrap(), job);
    assert_eq!(stream_len(&redis), 1);
    let mut keys = redis.keys();
    keys.sort();
    let p = redis.prefix();
    assert_eq!(
        keys,
        [
            format!("{p}:index"),
            format!("{p}:job:{}", job.jid),
            format!("{p}:queue"),
            format!("{p}:seq"),
            format!("{p}:status:QUEUED"),
        ]
    );
}

#[tokio::test]
async fn a_finished_job_never_changes_again() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let job = store
        .create(&NewJob::parse(1, 3, "sum", None).unwrap())
        .await
        .unwrap();
    let claimed = queue.claim(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let lease = claimed[0].lease.clone();
    assert_eq!((lease.jid(), lease.attempt()), (job.jid, 1));
    assert_eq!(claimed[0].job.status, JobStatus::Running);
    assert_eq!(pending(&redis), 1);

    let success = Finished {
        lease: lease.clone(),
        outcome: Outcome::Success(6.into()),
    };
    assert_eq!(queue.finish(&[success]).await.unwrap(), [true]);
    let done = store.get(&job.jid).await.unwrap();
    assert_eq!(done.status, JobStatus::Success);

    // A late or duplicate write by the same attempt is refused.
    let late = Finished {
        lease: lease.clone(),
        outcome: Outcome::Error("late".into()),
    };
    assert_eq!(queue.finish(&[late]).await.unwrap(), [false]);
    assert_eq!(
        queue.report_progress(&lease, 0.5).await.unwrap(),
        ProgressAck::Lost
    );
    assert_eq!(store.get(&job.jid).await.unwrap(), done);
    assert_eq!(
        store.outcome(&job.jid).await.unwrap().result,
        Some(6.into())
    );
    assert!(matches!(
        store.cancel(&job.jid).await,
        Err(Error::AlreadyFinished {
            status: JobStatus::Success,
            ..
        })
    ));

    // The queue keeps nothing for a finished job.
    assert_eq!(stream_len(&redis), 0);
    assert_eq!(pending(&redis), 0);
}

#[tokio::test]
async fn claims_come_in_batches_and_skip_cancelled_jobs() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let mut jids = Vec::new();
    for i in 0..5 {
        jids.push(
            store
                .create(&NewJob::parse(i, i, "sum", None).unwrap())
                .await
                .unwrap()
                .jid,
        );
    }
    let cancelled = store.cancel(&jids[1]).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);

    let first = queue.claim(3, Duration::from_millis(100)).await.unwrap();
    let rest = queue.claim(10, Duration::from_millis(100)).await.unwrap();
    let claimed: Vec<_> = first.iter().chain(&rest).map(|c| c.job.jid).collect();
    assert_eq!(first.len(), 2, "three read, one of them cancelled");
    assert_eq!(
        claimed,
        [jids[0], jids[2], jids[3], jids[4]],
        "in queue order"
    );
    assert_eq!(store.get(&jids[1]).await.unwrap().attempts, 0);

    // Nothing left: the claim waits for its block time and returns empty.
    assert!(
        queue
            .claim(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_blocked_claim_wakes_for_a_new_job() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let waiting = tokio::spawn(async move { queue.claim(5, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let job = store
        .create(&NewJob::parse(1, 1, "sum", None).unwrap())
        .await
        .unwrap();
    let claimed = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the blocked read woke up")
        .unwrap()
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.jid, job.jid);
    assert_eq!(claimed[0].job.status, JobStatus::Running);
}

#[tokio::test]
async fn cancelling_a_running_job_flags_it_for_its_worker() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let job = store
        .create(&NewJob::parse(0, 10_000, "sleep", None).unwrap())
        .await
        .unwrap();
    let lease = queue.claim(1, Duration::from_millis(100)).await.unwrap()[0]
        .lease
        .clone();
    assert_eq!(
        queue.report_progress(&lease, 0.1).await.unwrap(),
        ProgressAck::Recorded
    );
    assert_eq!(
        store.cancel(&job.jid).await.unwrap().status,
        JobStatus::Running
    );
    assert_eq!(
        queue.report_progress(&lease, 0.2).await.unwrap(),
        ProgressAck::CancelRequested
    );
    let stopped = Finished {
        lease,
        outcome: Outcome::Cancelled("cancelled by request".into()),
    };
    assert_eq!(queue.finish(&[stopped]).await.unwrap(), [true]);
    let done = store.get(&job.jid).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.error.as_deref(), Some("cancelled by request"));
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable() {
    let config = RedisConfig::new(
        format!("redis://127.0.0.1:{}", jobs_testkit::free_port()),
        "x",
    );
    let err = Store::connect(&config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = Store::connect(&RedisConfig::new("not a url", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}
