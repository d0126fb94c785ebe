//! A claim that ran in Redis while its reply did not reach the worker in
//! time: the worker must run the jobs it took rather than leave them to
//! their leases. Redis is reached through a proxy that holds back the first
//! claim's reply (the first bytes from Redis with a NUL in them: only claim
//! rows carry one) past the worker's response timeout.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::time::Duration;

use jobs_core::{JobStatus, NewJob};
use jobs_testkit::{Fault, FaultyProxy, TestRedis};
use support::{Worker, finished, store};

#[tokio::test]
async fn the_jobs_of_a_claim_whose_reply_was_lost_run_at_once() {
    let redis = TestRedis::private();
    let store = store(&redis).await;
    // One attempt: if the worker left the job to its lease, recovery would
    // end it ERROR, never run.
    let new = NewJob::parse(1, 3, "sum", None)
        .unwrap()
        .with_max_attempts(1)
        .unwrap();
    let jid = store.create(&new).await.unwrap().job.jid;
    let proxy = FaultyProxy::start(redis.url(), Fault::Delay(Duration::from_secs(1)), |chunk| {
        chunk.contains(&0)
    });
    let worker = Worker::start(
        &redis,
        "lost-reply",
        &[
            ("REDIS_URL", proxy.url()),
            ("JOBS_REDIS_TIMEOUT_MS", "300"),
            ("JOBS_LEASE_MS", "30000"),
        ],
    );

    let job = finished(&store, jid).await;
    let log = worker.terminate();
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Success, 1),
        "{job:?}\n{log}"
    );
    assert!(
        log.contains("running the jobs of a claim whose reply was lost"),
        "{log}"
    );
}
