//! The worker against a real Redis: the real binary, the concurrency limit,
//! and handlers that misbehave.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use support::{finished, store, worker_binary};

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use jobs_core::{JobId, JobStatus, NewJob, RedisConfig, Retention, Store};
use jobs_testkit::{Spawned, TestRedis};
use jobs_worker::{JobContext, JobFailure, Registry, WorkerConfig};
use tokio_util::sync::CancellationToken;

async fn submit(store: &Store, start: i64, end: i64, kind: &str) -> JobId {
    store
        .create(&NewJob::parse(start, end, kind, None).unwrap())
        .await
        .unwrap()
        .job
        .jid
}

fn spawn_worker(
    redis: &TestRedis,
    registry: Registry,
    concurrency: usize,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let worker = WorkerConfig {
        concurrency: concurrency.try_into().unwrap(),
        ..WorkerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        jobs_worker::run(&config, &worker, Retention::default(), registry, token)
            .await
            .unwrap();
    });
    (shutdown, handle)
}

#[tokio::test]
async fn the_worker_binary_runs_queued_jobs_and_exits_cleanly_on_sigterm() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    // Queued before any worker exists: the worker must still find them.
    let jobs = [
        submit(&store, 1, 100, "sum").await,
        submit(&store, 1, 1, "fail").await,
    ];
    let mut worker = Spawned::new(
        worker_binary(&redis)
            .env("JOBS_WORKER_CONCURRENCY", "2")
            .env("JOBS_WORKER_METRICS_ADDR", "127.0.0.1:0")
            .spawn()
            .unwrap(),
    );

    assert_eq!(finished(&store, jobs[0]).await.status, JobStatus::Success);
    assert_eq!(
        store.outcome(&jobs[0]).await.unwrap().result,
        Some(5050.into())
    );
    assert_eq!(finished(&store, jobs[1]).await.status, JobStatus::Error);

    // Transparent huge pages are off for the process (main.rs says why).
    // Kernels before 5.0 do not report it.
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", worker.id())).unwrap();
        if let Some(line) = status.lines().find(|line| line.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(runtime_threads(worker.id()), cpus, "one thread per CPU");
    }

    let status = worker.terminate_within(Duration::from_secs(10)).await;
    assert!(status.success(), "jobs-worker exited with {status}");
}

/// The threads of process `pid` that run its async runtime.
#[cfg(target_os = "linux")]
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test]
async fn the_worker_binary_runs_on_as_many_threads_as_it_is_given() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let jid = submit(&store, 1, 10, "sum").await;
    let worker = Spawned::new(
        worker_binary(&redis)
            .env("JOBS_WORKER_THREADS", "1")
            .spawn()
            .unwrap(),
    );
    assert_eq!(finished(&store, jid).await.status, JobStatus::Success);
    #[cfg(target_os = "linux")]
    assert_eq!(runtime_threads(worker.id()), 1);
}

#[tokio::test]
async fn the_worker_binary_rejects_a_zero_concurrency_or_thread_count() {
    for variable in ["JOBS_WORKER_CONCURRENCY", "JOBS_WORKER_THREADS"] {
        let output = Command::new(env!("CARGO_BIN_EXE_jobs-worker"))
            .env(variable, "0")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let flag = variable.trim_start_matches("JOBS_WORKER_").to_lowercase();
        assert!(stderr.contains(&flag), "{variable}: {stderr}");
    }
}

#[tokio::test]
async fn no_more_jobs_run_at_once_than_the_concurrency() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gauge = {
        let (now, peak) = (now.clone(), peak.clone());
        move |_ctx: JobContext| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(serde_json::Value::Null)
            }
        }
    };
    let mut jids = Vec::new();
    for _ in 0..12 {
        jids.push(submit(&store, 0, 1, "sleep").await);
    }
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin().with("sleep", gauge), 3);
    for jid in jids {
        assert_eq!(finished(&store, jid).await.status, JobStatus::Success);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    shutdown.cancel();
    handle.await.unwrap();
}

