//! `jobs bench` against the real server with in-process workers (`--dev`):
//! every mode runs, with small counts, and `--output json` reports what was
//! sent with plausible numbers. Nothing here is timed.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::process::Output;

use serde_json::Value;

mod support;

use support::{Server, server};

/// runtime so the in-process server keeps serving.
async fn bench(server: &Server, flags: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jobs"));
    command
        .args([
            "--server",
            &server.grpc,
            "bench",
            "--rest-url",
            &server.rest,
        ])
        .args(flags)
        .env_remove("JOBS_SERVER")
        .env_remove("JOBS_API_TOKEN")
        .env_remove("JOBS_REST_URL");
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn json_report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "jobs bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not one JSON document ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn number(value: &Value, path: &str) -> f64 {
    value
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing from {value}"))
}

/// Percentiles present, positive and never decreasing.
fn assert_latencies(report: &Value, mode: &str) {
    let at = |p: &str| number(report, &format!("/{mode}/latency_ms/{p}"));
    let ordered = ["p50", "p90", "p99", "p999", "max"].map(at);
    assert!(ordered[0] > 0.0, "{mode}: {report}");
    assert!(
        ordered.windows(2).all(|pair| pair[0] <= pair[1]),
        "{mode} percentiles decrease: {ordered:?}"
    );
    assert!(at("mean") > 0.0 && at("mean") <= ordered[4]);
}

/// A submit mode's report: what was sent, and rates that add up.
fn assert_load(report: &Value, mode: &str, jobs: f64, requests: f64) {
    assert_eq!(number(report, &format!("/{mode}/jobs")), jobs, "{report}");
    assert_eq!(number(report, &format!("/{mode}/requests")), requests);
    let elapsed = number(report, &format!("/{mode}/elapsed_secs"));
    let rate = number(report, &format!("/{mode}/jobs_per_sec"));
    assert!(elapsed > 0.0);
    assert!(
        (rate * elapsed - jobs).abs() < 1.0,
        "{rate} * {elapsed} != {jobs}"
    );
    assert_latencies(report, mode);
}

#[tokio::test]
async fn grpc_and_rest_modes_send_exactly_the_count() {
    let server = server(&[]).await;
    let flags = ["--count", "60", "--concurrency", "4", "--duration", "60s"];
    for mode in ["grpc", "rest"] {
        let output = bench(
            &server,
            &[&["--mode", mode, "-o", "json"], &flags[..]].concat(),
            &[],
        )
        .await;
        let report = json_report(&output);
        assert_load(&report, mode, 60.0, 60.0);
        assert!(report.get("drain").is_none() && report.get("e2e").is_none());
        assert_eq!(report["settings"]["concurrency"], 4);
    }
    // Batched: CreateJobs and arrays; the last request takes the remainder.
    for mode in ["grpc", "rest"] {
        let output = bench(
            &server,
            &[&["--mode", mode, "-o", "json", "--batch", "25"], &flags[..]].concat(),
            &[],
        )
        .await;
        assert_load(&json_report(&output), mode, 60.0, 3.0);
    }
}

#[tokio::test]
async fn drain_and_e2e_modes_wait_for_the_workers() {
    let server = server(&[]).await;
    let output = bench(
        &server,
        &["--mode", "drain", "--drain-jobs", "1500", "-o", "json"],
        &[],
    )
    .await;
    let report = json_report(&output);
    assert_eq!(number(&report, "/drain/jobs"), 1500.0);
    let drain = number(&report, "/drain/drain_secs");
    assert!(drain > 0.0 && drain <= number(&report, "/drain/total_secs"));
    assert!(number(&report, "/drain/jobs_per_sec") > 0.0);

    let output = bench(
        &server,
        &["--mode", "e2e", "--samples", "20", "-o", "json"],
        &[],
    )
    .await;
    let report = json_report(&output);
    assert_eq!(number(&report, "/e2e/samples"), 20.0);
    assert_latencies(&report, "e2e");
}

#[tokio::test]
async fn all_modes_print_a_table_and_honour_the_token() {
    let server = server(&["--api-token", "s3cret"]).await;
    let flags = [
        "--count",
        "20",
        "--drain-jobs",
        "50",
        "--samples",
        "5",
        "-c",
        "2",
    ];
    // Without the token, the first call is refused, with the usual message.
    let refused = bench(&server, &flags, &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("requires a token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let output = bench(&server, &flags, &[("JOBS_API_TOKEN", "s3cret")]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("MODE"), "{text}");
    for (mode, jobs) in [
        ("e2e", "5"),
        ("drain", "50"),
        ("grpc", "20"),
        ("rest", "20"),
    ] {
        let row = lines
            .iter()
            .find(|line| line.starts_with(mode))
            .unwrap_or_else(|| panic!("no {mode} row in {text}"));
        assert_eq!(row.split_whitespace().nth(1), Some(jobs), "{row}");
    }
    let json = bench(
        &server,
        &[&flags[..], &["-o", "json"]].concat(),
        &[("JOBS_API_TOKEN", "s3cret")],
    )
    .await;
    let report = json_report(&json);
    for key in ["settings", "grpc", "rest", "drain", "e2e"] {
        assert!(report.get(key).is_some(), "{key} missing: {report}");
    }
}

/// `jobs --server SERVER bench FLAGS`, ended after 30 s.
async fn bench_within(server: &str, flags: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jobs"));
    command
        .args(["--server", server, "bench"])
        .args(flags)
        .env_remove("JOBS_SERVER")
        .env_remove("JOBS_API_TOKEN")
        .env_remove("JOBS_REST_URL");
    support::run_within(command, std::time::Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("jobs bench {flags:?} still running after 30 s"))
}

#[tokio::test]
async fn absurd_durations_are_usage_errors() {
    let server = server(&[]).await;
    for (flag, mode) in [("--duration", "grpc"), ("--timeout", "e2e")] {
        let output = bench_within(
            &server.grpc,
            &[
                "--mode",
                mode,
                "--samples",
                "1",
                flag,
                "10000000000000000000s",
            ],
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("at most a day"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_rest_gateway_exits_4() {
    let server = server(&[]).await;
    let refused = format!("http://127.0.0.1:{}", jobs_testkit::free_port());
    let silent = format!("http://{}", support::silent_listener());
    for (rest, says) in [(&refused, "refused"), (&silent, "no answer within 10s")] {
        rest_bench_exits_4(
            &server.grpc,
            rest,
            &[&format!("REST gateway at {rest}"), says],
        )
        .await;
    }
}

/// `jobs bench --mode rest` against `rest` exits 4 with one line on stderr
/// that says each of `says`.
async fn rest_bench_exits_4(grpc: &str, rest: &str, says: &[&str]) {
    let output = bench_within(
        grpc,
        &["--mode", "rest", "--count", "4", "--rest-url", rest],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{rest}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(says.iter().all(|said| stderr.contains(said)), "{stderr}");
}

#[tokio::test]
async fn a_rest_gateway_without_its_redis_exits_4() {
    let mut server = support::server_on(jobs_testkit::TestRedis::private(), None, &[]).await;
    server.redis.stop();
    // As the gateway answers when Redis does not confirm a create in time.
    let slow = format!("http://{}", support::http1_listener("504 Gateway Timeout"));
    for (rest, says) in [(&server.rest, "503"), (&slow, "504")] {
        let unavailable = format!("REST gateway at {rest} is unavailable");
        rest_bench_exits_4(&server.grpc, rest, &[&unavailable, says]).await;
    }
}
