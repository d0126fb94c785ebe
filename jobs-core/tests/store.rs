//! The store's guarantees, checked against a real Redis: atomic creation,
//! guarded state changes, and a queue that keeps nothing it no longer needs.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::time::Duration;

use jobs_core::{
    AttemptOutcome, Error, Finished, JobStatus, LeaseAck, ListQuery, NewJob, Outcome, Queue,
    QueueSettings, Recorded, Recovered, RedisConfig, Retention, Store,
};
use jobs_testkit::TestRedis;

async fn setup(redis: &TestRedis) -> (Store, Queue) {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let queue = Queue::connect(&config, "test-consumer", QueueSettings::default())
        .await
        .unwrap();
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
    let job = submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(store.get(&job.jid).await.unwrap(), job);
    assert_eq!(stream_len(&redis), 1);
    let mut keys = redis.keys();
    keys.sort();
    let p = redis.prefix();
    assert_eq!(
        keys,
        [
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
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let claimed = queue.claim(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let lease = claimed[0].lease.clone();
    assert_eq!((lease.jid(), lease.attempt()), (job.jid, 1));
    assert_eq!(claimed[0].job.status, JobStatus::Running);
    assert_eq!(pending(&redis), 1);
    assert_eq!(
        queue.report_progress(&lease, 0.5).await.unwrap(),
        LeaseAck::Held
    );

    let success = Finished {
        lease: lease.clone(),
        outcome: Outcome::Success(6.into()),
    };
    assert_eq!(
        queue.finish(&[success]).await.unwrap(),
        [Recorded::Now(JobStatus::Success)]
    );
    let done = store.get(&job.jid).await.unwrap();
    assert_eq!(done.status, JobStatus::Success);
    // Not written on success, but read as the status implies.
    assert_eq!(done.progress, 1.0);
    let last = done.history.last().expect("the attempt that ended it");
    assert_eq!(
        (last.number, last.outcome, &last.worker),
        (
            Some(1),
            jobs_core::AttemptOutcome::Success,
            &"test-consumer".to_owned()
        )
    );

    // A late or duplicate write by the same attempt is refused.
    let late = Finished {
        lease: lease.clone(),
        outcome: Outcome::Error("late".into()),
    };
    assert_eq!(queue.finish(&[late]).await.unwrap(), [Recorded::Refused]);
    assert_eq!(
        queue.report_progress(&lease, 0.5).await.unwrap(),
        LeaseAck::Lost
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

    // The finished job's entry is acknowledged: no worker holds it.
    assert_eq!(pending(&redis), 0);
}

/// Calls of scripts so far on this (private) server.
fn script_calls(redis: &TestRedis) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_made_together_share_script_calls_and_each_gets_its_job() {
    let redis = TestRedis::private();
    let (store, _) = setup(&redis).await;
    let before = script_calls(&redis);
    let creates = (0..300).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let new = NewJob::parse(i, i + 1, "sum", None).unwrap();
            store.create(&new).await.map(|created| (i, created))
        })
    });
    let created: Vec<_> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();

    let calls = script_calls(&redis) - before;
    assert!(calls < 150, "{calls} script calls for 300 creates");
    let mut jids: Vec<_> = created.iter().map(|(_, c)| c.job.jid).collect();
    jids.sort();
    jids.dedup();
    assert_eq!(jids.len(), 300);
    for (i, created) in &created {
        assert!(!created.replayed);
        assert_eq!((created.job.start, created.job.end), (*i, i + 1));
        assert_eq!(store.get(&created.job.jid).await.unwrap(), created.job);
    }
    assert_eq!(stream_len(&redis), 300);
}

#[tokio::test]
async fn a_watch_keeps_the_watching_flag_and_sees_each_change() {
    use futures_util::StreamExt;
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let flag = format!("{}:watching", redis.prefix());
    let ttl = |redis: &TestRedis| -> i64 {
        redis::cmd("PTTL")
            .arg(&flag)
            .query(&mut redis.connection())
            .unwrap()
    };
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    assert_eq!(ttl(&redis), -2, "no flag while nobody watches");

    let mut events = Box::pin(store.watch(job.jid).await.unwrap());
    assert!((1..=60_000).contains(&ttl(&redis)), "{}", ttl(&redis));
    assert_eq!(
        events.next().await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    let lease = take_one(&queue).await;
    assert_eq!(
        events.next().await.unwrap().unwrap().status,
        JobStatus::Running
    );
    let outcome = Outcome::Success(6.into());
    queue.finish(&[Finished { lease, outcome }]).await.unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap().status,
        JobStatus::Success
    );
    assert!(
        events.next().await.is_none(),
        "the watch ends at a terminal state"
    );
}

#[tokio::test]
async fn acknowledged_entries_are_trimmed_from_the_queue() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    create_numbered(&store, 500).await;
    assert_eq!(stream_len(&redis), 500);

    // One job held back: nothing from its entry on may be trimmed.
    let held = queue.claim_ready(1).await.unwrap();
    loop {
        let claimed = queue.claim_ready(100).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        succeed_all(&queue, claimed).await;
    }
    assert_eq!(pending(&redis), 1);
    assert_eq!(stream_len(&redis), 500, "the held job's entry is the first");

    // Once it is done, the acknowledged entries go (whole stream nodes of
    // up to 100 entries at a time: the last node may stay): trimmed by the
    // next recovery pass, if no finish has since.
    let done = Finished {
        lease: held[0].lease.clone(),
        outcome: Outcome::Success(0.into()),
    };
    assert_eq!(
        queue.finish(&[done]).await.unwrap(),
        [Recorded::Now(JobStatus::Success)]
    );
    assert_eq!(pending(&redis), 0);
    queue.recover().await.unwrap();
    assert!(
        stream_len(&redis) <= 100,
        "{} entries left",
        stream_len(&redis)
    );
}

#[tokio::test]
async fn finishes_trim_the_queue_as_they_go_not_at_every_call() {
    // A server of its own: the test counts the commands it runs.
    let redis = TestRedis::private();
    let (store, queue) = setup(&redis).await;
    create_numbered(&store, 1000).await;
    redis.reset_command_stats();

    // One job at a time, as a worker with few slots takes them: the entries
    // of jobs done never pile up, yet finding where to trim is not paid on
    // every call.
    let mut kept = 0;
    for done in 1..=1000 {
        succeed_all(&queue, queue.claim_ready(1).await.unwrap()).await;
        kept = kept.max(stream_len(&redis) - (1000 - done));
    }
    assert_eq!(pending(&redis), 0);
    assert!(kept <= 200, "up to {kept} entries of jobs done kept");
    let trims = redis.command_calls("xtrim");
    assert!((5..=20).contains(&trims), "{trims} trims for 1000 finishes");
}

