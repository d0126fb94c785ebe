//! What the worker's test files share: a store on the test's Redis, and
//! bounded waits for a job's state.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use jobs_core::{Job, JobId, RedisConfig, Store};
use jobs_testkit::TestRedis;

/// A store under the test's own key prefix.
pub async fn store(redis: &TestRedis) -> Store {
    Store::connect(&RedisConfig::new(redis.url(), redis.prefix()))
        .await
        .unwrap()
}

/// Polls (bounded by `limit`) until `done` holds for the job.
pub async fn wait_for(
    store: &Store,
    jid: JobId,
    limit: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = Instant::now() + limit;
    loop {
        match store.get(&jid).await {
            Ok(job) if done(&job) => return job,
            Ok(job) => assert!(Instant::now() < deadline, "gave up waiting on {job:?}"),
            Err(err) => assert!(Instant::now() < deadline, "gave up waiting: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 20 s) until the job is terminal.
pub async fn finished(store: &Store, jid: JobId) -> Job {
    wait_for(store, jid, Duration::from_secs(20), |job| {
        job.status.is_terminal()
    })
    .await
}
