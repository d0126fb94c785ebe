//! What a worker shows of itself: its metrics endpoint, scraped before and
//! after real jobs run, in process and from the real binary.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use support::{finished, wait_for, worker_binary};

use std::{net::SocketAddr, time::Duration};

use jobs_core::{JobId, JobStatus, NewJob, Queue, QueueSettings, RedisConfig, Retention, Store};
use jobs_testkit::{Spawned, TestRedis, metrics::Scrape};
use jobs_worker::{JobContext, Registry, WorkerConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

fn config(redis: &TestRedis) -> RedisConfig {
    RedisConfig::new(redis.url(), redis.prefix())
}

async fn submit(store: &Store, kind: &str) -> JobId {
    store
        .create(&NewJob::parse(1, 10, kind, None).unwrap())
        .await
        .unwrap()
        .job
        .jid
}

/// `GET /metrics` over plain TCP: the status line and content type are
/// checked, the body parsed.
async fn scrape(addr: SocketAddr) -> (String, Scrape) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    (body.to_owned(), Scrape::parse(body))
}

struct RunningWorker {
    metrics: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

async fn start_worker(redis: &TestRedis, lease_ms: u64) -> RunningWorker {
    start_worker_with(redis, lease_ms, Registry::builtin()).await
}

async fn start_worker_with(redis: &TestRedis, lease_ms: u64, registry: Registry) -> RunningWorker {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    let redis = config(redis);
    let worker = WorkerConfig {
        concurrency: 4.try_into().unwrap(),
        lease_ms,
        retry_backoff_ms: 5,
        retry_backoff_max_ms: 10,
        ..WorkerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        jobs_worker::serve(
            &redis,
            &worker,
            Retention::default(),
            registry,
            Some(listener),
            token,
        )
        .await
        .unwrap();
    });
    RunningWorker {
        metrics,
        shutdown,
        handle,
    }
}