#[tokio::test]
async fn claims_come_in_batches_and_skip_cancelled_jobs() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let mut jids = Vec::new();
    for i in 0..5 {
        jids.push(
            submit(&store, NewJob::parse(i, i, "sum", None).unwrap())
                .await
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
async fn a_job_cancelled_after_a_read_delivered_it_is_never_run() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let lease = Duration::from_millis(300);
    let alive = queue_with_lease(&redis, "live-worker", lease).await;
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    // A worker's blocking read delivers the entry; the worker dies before
    // its claim script runs, and the job is cancelled meanwhile.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&["GROUP", "workers", "dead-worker", "COUNT", "1", "STREAMS"])
        .arg(format!("{}:queue", redis.prefix()))
        .arg(">")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(pending(&redis), 1);
    assert_eq!(
        store.cancel(&job.jid).await.unwrap().status,
        JobStatus::Cancelled
    );

    // Recovery drops the entry without queueing the job again.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(alive.recover().await.unwrap(), Recovered::default());
    assert_eq!(pending(&redis), 0);
    assert!(
        alive
            .claim(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    let read = store.get(&job.jid).await.unwrap();
    assert_eq!((read.status, read.attempts), (JobStatus::Cancelled, 0));
}

#[tokio::test]
async fn a_blocked_claim_wakes_for_a_new_job() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let waiting = tokio::spawn(async move { queue.claim(5, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let job = submit(&store, NewJob::parse(1, 1, "sum", None).unwrap()).await;
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
    let job = submit(&store, NewJob::parse(0, 10_000, "sleep", None).unwrap()).await;
    let lease = queue.claim(1, Duration::from_millis(100)).await.unwrap()[0]
        .lease
        .clone();
    assert_eq!(
        queue.report_progress(&lease, 0.1).await.unwrap(),
        LeaseAck::Held
    );
    assert_eq!(
        store.cancel(&job.jid).await.unwrap().status,
        JobStatus::Running
    );
    assert_eq!(
        queue.report_progress(&lease, 0.2).await.unwrap(),
        LeaseAck::CancelRequested
    );
    let stopped = Finished {
        lease,
        outcome: Outcome::Cancelled("cancelled by request".into()),
    };
    assert_eq!(
        queue.finish(&[stopped]).await.unwrap(),
        [Recorded::Now(JobStatus::Cancelled)]
    );
    let done = store.get(&job.jid).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.error.as_deref(), Some("cancelled by request"));
}

/// Whether `jid` is in the index of `status`.
fn indexed(redis: &TestRedis, status: &str, jid: &jobs_core::JobId) -> bool {
    members(redis, &format!("status:{status}")).contains(&jid.to_string())
}

#[tokio::test]
async fn a_job_cancelled_while_it_ran_is_never_queued_again() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let failed = Outcome::Failed {
        error: "boom".into(),
        retry_in: Duration::ZERO,
    };
    // An attempt that fails with attempts left, or is handed back at
    // shutdown, would queue the job again.
    for (outcome, recorded) in [
        (failed, AttemptOutcome::Failed),
        (
            Outcome::Released("shutting down".into()),
            AttemptOutcome::Release,
        ),
    ] {
        let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
        let lease = take_one(&queue).await;
        assert_eq!(
            store.cancel(&job.jid).await.unwrap().status,
            JobStatus::Running
        );
        let ended = Finished { lease, outcome };
        // Said, so that the worker counts the job's end, CANCELLED, not
        // what its outcome would have made of it.
        assert_eq!(
            queue.finish(&[ended]).await.unwrap(),
            [Recorded::Now(JobStatus::Cancelled)]
        );

        let done = store.get(&job.jid).await.unwrap();
        assert_eq!(done.status, JobStatus::Cancelled, "{recorded:?}");
        assert_eq!(done.error.as_deref(), Some("cancelled by request"));
        assert!(done.end_time.is_some());
        assert_eq!(done.history.len(), 1);
        assert_eq!(done.history[0].outcome, recorded);
        assert!(indexed(&redis, "CANCELLED", &job.jid));
        assert!(!indexed(&redis, "QUEUED", &job.jid));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            queue.claim_ready(10).await.unwrap().is_empty(),
            "{recorded:?}"
        );
    }
    assert_eq!(pending(&redis), 0);
}

#[tokio::test]
async fn a_job_cancelled_while_its_worker_died_is_not_queued_again() {
    // With attempts left, and on its last: either way it ends CANCELLED.
    for max_attempts in [3, 1] {
        let redis = TestRedis::start();
        let (store, _) = setup(&redis).await;
        let new = NewJob::parse(1, 3, "sum", None)
            .unwrap()
            .with_max_attempts(max_attempts)
            .unwrap();
        let DeadWorker {
            job, alive, lease, ..
        } = DeadWorker::running(&redis, &store, new).await;
        assert_eq!(
            store.cancel(&job.jid).await.unwrap().status,
            JobStatus::Running
        );

        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let recovered = alive.recover().await.unwrap();
        assert_eq!(
            (recovered.requeued, recovered.failed, recovered.cancelled),
            (0, 0, 1),
            "{max_attempts}"
        );
        // Its kind, so that the worker that recovered it counts its end.
        assert_eq!(recovered.ended, [("sum".to_owned(), JobStatus::Cancelled)]);
        let done = store.get(&job.jid).await.unwrap();
        assert_eq!(done.status, JobStatus::Cancelled, "{max_attempts}");
        assert_eq!(done.error.as_deref(), Some("cancelled by request"));
        assert_eq!(done.history[0].outcome, AttemptOutcome::Lost);
        assert!(indexed(&redis, "CANCELLED", &job.jid));
        assert!(alive.claim_ready(10).await.unwrap().is_empty());
        assert_eq!(pending(&redis), 0);
    }
}

/// Every worker process is a consumer in the group under a name of its own;
/// recovery forgets those gone idle with nothing pending, and only those.
#[tokio::test]
async fn recovery_forgets_the_consumers_of_workers_gone() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let short = Duration::from_millis(200);
    let gone = queue_with_lease(&redis, "gone-worker", short).await;
    let busy = queue_with_lease(&redis, "busy-worker", Duration::from_secs(60)).await;
    let rescuer = queue_with_lease(&redis, "rescuer", short).await;
    // A read that brings something makes the consumer; this one runs its
    // job and goes away, holding nothing.
    submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    let lease = take_one(&gone).await;
    let done = Finished {
        lease,
        outcome: Outcome::Success(3.into()),
    };
    gone.finish(&[done]).await.unwrap();
    submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    assert_eq!(busy.claim_ready(10).await.unwrap().len(), 1);
    let consumers = || -> Vec<String> {
        let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(format!("{}:queue", redis.prefix()))
            .arg("workers")
            .query(&mut redis.connection())
            .unwrap();
        let mut names: Vec<String> = groups
            .into_iter()
            .map(|fields| redis::from_redis_value(fields[1].clone()).unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(consumers(), ["busy-worker", "gone-worker"]);

    tokio::time::sleep(short + Duration::from_millis(100)).await;
    rescuer.recover().await.unwrap();
    // The busy worker holds a job (and is idle as long, between renewals);
    // the rescuer is the one looking.
    assert_eq!(consumers(), ["busy-worker", "rescuer"]);
    assert_eq!(pending(&redis), 1);
}

/// XAUTOCLAIM looks at ten times its COUNT (100) pending entries per call:
/// a dead worker's entry behind a thousand live ones is found only if
/// recovery goes on from where the last call stopped.
#[tokio::test]
async fn recovery_finds_a_dead_entry_behind_a_thousand_live_ones() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let short = Duration::from_millis(300);
    let live = queue_with_lease(&redis, "live-worker", Duration::from_secs(60)).await;
    let dead = queue_with_lease(&redis, "dead-worker", short).await;
    let rescuer = queue_with_lease(&redis, "rescuer", short).await;
    create_numbered(&store, 1000).await;
    let held: Vec<_> = live
        .claim_ready(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.lease)
        .collect();
    assert_eq!(held.len(), 1000);
    let lost = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    take_one(&dead).await;

    tokio::time::sleep(short + Duration::from_millis(100)).await;
    // Renewing re-claims the live entries: only the dead one is idle.
    assert!(
        live.renew(&held)
            .await
            .unwrap()
            .iter()
            .all(|ack| *ack == LeaseAck::Held)
    );
    let recovered = rescuer.recover().await.unwrap();
    assert_eq!(recovered.requeued, 1);
    assert_eq!(
        store.get(&lost.jid).await.unwrap().status,
        JobStatus::Queued
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable_promptly() {
    let config = RedisConfig::new(
        format!("redis://127.0.0.1:{}", jobs_testkit::free_port()),
        "x",
    );
    // The server may start before Redis: connecting succeeds, calls fail.
    let store = Store::connect(&config).await.unwrap();
    let started = std::time::Instant::now();
    let err = store.ping().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store
        .create(&NewJob::parse(1, 2, "sum", None).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered in {:?}",
        started.elapsed()
    );
    let err = Store::connect(&RedisConfig::new("not a url", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_unconfirmed_or_sent_again() {
    let redis = TestRedis::private();
    let mut config = RedisConfig::new(redis.url(), redis.prefix());
    config.redis_timeout_ms = 300;
    let store = Store::connect(&config).await.unwrap();
    // Redis has the script from now on: a frozen Redis is sent the call
    // itself.
    submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;

    redis.freeze(true);
    let err = store
        .create(&NewJob::parse(1, 2, "sum", None).unwrap())
        .await
        .unwrap_err();
    redis.freeze(false);
    // The create reached Redis and ran once it resumed: telling the
    // client to try again would have made a second job.
    assert!(matches!(err, Error::Unconfirmed(_)), "{err:?}");
    assert!(!err.is_unavailable());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(members(&redis, "status:QUEUED").len(), 2);

    // After a restart, the first create goes out on a dropped connection,
    // and is sent again on a new one: exactly one job, and no error.
    let mut restarted = TestRedis::private_persistent();
    let config = RedisConfig::new(restarted.url(), restarted.prefix());
    let store = Store::connect(&config).await.unwrap();
    submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    restarted.restart();
    submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    assert_eq!(members(&restarted, "status:QUEUED").len(), 2);
}

/// A claim that ran in Redis while its reply was lost (here, Redis
/// stalled past the response timeout): its job is RUNNING under the
/// worker, which never saw it. Taken up, it runs under the lost
/// claim's lease, as its first attempt.
#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_taken_up() {
    let redis = TestRedis::private();
    let mut config = RedisConfig::new(redis.url(), redis.prefix());
    config.redis_timeout_ms = 300;
    let store = Store::connect(&config).await.unwrap();
    let queue = Queue::connect(&config, "worker", QueueSettings::default())
        .await
        .unwrap();
    let new = NewJob::parse(1, 3, "sum", None).unwrap();
    let held = store.create(&new).await.unwrap().job.jid;
    let held_claim = queue.claim_ready(1).await.unwrap();
    let lost = store.create(&new).await.unwrap().job.jid;

    redis.freeze(true);
    let err = queue.claim_ready(10).await.unwrap_err();
    redis.freeze(false);
    assert!(err.may_have_run(), "{err:?}");
    assert_eq!(store.get(&lost).await.unwrap().status, JobStatus::Running);

    let taken = queue.take_up(10, &[held]).await.unwrap();
    assert_eq!(taken.len(), 1, "only the job the worker did not know of");
    assert_eq!((taken[0].job.jid, taken[0].lease.attempt()), (lost, 1));
    assert!(queue.take_up(10, &[held, lost]).await.unwrap().is_empty());
    let done: Vec<Finished> = held_claim
        .into_iter()
        .chain(taken)
        .map(|claimed| Finished {
            lease: claimed.lease,
            outcome: Outcome::Success(6.into()),
        })
        .collect();
    assert_eq!(
        queue.finish(&done).await.unwrap(),
        [
            Recorded::Now(JobStatus::Success),
            Recorded::Now(JobStatus::Success)
        ]
    );
    let finished = store.get(&lost).await.unwrap();
    assert_eq!(
        (finished.status, finished.attempts),
        (JobStatus::Success, 1)
    );
}

/// The create runs, and its connection drops before the answer comes back:
/// sent again with the same jid, it is refused as a duplicate, and the job
/// it made is read back, once.
#[tokio::test]
async fn a_create_whose_connection_dropped_after_it_ran_is_read_back() {
    let redis = TestRedis::private();
    // create.lua's answer starts with the bulk string "ok".
    let proxy = jobs_testkit::FaultyProxy::start(redis.url(), jobs_testkit::Fault::Cut, |chunk| {
        chunk.windows(8).any(|window| window == b"$2\r\nok\r\n")
    });
    let store = Store::connect(&RedisConfig::new(proxy.url(), redis.prefix()))
        .await
        .unwrap();
    let created = store
        .create(&NewJob::parse(1, 3, "sum", None).unwrap())
        .await
        .unwrap();
    assert!(!created.replayed);
    assert_eq!(
        members(&redis, "status:QUEUED"),
        [created.job.jid.to_string()]
    );
    let stored = store.get(&created.job.jid).await.unwrap();
    assert_eq!(
        (stored.status, stored.create_time),
        (JobStatus::Queued, created.job.create_time)
    );
}

/// Creates a job that must be accepted.
async fn submit(store: &Store, new: NewJob) -> jobs_core::Job {
    store.create(&new).await.unwrap().job
}

/// A store, and a queue whose finished jobs and results are kept `secs`.
async fn setup_with_retention(redis: &TestRedis, secs: u64) -> (Store, Queue) {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let settings = QueueSettings {
        retention: Retention {
            retention_secs: secs,
            result_ttl_secs: secs,
        },
        ..QueueSettings::default()
    };
    let queue = Queue::connect(&config, "w", settings).await.unwrap();
    (store, queue)
}

/// Creates `count` sum jobs in one batch, job i starting at i.
async fn create_numbered(store: &Store, count: i64) -> Vec<jobs_core::Created> {
    let batch: Vec<NewJob> = (0..count)
        .map(|i| NewJob::parse(i, i + 10, "sum", None).unwrap())
        .collect();
    store.create_many(&batch).await.unwrap()
}

/// The members of the sorted set `{prefix}:{name}`, lowest score first.
fn members(redis: &TestRedis, name: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("{}:{name}", redis.prefix()))
        .arg(0)
        .arg(-1)
        .query(&mut redis.connection())
        .unwrap()
}

/// Fails if any key of the test's prefix has one of `parts` in its name.
fn assert_no_keys_with(redis: &TestRedis, parts: &[&str]) {
    let left: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|key| parts.iter().any(|part| key.contains(part)))
        .collect();
    assert!(left.is_empty(), "keys left: {left:?}");
}

/// Records every claimed job as a success, in one call, and checks that
/// each was recorded.
async fn succeed_all(queue: &Queue, claimed: Vec<jobs_core::Claimed>) {
    let outcomes: Vec<Finished> = claimed
        .into_iter()
        .map(|claimed| Finished {
            lease: claimed.lease,
            outcome: Outcome::Success(6.into()),
        })
        .collect();
    let recorded = queue.finish(&outcomes).await.unwrap();
    assert!(
        recorded
            .iter()
            .all(|&what| what == Recorded::Now(JobStatus::Success)),
        "{recorded:?}"
    );
}

/// Claims the one job the test expects to be queued, and returns its lease.
async fn take_one(queue: &Queue) -> jobs_core::Lease {
    queue
        .claim(1, Duration::from_millis(50))
        .await
        .unwrap()
        .remove(0)
        .lease
}

/// A job taken by a worker that then stops renewing its lease ("dead"),
/// beside a live worker; both with short leases.
struct DeadWorker {
    job: jobs_core::Job,
    dead: Queue,
    /// The dead worker's lease on the job.
    stale: jobs_core::Lease,
    alive: Queue,
    lease: Duration,
}

impl DeadWorker {
    async fn start(redis: &TestRedis, store: &Store) -> Self {
        Self::running(redis, store, NewJob::parse(1, 3, "sum", None).unwrap()).await
    }

    /// `new`, taken by a worker that dies.
    async fn running(redis: &TestRedis, store: &Store, new: NewJob) -> Self {
        let lease = Duration::from_millis(300);
        let dead = queue_with_lease(redis, "dead-worker", lease).await;
        let alive = queue_with_lease(redis, "live-worker", lease).await;
        let job = submit(store, new).await;
        let stale = take_one(&dead).await;
        Self {
            job,
            dead,
            stale,
            alive,
            lease,
        }
    }
}

/// A queue whose leases last `lease`.
async fn queue_with_lease(redis: &TestRedis, consumer: &str, lease: Duration) -> Queue {
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let settings = QueueSettings {
        lease,
        ..QueueSettings::default()
    };
    Queue::connect(&config, consumer, settings).await.unwrap()
}

#[tokio::test]
async fn a_lapsed_lease_is_recovered_and_its_late_writes_refused() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let DeadWorker {
        job,
        dead,
        stale,
        alive,
        lease,
    } = DeadWorker::start(&redis, &store).await;

    // While the lease runs, recovery leaves the job alone.
    assert_eq!(alive.recover().await.unwrap(), Recovered::default());
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let recovered = alive.recover().await.unwrap();
    assert_eq!(recovered.requeued, 1);
    let requeued = store.get(&job.jid).await.unwrap();
    assert_eq!(requeued.status, JobStatus::Queued);
    assert_eq!(requeued.history.len(), 1);
    assert_eq!(requeued.history[0].outcome, AttemptOutcome::Lost);
    assert_eq!(requeued.history[0].worker, "dead-worker");

    let fresh = take_one(&alive).await;
    assert_eq!(fresh.attempt(), 2, "each take counts as an attempt");
    // The dead worker wakes up: every write it tries is refused.
    let late = Finished {
        lease: stale.clone(),
        outcome: Outcome::Success(0.into()),
    };
    assert_eq!(dead.finish(&[late]).await.unwrap(), [Recorded::Refused]);
    assert_eq!(
        dead.report_progress(&stale, 0.9).await.unwrap(),
        LeaseAck::Lost
    );
    assert_eq!(
        dead.renew(std::slice::from_ref(&stale)).await.unwrap(),
        [LeaseAck::Lost]
    );
    let done = Finished {
        lease: fresh,
        outcome: Outcome::Success(6.into()),
    };
    assert_eq!(
        alive.finish(&[done]).await.unwrap(),
        [Recorded::Now(JobStatus::Success)]
    );
    let finished = store.get(&job.jid).await.unwrap();
    assert_eq!(
        (finished.status, finished.attempts),
        (JobStatus::Success, 2)
    );
    assert_eq!(finished.history.len(), 2);
    assert_eq!(pending(&redis), 0);
}

#[tokio::test]
async fn a_renewed_lease_outlives_its_length() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let lease = Duration::from_millis(300);
    let worker = queue_with_lease(&redis, "worker", lease).await;
    let other = queue_with_lease(&redis, "other", lease).await;
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let held = take_one(&worker).await;
    for _ in 0..4 {
        tokio::time::sleep(lease / 2).await;
        assert_eq!(
            worker.renew(std::slice::from_ref(&held)).await.unwrap(),
            [LeaseAck::Held]
        );
        assert_eq!(other.recover().await.unwrap().requeued, 0);
    }
    assert_eq!(
        store.get(&job.jid).await.unwrap().status,
        JobStatus::Running
    );
    let done = Finished {
        lease: held,
        outcome: Outcome::Success(6.into()),
    };
    assert_eq!(
        worker.finish(&[done]).await.unwrap(),
        [Recorded::Now(JobStatus::Success)]
    );
}

#[tokio::test]
async fn failed_attempts_wait_their_backoff_then_end_in_error() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let new = NewJob::parse(1, 1, "fail", None)
        .unwrap()
        .with_max_attempts(2)
        .unwrap();
    let job = store.create(&new).await.unwrap().job;
    let first = take_one(&queue).await;
    // An hour's backoff: the test moves the clock, it does not wait.
    let failed = Outcome::Failed {
        error: "boom 1".into(),
        retry_in: Duration::from_secs(3600),
    };
    assert_eq!(
        queue
            .finish(&[Finished {
                lease: first,
                outcome: failed
            }])
            .await
            .unwrap(),
        [Recorded::Now(JobStatus::Queued)]
    );
    let waiting = store.get(&job.jid).await.unwrap();
    assert_eq!(
        (waiting.status, waiting.error.as_deref()),
        (JobStatus::Queued, Some("boom 1"))
    );
    // Not before its backoff, which is due an hour from now on Redis's clock.
    assert!(
        queue
            .claim(1, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    let mut conn = redis.connection();
    let delayed = format!("{}:delayed", redis.prefix());
    let due: f64 = redis::cmd("ZSCORE")
        .arg(&delayed)
        .arg(job.jid.to_string())
        .query(&mut conn)
        .unwrap();
    let (secs, _micros): (i64, i64) = redis::cmd("TIME").query(&mut conn).unwrap();
    #[allow(clippy::cast_precision_loss)]
    let in_ms = due - (secs * 1000) as f64;
    assert!(
        (3_595_000.0..=3_601_000.0).contains(&in_ms),
        "due in {in_ms} ms"
    );
    // Time passes: the retry falls due, and the next claim takes it.
    let _: () = redis::cmd("ZADD")
        .arg(&delayed)
        .arg(0)
        .arg(job.jid.to_string())
        .query(&mut conn)
        .unwrap();
    let second = take_one(&queue).await;
    assert_eq!(second.attempt(), 2);
    let failed = Outcome::Failed {
        error: "boom 2".into(),
        retry_in: Duration::from_millis(1),
    };
    assert_eq!(
        queue
            .finish(&[Finished {
                lease: second,
                outcome: failed
            }])
            .await
            .unwrap(),
        [Recorded::Now(JobStatus::Error)]
    );
    let done = store.get(&job.jid).await.unwrap();
    assert_eq!(done.status, JobStatus::Error, "no attempts left");
    assert_eq!(done.error.as_deref(), Some("boom 2"));
    let errors: Vec<_> = done
        .history
        .iter()
        .map(|a| a.error.clone().unwrap())
        .collect();
    assert_eq!(errors, ["boom 1", "boom 2"]);
    assert!(
        done.history
            .iter()
            .all(|a| a.start_time.is_some() && a.end_time.is_some())
    );
}

#[tokio::test]
async fn a_released_job_is_queued_at_once_and_its_attempt_not_counted() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let lease = take_one(&queue).await;
    let release = Finished {
        lease,
        outcome: Outcome::Released("shutting down".into()),
    };
    assert_eq!(
        queue.finish(&[release]).await.unwrap(),
        [Recorded::Now(JobStatus::Queued)]
    );
    let back = store.get(&job.jid).await.unwrap();
    assert_eq!((back.status, back.attempts), (JobStatus::Queued, 0));
    assert_eq!(back.history[0].outcome, AttemptOutcome::Release);
    let again = queue.claim(1, Duration::from_millis(50)).await.unwrap();
    assert_eq!(again[0].lease.attempt(), 1);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_job_and_refuses_another() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let new = NewJob::parse(1, 9, "sum", None)
        .unwrap()
        .with_idempotency_key("order-7")
        .unwrap();
    let first = store.create(&new).await.unwrap();
    let again = store.create(&new).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.job.jid, again.job.jid);
    assert_eq!(stream_len(&redis), 1, "queued once");
    let other = NewJob::parse(1, 10, "sum", None)
        .unwrap()
        .with_idempotency_key("order-7")
        .unwrap();
    let err = store.create(&other).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(e) if e.field() == "idempotency_key"),
        "{err:?}"
    );
}