/// The jobs of one claim run side by side on every runtime thread, not
/// one after another on one: each job here holds its thread until the other
/// runs too, so jobs confined to one thread would meet only after the first
/// gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_together_compute_on_separate_threads() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let started = Arc::new(AtomicUsize::new(0));
    let meet = {
        let started = started.clone();
        move |_ctx: JobContext| {
            let started = started.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while started.load(Ordering::SeqCst) < 2 {
                    if std::time::Instant::now() > deadline {
                        return Err(JobFailure::permanent(
                            "the other job never ran beside this one",
                        ));
                    }
                    // Blocking on purpose: the thread is the job's until both run.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(serde_json::Value::Null)
            }
        }
    };
    let jids = [
        submit(&store, 0, 1, "sleep").await,
        submit(&store, 0, 1, "sleep").await,
    ];
    // Concurrency 4: claims of up to two, so one claim may take both jobs
    // (when the two claim loops take one each, they must meet all the same).
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin().with("sleep", meet), 4);
    for jid in jids {
        let job = finished(&store, jid).await;
        assert_eq!(job.status, JobStatus::Success, "{:?}", job.error);
    }
    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_panicking_or_failing_handler_fails_only_its_own_job() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let registry = Registry::builtin().with("sum", |ctx: JobContext| async move {
        if ctx.job().start == 13 {
            panic!("unlucky number");
        }
        Err::<serde_json::Value, _>(JobFailure::new(format!(
            "no sums today ({})",
            ctx.job().start
        )))
    });
    let (shutdown, handle) = spawn_worker(&redis, registry, 2);
    let unlucky = submit(&store, 13, 14, "sum").await;
    let refused = submit(&store, 1, 2, "sum").await;
    let fine = submit(&store, 0, 1, "sleep").await;

    let job = finished(&store, unlucky).await;
    assert_eq!(job.status, JobStatus::Error);
    assert_eq!(
        job.error.as_deref(),
        Some("the handler panicked: unlucky number")
    );
    let job = finished(&store, refused).await;
    assert_eq!(job.error.as_deref(), Some("no sums today (1)"));
    assert_eq!(finished(&store, fine).await.status, JobStatus::Success);
    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_jobs_in_flight_finish() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin(), 2);
    let jid = submit(&store, 0, 300, "sleep").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get(&jid).await.unwrap().status != JobStatus::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    handle.await.unwrap();
    assert_eq!(store.get(&jid).await.unwrap().status, JobStatus::Success);
}

#[tokio::test]
async fn an_idle_worker_stops_without_waiting_out_its_read() {
    let redis = TestRedis::start();
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin(), 2);
    // Nothing is queued: the worker is in a blocking read (one second long)
    // from its first moments.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    shutdown.cancel();
    handle.await.unwrap();
    // Waiting out the read would take the rest of its second (~800 ms).
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "stopped {:?} after shutdown",
        asked.elapsed()
    );
}

#[tokio::test]
async fn an_idle_worker_takes_a_lone_job_without_claiming_in_vain() {
    // Its own server: the count below is of every script call Redis runs.
    let redis = TestRedis::private();
    let store = store(&redis).await;
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin(), 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.reset_command_stats();
    const JOBS: u64 = 10;
    for _ in 0..JOBS {
        let jid = submit(&store, 1, 10, "sum").await;
        assert_eq!(finished(&store, jid).await.status, JobStatus::Success);
    }
    let calls = redis.command_calls("evalsha");
    eprintln!("{calls} script calls for {JOBS} jobs taken one at a time");
    shutdown.cancel();
    handle.await.unwrap();
    // Each job needs three: its create, the claim that marks it RUNNING
    // and its finish (32 for the ten, here). The read that delivered it took
    // all there was, so a claim straight after, by either claim loop, would
    // find nothing: that was a fourth and a fifth call per job (52). Beyond
    // the three, only a claim after each second's blocking read that ends
    // with nothing (for retries come due): a few, even on a slow machine.
    assert!(
        calls <= JOBS * 4,
        "{calls} script calls for {JOBS} jobs taken one at a time"
    );
}

#[tokio::test]
async fn an_idle_worker_claims_once_per_blocking_read() {
    // Its own server: the counts below are of every command Redis runs.
    let redis = TestRedis::private();
    let (shutdown, handle) = spawn_worker(&redis, Registry::builtin(), 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.reset_command_stats();
    // Nothing is queued: a blocking read ends empty every second.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let claims = redis.command_calls("evalsha");
    let reads = redis.command_calls("xreadgroup");
    eprintln!("{claims} claims to {reads} reads in 3.5 s idle");
    shutdown.cancel();
    handle.await.unwrap();
    // A read that ends empty is followed by one claim, for retries come due
    // (its own XREADGROUP counts as a read too): as many reads again as
    // claims, less the read still blocked. The other claim loop has no
    // reason to claim as well; when it did, there were two or three claims
    // to a read.
    assert!(claims >= 2, "{claims} claims in 3.5 s of blocking reads");
    assert!(
        claims * 2 <= reads + 1,
        "{claims} claims to {reads} reads (blocking, or a claim's own)"
    );
}
