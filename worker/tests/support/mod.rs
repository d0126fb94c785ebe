//! What the worker's test files share: the worker binary and a store on
//! the test's Redis, and bounded waits for a job's state.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use jobs_core::{Job, JobId, NewJob, RedisConfig, Store};
use jobs_testkit::{Spawned, TestRedis};

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

/// Creates `new`, which must be accepted, and returns its id.
pub async fn submit(store: &Store, new: NewJob) -> JobId {
    store.create(&new).await.unwrap().job.jid
}

/// A sleep job of `millis` that may take `attempts` attempts.
pub fn sleep_job(millis: i64, attempts: u32) -> NewJob {
    NewJob::parse(0, millis, "sleep", None)
        .unwrap()
        .with_max_attempts(attempts)
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

/// A `jobs-worker` process whose log goes to a file the test can read.
pub struct Worker {
    pub child: Spawned,
    log: PathBuf,
}

impl Worker {
    /// Starts the binary as worker `name`, with `env` added to what
    /// [`worker_binary`] sets.
    pub fn start(redis: &TestRedis, name: &str, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", redis.prefix()));
        // No metrics endpoint (worker_binary's default): several run at once.
        let mut command = worker_binary(redis);
        command
            .env("JOBS_WORKER_NAME", name)
            .env("RUST_LOG", "jobs_worker=debug,jobs_core=info")
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        Self {
            child: Spawned::new(command.spawn().unwrap()),
            log,
        }
    }

    pub fn signal(&self, signal: &str) {
        self.child.signal(signal);
    }

    pub fn kill(mut self) -> String {
        self.signal("-KILL");
        self.child.wait().unwrap();
        self.read_log()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(mut self) -> String {
        self.signal("-TERM");
        let status = self.exit_within(Duration::from_secs(20));
        assert!(status.success(), "the worker exited with {status}");
        self.read_log()
    }

    /// Waits until the process exits; fails the test after `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not stop:\n{}",
                self.read_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded by `limit`) until the log has a line containing
    /// `text`.
    pub async fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.read_log();
            if log.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The process itself goes with `child` (Spawned).
        let _ = std::fs::remove_file(&self.log);
    }
}