#[tokio::test]
async fn finished_jobs_expire_and_leave_the_list() {
    let redis = TestRedis::start();
    let (store, queue) = setup_with_retention(&redis, 1).await;
    let store = store.with_retention(Retention {
        retention_secs: 1,
        result_ttl_secs: 1,
    });
    // Finished together, so they share one entry of the retention schedule.
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await);
    }
    let claimed = queue.claim(3, Duration::from_millis(50)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    succeed_all(&queue, claimed).await;
    let schedule: Vec<String> = members(&redis, "retention");
    assert_eq!(
        schedule.len(),
        1,
        "one schedule entry per finish: {schedule:?}"
    );
    // A job cancelled while queued goes the same way.
    let cancelled = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    store.cancel(&cancelled.jid).await.unwrap();
    jobs.push(cancelled);
    // Not before the retention ends.
    assert_eq!(queue.recover().await.unwrap().forgotten, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The hashes have no TTL: recovery deletes them.
    for job in &jobs[..3] {
        assert_eq!(
            store.get(&job.jid).await.unwrap().status,
            JobStatus::Success
        );
    }
    assert_eq!(
        store.get(&jobs[3].jid).await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(queue.recover().await.unwrap().forgotten, 4);
    for job in &jobs {
        assert!(matches!(store.get(&job.jid).await, Err(Error::NotFound(_))));
    }
    let page = store
        .list(&ListQuery::new(0, "", None).unwrap())
        .await
        .unwrap();
    assert!(page.jobs.is_empty());
    assert_no_keys_with(&redis, &[":status:"]);
}

#[tokio::test]
async fn one_recovery_forgets_every_expired_job_however_many() {
    // More than one script call forgets (1,000 jobs each): the pass goes on
    // until nothing expired is left, or a busy system would fall behind.
    const JOBS: usize = 2_500;
    let redis = TestRedis::start();
    let (store, queue) = setup_with_retention(&redis, 1).await;
    let new: Vec<NewJob> = (0..JOBS)
        .map(|_| NewJob::parse(1, 3, "sum", None).unwrap())
        .collect();
    for chunk in new.chunks(500) {
        store.create_many(chunk).await.unwrap();
    }
    let mut finished = 0;
    while finished < JOBS {
        let claimed = queue.claim(100, Duration::from_millis(50)).await.unwrap();
        assert!(!claimed.is_empty(), "{finished} of {JOBS} finished");
        finished += claimed.len();
        succeed_all(&queue, claimed).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(queue.recover().await.unwrap().forgotten, JOBS as u64);
    assert_no_keys_with(&redis, &[":job:", ":status:", ":index", ":retention"]);
}

#[tokio::test]
async fn results_small_or_large_come_back_whole_and_expire_on_time() {
    let redis = TestRedis::start();
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let run = |retention: Retention| {
        let config = config.clone();
        async move {
            let settings = QueueSettings {
                retention,
                ..QueueSettings::default()
            };
            Queue::connect(&config, "w", settings).await.unwrap()
        }
    };
    let keep = Retention {
        retention_secs: 60,
        result_ttl_secs: 60,
    };
    let small = serde_json::json!(12345);
    let large = serde_json::json!({ "text": "x".repeat(500) });
    for result in [&small, &large] {
        let queue = run(keep).await;
        let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
        let lease = take_one(&queue).await;
        let outcome = Outcome::Success(result.clone());
        queue.finish(&[Finished { lease, outcome }]).await.unwrap();
        assert_eq!(
            store.outcome(&job.jid).await.unwrap().result.as_ref(),
            Some(result)
        );
        let history = store.get(&job.jid).await.unwrap().history;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].outcome, AttemptOutcome::Success);
        assert_eq!(history[0].worker, "w");
        assert!(history[0].start_time <= history[0].end_time);
    }

    // A result kept for less time than its job goes before the job does.
    let queue = run(Retention {
        retention_secs: 60,
        result_ttl_secs: 1,
    })
    .await;
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let lease = take_one(&queue).await;
    let outcome = Outcome::Success(small.clone());
    queue.finish(&[Finished { lease, outcome }]).await.unwrap();
    assert_eq!(store.outcome(&job.jid).await.unwrap().result, Some(small));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Said, not shown as a null result.
    let err = store.outcome(&job.jid).await.unwrap_err();
    assert!(
        matches!(err, Error::ResultExpired(jid) if jid == job.jid),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_claimed_job_is_the_stored_job() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    // Params whose text holds quotes, escapes and a control character (JSON
    // writes it escaped), beside a trace parent.
    let params =
        serde_json::json!({"message": "tab\there, \"quoted\", nul\u{0}", "fail_attempts": 2});
    let new = NewJob::parse(3, 7, "fail", params.as_object().cloned())
        .unwrap()
        .with_trace_parent(
            jobs_core::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .unwrap(),
        );
    let job = submit(&store, new).await;
    let claimed = queue.claim(1, Duration::from_millis(50)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job, store.get(&job.jid).await.unwrap());
    assert_eq!(claimed[0].job.params, *params.as_object().unwrap());
    assert_eq!(
        (claimed[0].job.attempts, claimed[0].lease.attempt()),
        (1, 1)
    );
}

#[tokio::test]
async fn a_trace_parent_travels_with_the_job_to_its_worker() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let parent =
        jobs_core::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let traced = NewJob::parse(1, 2, "sum", None)
        .unwrap()
        .with_trace_parent(parent.clone());
    let job = submit(&store, traced).await;
    assert_eq!(job.trace_parent.as_ref(), Some(&parent));
    let untraced = submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    assert_eq!(untraced.trace_parent, None);
    assert_eq!(
        store.get(&job.jid).await.unwrap().trace_parent,
        Some(parent.clone())
    );

    let claimed = queue.claim(10, Duration::from_millis(10)).await.unwrap();
    let parents: Vec<_> = claimed
        .iter()
        .map(|claim| (claim.job.jid, claim.job.trace_parent.clone()))
        .collect();
    assert!(parents.contains(&(job.jid, Some(parent))), "{parents:?}");
    assert!(parents.contains(&(untraced.jid, None)), "{parents:?}");
}

#[tokio::test]
async fn queue_stats_count_waiting_running_and_delayed_jobs() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    // Before anything was queued (no stream yet).
    let empty = store.queue_stats().await.unwrap();
    assert_eq!(empty, jobs_core::QueueStats::default());

    for _ in 0..3 {
        submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.running, stats.delayed), (3, 0, 0));
    let age = stats.oldest_waiting.unwrap();
    assert!(
        age >= Duration::from_millis(15) && age < Duration::from_secs(5),
        "{age:?}"
    );

    let lease = take_one(&queue).await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.running), (2, 1));

    // A failed attempt waits out its backoff in `delayed`.
    queue
        .finish(&[Finished {
            lease,
            outcome: Outcome::Failed {
                error: "boom".into(),
                retry_in: Duration::from_secs(60),
            },
        }])
        .await
        .unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.running, stats.delayed), (2, 0, 1));

    // A job cancelled while queued no longer waits, though its entry stays
    // until a worker reads past it.
    let cancelled = submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;
    store.cancel(&cancelled.jid).await.unwrap();
    assert_eq!(store.queue_stats().await.unwrap().waiting, 2);

    // Once every waiting job is taken, nothing waits.
    queue.claim(10, Duration::from_millis(10)).await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.running), (0, 2));
    assert_eq!(stats.oldest_waiting, None);
}

