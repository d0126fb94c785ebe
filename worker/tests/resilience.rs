//! Nothing lost, nothing run twice at once: real worker processes killed,
//! paused, stopped, and a real Redis restarted under them.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use support::{Worker, sleep_job, store, submit, wait_for};

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jobs_core::{AttemptOutcome, JobStatus, Store};
use jobs_testkit::TestRedis;

const FAST_LEASE: (&str, &str) = ("JOBS_LEASE_MS", "600");

#[tokio::test]
async fn a_job_whose_worker_is_killed_is_finished_by_another() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let first = Worker::start(&redis, "first", &[FAST_LEASE]);
    let jid = submit(&store, sleep_job(1500, 10)).await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    let _second = Worker::start(&redis, "second", &[FAST_LEASE]);
    first.kill();

    let done = wait_for(&store, jid, Duration::from_secs(15), |job| {
        job.status.is_terminal()
    })
    .await;
    assert_eq!(done.status, JobStatus::Success);
    assert_eq!(done.attempts, 2);
    let outcomes: Vec<_> = done
        .history
        .iter()
        .map(|a| (a.worker.as_str(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("first", AttemptOutcome::Lost),
            ("second", AttemptOutcome::Success)
        ]
    );
}

#[tokio::test]
async fn a_paused_worker_cannot_overwrite_the_job_another_finished() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let paused = Worker::start(&redis, "paused", &[FAST_LEASE]);
    let jid = submit(&store, sleep_job(800, 10)).await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    paused.signal("-STOP");
    let _other = Worker::start(&redis, "other", &[FAST_LEASE]);
    let finished = wait_for(&store, jid, Duration::from_secs(15), |job| {
        job.status.is_terminal()
    })
    .await;
    assert_eq!(finished.status, JobStatus::Success);
    assert_eq!(finished.history.last().unwrap().worker, "other");

    // Resumed past its lease, with its handler's time long up: whatever it
    // tries to write about the job is refused.
    paused.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = paused.read_log();
        if log.contains("lease lost") || log.contains("outcome refused") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed worker never noticed: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.get(&jid).await.unwrap(),
        finished,
        "the job stays as the second worker left it"
    );
    paused.terminate();
}

#[tokio::test]
async fn sigterm_lets_the_job_in_flight_finish() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let worker = Worker::start(&redis, "leaving", &[]);
    let jid = submit(&store, sleep_job(700, 10)).await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    worker.terminate();
    let job = store.get(&jid).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Success, 1));
}

#[tokio::test]
async fn a_second_sigterm_stops_a_worker_that_waits_for_redis() {
    let mut redis = TestRedis::private();
    let store = store(&redis).await;
    let mut worker = Worker::start(&redis, "waiting", &[("JOBS_SHUTDOWN_GRACE_MS", "100")]);
    let jid = submit(&store, sleep_job(60_000, 10)).await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    redis.stop();
    worker.signal("-TERM");
    // The job is handed back past the grace period, but with Redis gone that
    // cannot be recorded: the worker keeps the outcome and waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker gave up an unrecorded outcome:\n{}",
        worker.read_log()
    );
    worker.signal("-TERM");
    let status = worker.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{}", worker.read_log());
    assert!(worker.read_log().contains("second signal"));
}

#[tokio::test]
async fn past_the_grace_period_a_job_is_handed_back_at_once() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    // The default 30 s lease: only a hand-back explains a quick finish.
    let leaving = Worker::start(&redis, "leaving", &[("JOBS_SHUTDOWN_GRACE_MS", "200")]);
    let jid = submit(&store, sleep_job(5000, 10)).await;
    wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status == JobStatus::Running
    })
    .await;
    let _staying = Worker::start(&redis, "staying", &[]);
    let leaving_log = leaving.terminate();
    let done = wait_for(&store, jid, Duration::from_secs(10), |job| {
        job.status.is_terminal()
    })
    .await;
    assert_eq!(done.status, JobStatus::Success);
    assert_eq!(done.attempts, 1, "a hand-back does not count as an attempt");
    let outcomes: Vec<_> = done
        .history
        .iter()
        .map(|a| (a.worker.as_str(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("leaving", AttemptOutcome::Release),
            ("staying", AttemptOutcome::Success)
        ],
        "the leaving worker's log:\n{leaving_log}"
    );
}

