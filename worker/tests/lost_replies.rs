//! A claim that ran in Redis while its reply did not reach the worker in
//! time: the worker must run the jobs it took rather than leave them to
//! their leases. Redis is reached through a proxy that holds back the first
//! claim's reply (the first bytes from Redis with a NUL in them: only claim
//! rows carry one) past the worker's response timeout.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use jobs_core::{JobStatus, NewJob};
use jobs_testkit::TestRedis;
use support::{Worker, finished, store};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Forwards connections to `redis`; the first chunk from Redis that holds a
/// NUL byte, and what follows it on that connection, arrive `delay` late.
/// Returns the proxy's URL.
async fn delaying_proxy(redis: &str, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let upstream = redis.trim_start_matches("redis://").to_owned();
    let delayed = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let delayed = delayed.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read) = server_read.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    let chunk = &buffer[..read];
                    if chunk.contains(&0) && !delayed.swap(true, Ordering::SeqCst) {
                        tokio::time::sleep(delay).await;
                    }
                    if client_write.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

// Two threads: the proxy must go on forwarding while the test's thread
// blocks, waiting for the worker to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let proxy = delaying_proxy(redis.url(), Duration::from_secs(1)).await;
    let worker = Worker::start(
        &redis,
        "lost-reply",
        &[
            ("REDIS_URL", &proxy),
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