/// With no worker reading, the entries of jobs cancelled while queued stay
/// ahead of the jobs that still wait; the age looks past them.
#[tokio::test]
async fn the_oldest_waiting_job_is_found_behind_many_cancelled_ones() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let created = create_numbered(&store, 130).await;
    for job in &created[..120] {
        store.cancel(&job.job.jid).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.waiting, 10);
    let age = stats.oldest_waiting.expect("ten jobs wait");
    assert!(
        age >= Duration::from_millis(25) && age < Duration::from_secs(5),
        "{age:?}"
    );
}

#[tokio::test]
async fn a_batch_is_saved_and_queued_in_order_with_one_call() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let created = create_numbered(&store, 5).await;
    let starts: Vec<i64> = created.iter().map(|c| c.job.start).collect();
    assert_eq!(starts, [0, 1, 2, 3, 4]);
    assert!(created.iter().all(|c| !c.replayed));
    for created in &created {
        assert_eq!(store.get(&created.job.jid).await.unwrap(), created.job);
    }
    assert_eq!(stream_len(&redis), 5);
    // Creation order is the batch's order: the list shows the last first.
    let page = store
        .list(&ListQuery::new(10, "", None).unwrap())
        .await
        .unwrap();
    let listed: Vec<i64> = page.jobs.iter().map(|job| job.start).collect();
    assert_eq!(listed, [4, 3, 2, 1, 0]);
}