/// Which jobs each log line says succeeded: the handler's side effect.
fn successes(log: &str, counts: &mut HashMap<String, u32>) {
    for line in log.lines().filter(|line| line.ends_with("succeeded")) {
        if let Some(at) = line.find("jid=") {
            let jid = &line[at + 4..at + 40];
            *counts.entry(jid.to_owned()).or_default() += 1;
        }
    }
}

#[tokio::test]
async fn a_thousand_jobs_survive_workers_killed_again_and_again() {
    let redis = TestRedis::start();
    let store = store(&redis).await;
    let env = [FAST_LEASE, ("JOBS_WORKER_CONCURRENCY", "16")];
    let mut jids = Vec::new();
    for i in 0..1000 {
        jids.push(submit(&store, sleep_job(i % 40, 10)).await);
    }
    let mut logs = String::new();
    let mut workers: Vec<_> = (0..3)
        .map(|n| Worker::start(&redis, &format!("w{n}"), &env))
        .collect();
    let mut spawned = 3;
    let done = |store: &Store| {
        let store = store.clone();
        let jids = jids.clone();
        async move {
            for jid in &jids {
                if !store.get(jid).await.unwrap().status.is_terminal() {
                    return false;
                }
            }
            true
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        if done(&store).await {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs never all finished");
        tokio::time::sleep(Duration::from_millis(250)).await;
        if round < 12 {
            // Kill one worker mid-run and start a fresh one in its place.
            let victim = workers.remove(round % workers.len());
            logs.push_str(&victim.kill());
            workers.push(Worker::start(&redis, &format!("w{spawned}"), &env));
            spawned += 1;
        }
    }
    for worker in workers {
        logs.push_str(&worker.terminate());
    }

    let mut ran = HashMap::new();
    successes(&logs, &mut ran);
    let mut retaken = 0;
    for jid in &jids {
        let job = store.get(jid).await.unwrap();
        assert_eq!(job.status, JobStatus::Success, "{job:?}");
        let runs = ran.get(&jid.to_string()).copied().unwrap_or(0);
        if job
            .history
            .iter()
            .all(|a| a.outcome != AttemptOutcome::Lost)
        {
            assert_eq!(
                runs, 1,
                "job {jid} ran {runs} times though no worker died under it"
            );
        } else {
            retaken += 1;
            assert!(runs >= 1, "job {jid} never ran to success");
        }
    }
    assert!(retaken > 0, "the kills hit no job: the test proved nothing");
}

#[tokio::test]
async fn a_redis_restart_loses_no_job_and_the_processes_recover() {
    let mut redis = TestRedis::private_persistent();
    let store = store(&redis).await;
    let mut jids = Vec::new();
    for i in 0..300 {
        jids.push(submit(&store, sleep_job(i % 20, 10)).await);
    }
    let workers: Vec<_> = (0..2)
        .map(|n| {
            Worker::start(
                &redis,
                &format!("w{n}"),
                &[("JOBS_LEASE_MS", "2000"), ("JOBS_WORKER_CONCURRENCY", "4")],
            )
        })
        .collect();
    wait_for(&store, jids[20], Duration::from_secs(20), |job| {
        job.status.is_terminal()
    })
    .await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();

    for jid in &jids {
        let job = wait_for(&store, *jid, Duration::from_secs(60), |job| {
            job.status.is_terminal()
        })
        .await;
        assert_eq!(job.status, JobStatus::Success, "{job:?}");
    }
    for worker in workers {
        worker.terminate();
    }
}
