//! The API server with in-process workers (`--dev`) on port 0, against the
//! test's own Redis prefix, for the CLI's tests.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use clap::Parser;
use jobs_testkit::TestRedis;
use tokio_util::sync::CancellationToken;

/// A running server; dropping it stops the server.
pub struct Server {
    /// The gRPC address, as `--server` takes it.
    pub grpc: String,
    /// The REST gateway's base URL, as `--rest-url` takes it.
    pub rest: String,
    shutdown: CancellationToken,
    _redis: TestRedis,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the server with these extra `jobs-api` flags.
pub async fn server(flags: &[&str]) -> Server {
    let redis = TestRedis::start();
    let mut args = vec![
        "jobs-api",
        "--dev",
        "--redis-url",
        redis.url(),
        "--key-prefix",
        redis.prefix(),
    ];
    args.extend(flags);
    let config = jobs_api::Config::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = format!("http://{}", listener.local_addr().unwrap());
    let rest = format!("http://{}", http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { jobs_api::run(&config, listener, http, token).await });
    Server {
        grpc,
        rest,
        shutdown,
        _redis: redis,
    }
}

/// Runs `command` (its stdout and stderr piped) for at most `limit`; `None`
/// when it had not ended by then, after killing it, so a command that
/// hangs fails its test instead of hanging it.
pub async fn run_within(
    mut command: std::process::Command,
    limit: std::time::Duration,
) -> Option<std::process::Output> {
    use std::{io::Read, process::Stdio, time::Instant};
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        // Read on threads of their own, so a full pipe cannot stall the child.
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let err = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
        status.map(|status| std::process::Output {
            status,
            stdout,
            stderr,
        })
    })
    .await
    .unwrap()
}

/// A TCP listener that accepts every connection and never says a word, as
/// a hung server (or something that is not a Jobs server) would. Returns
/// its address; it lives until the test process ends.
pub fn silent_listener() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Held, not dropped: a closed connection would be an answer.
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    address
}