#[tokio::test]
async fn running_jobs_list_newest_first_page_by_page() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let running =
        |size, token: &str| ListQuery::new(size, token, Some(JobStatus::Running)).unwrap();
    // No stream, then no group: nothing runs yet.
    assert!(store.list(&running(10, "")).await.unwrap().jobs.is_empty());
    create_numbered(&store, 6).await;
    assert!(store.list(&running(10, "")).await.unwrap().jobs.is_empty());

    // Four taken, one of them finished and one cancelled while running
    // (still RUNNING until its worker stops it).
    let mut claimed = queue.claim(4, Duration::from_millis(50)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let done = claimed.remove(0);
    queue
        .finish(&[Finished {
            lease: done.lease,
            outcome: Outcome::Success(1.into()),
        }])
        .await
        .unwrap();
    store.cancel(&claimed[0].job.jid).await.unwrap();

    let first = store.list(&running(2, "")).await.unwrap();
    let starts =
        |page: &jobs_core::JobPage| -> Vec<i64> { page.jobs.iter().map(|j| j.start).collect() };
    assert_eq!(starts(&first), [3, 2]);
    assert!(first.jobs.iter().all(|j| j.status == JobStatus::Running));
    let token = first.next_page_token.expect("a second page");
    let second = store.list(&running(2, &token)).await.unwrap();
    assert_eq!(starts(&second), [1]);
    assert_eq!(second.next_page_token, None);
    // The queued ones are listed apart, as before.
    let queued = store
        .list(&ListQuery::new(10, "", Some(JobStatus::Queued)).unwrap())
        .await
        .unwrap();
    assert_eq!(starts(&queued), [5, 4]);
    assert_eq!(store.queue_stats().await.unwrap().running, 3);
}