#[tokio::test]
async fn worker_metrics_count_attempts_retries_outcomes_and_run_times() {
    let redis = TestRedis::start();
    let store = Store::connect(&config(&redis)).await.unwrap();
    let worker = start_worker(&redis, 30_000).await;

    // Before any job: the series without labels of their own, at zero; the
    // per-kind ones appear with the kind's first job.
    let (text, before) = scrape(worker.metrics).await;
    for series in [
        r#"jobs_lease_reclaims_total{outcome="requeued"}"#,
        r#"jobs_lease_reclaims_total{outcome="failed"}"#,
        "jobs_outcomes_refused_total",
    ] {
        assert_eq!(before.matching(series).count(), 1, "{series} in\n{text}");
        assert_eq!(before.value(series), 0.0);
    }
    assert!(!before.has_metric("jobs_attempts_started"), "{text}");

    let sums = [
        submit(&store, "sum").await,
        submit(&store, "sum").await,
        submit(&store, "sum").await,
    ];
    // Fails every attempt: three attempts (the default), two retries, ERROR.
    let fail = submit(&store, "fail").await;
    for jid in sums {
        assert_eq!(finished(&store, jid).await.status, JobStatus::Success);
    }
    assert_eq!(finished(&store, fail).await.status, JobStatus::Error);

    let (text, after) = scrape(worker.metrics).await;
    for name in [
        "jobs_attempts_started",
        "jobs_retries_scheduled",
        "jobs_finished",
        "jobs_run_duration_seconds",
        "jobs_lease_expiries",
        "jobs_lease_reclaims",
        "jobs_outcomes_refused",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} is not described:\n{text}"
        );
    }
    for (series, expected) in [
        (r#"jobs_attempts_started_total{kind="sum"}"#, 3.0),
        (r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#, 3.0),
        (r#"jobs_finished_total{kind="sum",status="ERROR"}"#, 0.0),
        (r#"jobs_run_duration_seconds_count{kind="sum"}"#, 3.0),
        (
            r#"jobs_run_duration_seconds_bucket{le="+Inf",kind="sum"}"#,
            3.0,
        ),
        (r#"jobs_attempts_started_total{kind="fail"}"#, 3.0),
        (r#"jobs_retries_scheduled_total{kind="fail"}"#, 2.0),
        (r#"jobs_finished_total{kind="fail",status="ERROR"}"#, 1.0),
        (r#"jobs_run_duration_seconds_count{kind="fail"}"#, 3.0),
        ("jobs_outcomes_refused_total", 0.0),
    ] {
        assert_eq!(after.value(series), expected, "{series} in\n{text}");
    }
    // `sum` of 1..=10 takes microseconds: well under the first bucket's 0.5 ms
    // would be too strict for a loaded machine, so only the sum is bounded.
    let ran = after.value(r#"jobs_run_duration_seconds_sum{kind="sum"}"#);
    assert!(ran > 0.0 && ran < 3.0, "{ran}");

    worker.shutdown.cancel();
    worker.handle.await.unwrap();
}

#[tokio::test]
async fn worker_metrics_count_jobs_reclaimed_from_a_dead_worker() {
    let redis = TestRedis::start();
    let store = Store::connect(&config(&redis)).await.unwrap();
    let jid = submit(&store, "sum").await;
    // Its one attempt is the dead worker's: recovery ends it ERROR, and the
    // worker that recovered it counts that end, which no worker recorded.
    let last = store
        .create(
            &NewJob::parse(1, 10, "sum", None)
                .unwrap()
                .with_max_attempts(1)
                .unwrap(),
        )
        .await
        .unwrap()
        .job
        .jid;
    // A worker that takes the jobs and dies: it never renews nor finishes.
    let dead = Queue::connect(
        &config(&redis),
        "dead-worker",
        QueueSettings {
            lease: Duration::from_millis(200),
            ..QueueSettings::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dead.claim(2, Duration::from_millis(50))
            .await
            .unwrap()
            .len(),
        2
    );

    let worker = start_worker(&redis, 300).await;
    assert_eq!(finished(&store, jid).await.status, JobStatus::Success);
    assert_eq!(finished(&store, last).await.status, JobStatus::Error);
    let (text, after) = scrape(worker.metrics).await;
    for (series, expected) in [
        (r#"jobs_lease_reclaims_total{outcome="requeued"}"#, 1.0),
        (r#"jobs_lease_reclaims_total{outcome="failed"}"#, 1.0),
        (r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#, 1.0),
        (r#"jobs_finished_total{kind="sum",status="ERROR"}"#, 1.0),
    ] {
        assert_eq!(after.value(series), expected, "{series} in\n{text}");
    }
    worker.shutdown.cancel();
    worker.handle.await.unwrap();
}

/// A job ends once, where Redis records it: an outcome Redis refuses (the
/// lease was no longer this worker's) is counted as refused, not finished.
#[tokio::test]
async fn an_outcome_redis_refused_is_not_counted_as_a_finished_job() {
    let redis = TestRedis::start();
    let store = Store::connect(&config(&redis)).await.unwrap();
    // A job that runs for a while and says nothing meanwhile: no progress
    // report of its own can find the lease gone before its outcome does.
    let quiet = |_ctx: JobContext| async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(serde_json::json!(1))
    };
    let worker = start_worker_with(&redis, 30_000, Registry::builtin().with("sum", quiet)).await;
    let jid = submit(&store, "sum").await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    // The lease changes hands behind the worker's back, before its first
    // renewal (a third of the lease away) could tell it.
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:job:{jid}", redis.prefix()))
        .arg("lease")
        .arg("another-workers-lease")
        .query(&mut redis.connection())
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (text, after) = loop {
        let (text, after) = scrape(worker.metrics).await;
        if after.value("jobs_outcomes_refused_total") >= 1.0 {
            break (text, after);
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after.value("jobs_outcomes_refused_total"), 1.0, "{text}");
    assert_eq!(
        after.value(r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#),
        0.0,
        "{text}"
    );
    worker.shutdown.cancel();
    worker.handle.await.unwrap();
}

#[tokio::test]
async fn the_worker_binary_serves_metrics_on_the_address_it_is_given() {
    let redis = TestRedis::start();
    let store = Store::connect(&config(&redis)).await.unwrap();
    let log = std::env::temp_dir().join(format!("{}-metrics.log", redis.prefix()));
    let mut worker = Spawned::new(
        worker_binary(&redis)
            .env("JOBS_WORKER_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let jid = submit(&store, "sum").await;
    assert_eq!(finished(&store, jid).await.status, JobStatus::Success);

    // The worker logs the port it bound.
    let text = std::fs::read_to_string(&log).unwrap();
    let addr: SocketAddr = text
        .lines()
        .find(|line| line.contains("serving metrics"))
        .and_then(|line| line.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{text}"))
        .parse()
        .unwrap();
    let (text, scrape) = scrape(addr).await;
    assert_eq!(
        scrape.value(r#"jobs_finished_total{kind="sum",status="SUCCESS"}"#),
        1.0,
        "{text}"
    );

    let status = worker.terminate_within(Duration::from_secs(10)).await;
    assert!(status.success(), "jobs-worker exited with {status}");
    let _ = std::fs::remove_file(&log);
}
