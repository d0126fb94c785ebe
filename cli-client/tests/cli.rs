//! The real `jobs` binary against a real server and Redis.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::process::{Command, Output};

use clap::Parser;
use jobs_testkit::TestRedis;
use tokio_util::sync::CancellationToken;

struct Server {
    url: String,
    shutdown: CancellationToken,
    _redis: TestRedis,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The API with in-process workers (`--dev`) on port 0.
async fn server() -> Server {
    let redis = TestRedis::start();
    let config = jobs_api::Config::parse_from([
        "jobs-api",
        "--dev",
        "--redis-url",
        redis.url(),
        "--key-prefix",
        redis.prefix(),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { jobs_api::run(&config, listener, http, token).await });
    Server {
        url,
        shutdown,
        _redis: redis,
    }
}

async fn jobs(server: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobs"));
    command.arg("--server").arg(server).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn submit_prints_the_id_and_get_shows_the_job() {
    let server = server().await;
    let health = jobs(&server.url, &["health"]).await;
    assert!(health.status.success(), "{health:?}");
    assert_eq!(stdout(&health), "SERVING");

    let submitted = jobs(&server.url, &["submit", "--start", "-5", "--end", "5"]).await;
    assert!(submitted.status.success(), "{submitted:?}");
    let jid = stdout(&submitted);
    assert_eq!(jid.len(), 36, "a UUID: {jid}");

    let shown = jobs(&server.url, &["get", &jid]).await;
    assert!(shown.status.success(), "{shown:?}");
    let job: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(job["jid"], jid.as_str());
    assert_eq!(
        (job["start"].as_i64(), job["end"].as_i64()),
        (Some(-5), Some(5))
    );
    assert_eq!(job["kind"], "sum");

    let failing = jobs(
        &server.url,
        &[
            "submit",
            "--start",
            "1",
            "--end",
            "1",
            "--kind",
            "fail",
            "--param",
            "message=boom",
            "--param",
            "fail_attempts=1",
        ],
    )
    .await;
    assert!(failing.status.success(), "params as key=value: {failing:?}");
}

#[tokio::test]
async fn failures_are_one_line_with_a_documented_exit_code() {
    let server = server().await;
    let invalid = jobs(&server.url, &["submit", "--start", "5", "--end", "1"]).await;
    assert_eq!(invalid.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains("end (1) must not be less than start (5)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let missing = jobs(
        &server.url,
        &["get", "0b0e2f0e-8a4c-4f65-9d2a-4f1e1d6d3c11"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(3));

    let usage = jobs(&server.url, &["submit", "--start", "x"]).await;
    assert_eq!(usage.status.code(), Some(2));

    let port = jobs_testkit::free_port();
    let unreachable = jobs(&format!("http://127.0.0.1:{port}"), &["health"]).await;
    assert_eq!(unreachable.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains(&port.to_string()) && stderr.contains("JOBS_SERVER"),
        "{stderr}"
    );
}