#[tokio::test]
async fn the_unfiltered_list_merges_every_status_newest_first() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let created = create_numbered(&store, 8).await;
    // 0 and 1 succeed, 2 fails, 3 and 4 run, 5 is cancelled, 6 and 7 wait.
    let claimed = queue.claim(5, Duration::from_millis(50)).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let outcomes: Vec<Finished> = claimed[..3]
        .iter()
        .enumerate()
        .map(|(i, claimed)| Finished {
            lease: claimed.lease.clone(),
            outcome: if i < 2 {
                Outcome::Success(1.into())
            } else {
                Outcome::Error("no".into())
            },
        })
        .collect();
    queue.finish(&outcomes).await.unwrap();
    store.cancel(&created[5].job.jid).await.unwrap();
    // Job 1's hash is gone, as after its retention, before recovery forgot it.
    redis::cmd("DEL")
        .arg(format!("{}:job:{}", redis.prefix(), created[1].job.jid))
        .exec(&mut redis.connection())
        .unwrap();

    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = store
            .list(&ListQuery::new(3, &token, None).unwrap())
            .await
            .unwrap();
        pages.push(
            page.jobs
                .iter()
                .map(|j| (j.start, j.status))
                .collect::<Vec<_>>(),
        );
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    use JobStatus::*;
    assert_eq!(
        pages,
        [
            vec![(7, Queued), (6, Queued), (5, Cancelled)],
            vec![(4, Running), (3, Running), (2, Error)],
            vec![(0, Success)],
        ]
    );
    let success: Vec<String> = members(&redis, "status:SUCCESS");
    assert_eq!(
        success,
        [created[0].job.jid.to_string()],
        "the gone job left its index"
    );
}

