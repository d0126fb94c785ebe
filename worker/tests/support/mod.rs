//! What the worker's test files share: the worker binary and a store on
//! the test's Redis, and bounded waits for a job's state.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use jobs_core::{Job, JobId, RedisConfig, Store};
use jobs_testkit::TestRedis;

/// The `jobs-worker` binary against the test's Redis and prefix, with no
/// metrics endpoint and its output discarded (a test may set either again).
pub fn worker_binary(redis: &TestRedis) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobs-worker"));
    command
        .env("REDIS_URL", redis.url())
        .env("JOBS_KEY_PREFIX", redis.prefix())
        .env("JOBS_WORKER_METRICS_ADDR", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

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
