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