#[tokio::test]
async fn a_batch_outside_the_bounds_is_refused() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let keys_before = redis.keys();
    let err = store.create_many(&[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(e) if e.field() == "jobs"),
        "{err:?}"
    );
    let too_many = vec![NewJob::parse(1, 2, "sum", None).unwrap(); jobs_core::MAX_BATCH_JOBS + 1];
    let err = store.create_many(&too_many).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(e) if e.field() == "jobs"),
        "{err:?}"
    );
    assert_eq!(redis.keys(), keys_before, "nothing stored");
    assert_eq!(stream_len(&redis), 0);
}

#[tokio::test]
async fn idempotency_keys_work_inside_a_batch() {
    let redis = TestRedis::start();
    let (store, _) = setup(&redis).await;
    let keyed = |start, key: &str| {
        let new = NewJob::parse(start, 9, "sum", None).unwrap();
        if key.is_empty() {
            new
        } else {
            new.with_idempotency_key(key).unwrap()
        }
    };
    let earlier = store.create(&keyed(1, "a")).await.unwrap();
    // "a" was used before the batch, "b" twice inside it.
    let batch = [keyed(1, "a"), keyed(2, "b"), keyed(2, "b"), keyed(3, "")];
    let created = store.create_many(&batch).await.unwrap();
    let replayed: Vec<bool> = created.iter().map(|c| c.replayed).collect();
    assert_eq!(replayed, [true, false, true, false]);
    assert_eq!(created[0].job.jid, earlier.job.jid);
    assert_eq!(created[1].job.jid, created[2].job.jid);
    assert_eq!(stream_len(&redis), 3, "each job queued once");

    // A key reused for another job, before or inside the batch: the whole
    // batch is refused, naming the job, and nothing more is stored.
    let keys_before = redis.keys().len();
    for batch in [
        vec![keyed(5, "fresh"), keyed(7, "a")],
        vec![keyed(5, "c"), keyed(6, "c")],
    ] {
        let err = store.create_many(&batch).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(e) if e.field() == "[1].idempotency_key"),
            "{err:?}"
        );
    }
    assert_eq!(redis.keys().len(), keys_before);
    assert_eq!(stream_len(&redis), 3);
}

/// Rewrites a job's hash as releases before the `spec` field stored it:
/// what it was created with as fields of their own.
fn store_as_an_earlier_release(redis: &TestRedis, job: &jobs_core::Job, max_attempts: u32) {
    let key = format!("{}:job:{}", redis.prefix(), job.jid);
    let mut conn = redis.connection();
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(&["jid", &job.jid.to_string(), "status", "QUEUED"])
        .arg(&["start", &job.start.to_string(), "end", &job.end.to_string()])
        .arg(&["kind", &job.kind, "params", r#"{"fail_attempts":9}"#])
        .arg(&[
            "create_time",
            &job.create_time.timestamp_micros().to_string(),
        ])
        .arg(&[
            "max_attempts",
            &max_attempts.to_string(),
            "timeout_ms",
            "60000",
        ])
        // The first job created has seq 1.
        .arg(&["version", "1", "seq", "1"])
        .query(&mut conn)
        .unwrap();
}

#[tokio::test]
async fn a_job_stored_by_an_earlier_release_is_listed_run_and_ended() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let old = submit(&store, NewJob::parse(2, 5, "fail", None).unwrap()).await;
    store_as_an_earlier_release(&redis, &old, 1);
    let new = submit(&store, NewJob::parse(1, 2, "sum", None).unwrap()).await;

    let read = store.get(&old.jid).await.unwrap();
    assert_eq!(
        (read.start, read.end, read.kind.as_str(), read.max_attempts),
        (2, 5, "fail", 1)
    );
    assert_eq!(read.create_time, old.create_time);
    assert_eq!(read.timeout, Duration::from_secs(60));
    assert_eq!(read.params["fail_attempts"], 9);

    // A page of one: list.lua reads the older job's create time (for the
    // bound of its scan of running jobs) from the earlier layout.
    let first = store
        .list(&ListQuery::new(1, "", None).unwrap())
        .await
        .unwrap();
    assert_eq!(
        first.jobs.iter().map(|job| job.jid).collect::<Vec<_>>(),
        [new.jid]
    );
    let token = first.next_page_token.unwrap();
    let second = store
        .list(&ListQuery::new(1, &token, None).unwrap())
        .await
        .unwrap();
    assert_eq!(
        second.jobs.iter().map(|job| job.jid).collect::<Vec<_>>(),
        [old.jid]
    );

    let claimed = queue.claim(1, Duration::from_millis(50)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job, store.get(&old.jid).await.unwrap());
    assert_eq!(claimed[0].job.params["fail_attempts"], 9);
    // Its one attempt fails: finish.lua reads max_attempts from its own field.
    let failed = Outcome::Failed {
        error: "boom".into(),
        retry_in: Duration::ZERO,
    };
    let lease = claimed[0].lease.clone();
    assert_eq!(
        queue
            .finish(&[Finished {
                lease,
                outcome: failed
            }])
            .await
            .unwrap(),
        [Recorded::Now(JobStatus::Error)]
    );
    assert_eq!(store.get(&old.jid).await.unwrap().status, JobStatus::Error);
}

#[tokio::test]
async fn a_result_kept_longer_than_its_job_goes_with_the_job() {
    let redis = TestRedis::start();
    let config = RedisConfig::new(redis.url(), redis.prefix());
    let store = Store::connect(&config).await.unwrap();
    let settings = QueueSettings {
        retention: Retention {
            retention_secs: 1,
            result_ttl_secs: 60,
        },
        ..QueueSettings::default()
    };
    let queue = Queue::connect(&config, "w", settings).await.unwrap();
    let job = submit(&store, NewJob::parse(1, 3, "sum", None).unwrap()).await;
    let lease = take_one(&queue).await;
    // Too large for the job's hash: a key of its own, with the result's TTL.
    let large = serde_json::json!({ "text": "x".repeat(500) });
    let outcome = Outcome::Success(large.clone());
    queue.finish(&[Finished { lease, outcome }]).await.unwrap();
    assert_eq!(store.outcome(&job.jid).await.unwrap().result, Some(large));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(queue.recover().await.unwrap().forgotten, 1);
    assert!(matches!(store.get(&job.jid).await, Err(Error::NotFound(_))));
    assert_no_keys_with(&redis, &[":job:", ":result:"]);
}

#[tokio::test]
async fn recovery_drains_the_retention_schedule_of_earlier_releases() {
    let redis = TestRedis::start();
    let (store, queue) = setup(&redis).await;
    let old = submit(&store, NewJob::parse(2, 5, "sum", None).unwrap()).await;
    store_as_an_earlier_release(&redis, &old, 1);
    // Finished under an earlier release: its schedule was `{prefix}:expiry`.
    let p = redis.prefix();
    let jid = old.jid.to_string();
    let mut conn = redis.connection();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{p}:job:{jid}"))
        .arg(&["status", "SUCCESS"])
        .cmd("ZREM")
        .arg(format!("{p}:status:QUEUED"))
        .arg(&jid)
        .cmd("ZADD")
        .arg(format!("{p}:status:SUCCESS"))
        .arg(1)
        .arg(&jid)
        .cmd("ZADD")
        .arg(format!("{p}:expiry"))
        .arg(1)
        .arg(&jid)
        .query(&mut conn)
        .unwrap();
    assert_eq!(queue.recover().await.unwrap().forgotten, 1);
    assert!(matches!(store.get(&old.jid).await, Err(Error::NotFound(_))));
    assert_no_keys_with(&redis, &[":job:", ":status:", ":expiry"]);
}
