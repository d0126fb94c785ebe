//! The real `jobs` binary against a real server and Redis: every command, in
//! text and JSON, and every documented exit code.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;

mod support;

use support::Server;

/// The API with in-process workers (`--dev`) on port 0.
async fn server() -> Server {
    support::server(&[]).await
}

/// The same, with more `jobs-api` flags.
async fn server_with(flags: &[&str]) -> Server {
    support::server(flags).await
}

async fn jobs(server: &str, args: &[&str]) -> Output {
    jobs_with(server, args, &[], None).await
}

/// `jobs` with more environment variables, and `stdin` as its input.
async fn jobs_with(
    server: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobs"));
    command
        .arg("--server")
        .arg(server)
        .args(args)
        // Colour would be off anyway (stdout is a pipe); this keeps a
        // developer's environment from mattering at all.
        .env_remove("NO_COLOR")
        .env_remove("JOBS_SERVER")
        .env_remove("JOBS_API_TOKEN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stdin = stdin.unwrap_or_default().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        // Written from a thread of its own, so a child that stops reading
        // early cannot leave both sides waiting on full pipes.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(stdin.as_bytes());
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        output
    })
    .await
    .unwrap()
}

/// A JSON file for `jobs data load`, removed when dropped.
struct DataFile(std::path::PathBuf);

impl DataFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "jobs-cli-test-{}-{name}-{}.json",
            std::process::id(),
            jobs_testkit::free_port()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every record the server holds (an empty search matches all), as JSON.
async fn all_records(server: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let output = jobs_with(
        server,
        &["data", "search", "", "--limit", "100000", "-o", "json"],
        env,
        None,
    )
    .await;
    assert_code(&output, 0);
    json(&output).as_array().unwrap().clone()
}

/// A command line written as one string.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// Stdout as one JSON document; fails the test with the output otherwise.
fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|err| panic!("not one JSON document ({err}): {output:?}"))
}

/// Asserts the exit code, showing the output when it is wrong.
fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
}

/// Asserts a failure is reported as exactly one line on stderr.
fn assert_one_error_line(output: &Output) {
    let stderr = stderr(output);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Submits a job and waits for it, returning its id.
async fn finished_job(server: &str, args: &[&str]) -> String {
    let mut all = vec!["submit", "--wait", "--output", "json"];
    all.extend(args);
    let output = jobs(server, &all).await;
    json(&output)["jid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn submit_prints_the_id_and_get_shows_the_job() {
    let server = server().await;
    let health = jobs(&server.grpc, &["health"]).await;
    assert_code(&health, 0);
    assert_eq!(stdout(&health), "SERVING");

    let submitted = jobs(&server.grpc, &["submit", "--start", "-5", "--end", "5"]).await;
    assert_code(&submitted, 0);
    let jid = stdout(&submitted);
    assert_eq!(jid.len(), 36, "a UUID: {jid}");

    let shown = jobs(&server.grpc, &["get", &jid, "--output", "json"]).await;
    assert_code(&shown, 0);
    let job = json(&shown);
    assert_eq!(job["jid"], jid.as_str());
    assert_eq!(
        (job["start"].as_i64(), job["end"].as_i64()),
        (Some(-5), Some(5))
    );
    assert_eq!(job["kind"], "sum");

    let text = jobs(&server.grpc, &["get", &jid]).await;
    assert_code(&text, 0);
    let text = stdout(&text);
    assert!(text.starts_with(&format!("jid       {jid}")), "{text}");
    assert!(text.contains("range     -5..=5"), "{text}");

    let failing = jobs(
        &server.grpc,
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
            "--output",
            "json",
        ],
    )
    .await;
    assert_code(&failing, 0);
    let job = json(&failing);
    assert_eq!(job["status"], "QUEUED");
    // A value that parses as JSON travels as JSON, anything else as a string.
    assert_eq!(
        job["params"],
        serde_json::json!({"message": "boom", "fail_attempts": 1})
    );
}

#[tokio::test]
async fn submit_wait_prints_the_result_and_fails_with_the_job() {
    let server = server().await;
    let summed = jobs(
        &server.grpc,
        &["submit", "--start", "1", "--end", "100", "--wait"],
    )
    .await;
    assert_code(&summed, 0);
    // Only the result on stdout, so `$(jobs submit … --wait)` captures it.
    assert_eq!(stdout(&summed), "5050");
    assert!(stderr(&summed).contains("submitted"), "{summed:?}");

    // A sum beyond 2^53 arrives exactly.
    let big = jobs(
        &server.grpc,
        &["submit", "--start", "1", "--end", "1000000000", "--wait"],
    )
    .await;
    assert_code(&big, 0);
    assert_eq!(stdout(&big), "500000000500000000");

    let failed = jobs(
        &server.grpc,
        &words("submit --start 1 --end 1 --kind fail --param message=boom --wait"),
    )
    .await;
    assert_code(&failed, 1);
    assert_eq!(stdout(&failed), "");
    let line = stderr(&failed);
    assert!(line.ends_with("ended ERROR: boom"), "{line}");
    assert_eq!(line.lines().filter(|l| l.starts_with("error")).count(), 1);

    let failed = jobs(
        &server.grpc,
        &words("submit --start 1 --end 1 --kind fail --param message=boom --wait --output json"),
    )
    .await;
    assert_code(&failed, 1);
    let outcome = json(&failed);
    assert_eq!(outcome["status"], "ERROR");
    assert_eq!(outcome["error"], "boom");
    assert_eq!(outcome["result"], Value::Null);
}

#[tokio::test]
async fn result_prints_a_finished_jobs_outcome() {
    let server = server().await;
    let jid = finished_job(&server.grpc, &["--start", "1", "--end", "10"]).await;
    let result = jobs(&server.grpc, &["result", &jid]).await;
    assert_code(&result, 0);
    assert_eq!(stdout(&result), "55");
    let result = jobs(&server.grpc, &["result", &jid, "--output", "json"]).await;
    assert_code(&result, 0);
    let outcome = json(&result);
    assert_eq!(
        (&outcome["jid"], &outcome["status"], &outcome["result"]),
        (
            &Value::from(jid.as_str()),
            &Value::from("SUCCESS"),
            &Value::from(55)
        )
    );

    let failed = finished_job(
        &server.grpc,
        &["--start", "1", "--end", "1", "--kind", "fail"],
    )
    .await;
    let result = jobs(&server.grpc, &["result", &failed]).await;
    assert_code(&result, 1);
    assert_one_error_line(&result);
}

#[tokio::test]
async fn watch_prints_json_lines_until_the_job_ends() {
    let server = server().await;
    let jid = stdout(
        &jobs(
            &server.grpc,
            &["submit", "--start", "0", "--end", "400", "--kind", "sleep"],
        )
        .await,
    );
    let watched = jobs(&server.grpc, &["watch", &jid, "--output", "json"]).await;
    assert_code(&watched, 0);
    let updates: Vec<Value> = stdout(&watched)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(updates.iter().all(|job| job["jid"] == jid.as_str()));
    assert_eq!(updates.last().unwrap()["status"], "SUCCESS");
    assert!(
        updates[..updates.len() - 1]
            .iter()
            .all(|job| job["status"] == "QUEUED" || job["status"] == "RUNNING"),
        "only the last update is terminal: {updates:?}"
    );

    // Text, not on a terminal: one line per update, the last one the end.
    let text = jobs(&server.grpc, &["watch", &jid]).await;
    assert_code(&text, 0);
    assert!(stdout(&text).starts_with("SUCCESS"), "{text:?}");

    let failed = finished_job(
        &server.grpc,
        &["--start", "1", "--end", "1", "--kind", "fail"],
    )
    .await;
    let watched = jobs(&server.grpc, &["watch", &failed, "--output", "json"]).await;
    assert_code(&watched, 1);
    let last: Value = serde_json::from_str(stdout(&watched).lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "ERROR");
    assert_one_error_line(&watched);
}

#[tokio::test]
async fn list_shows_newest_first_and_filters_by_status() {
    let server = server().await;
    let first = finished_job(&server.grpc, &["--start", "1", "--end", "2"]).await;
    let failed = finished_job(
        &server.grpc,
        &["--start", "1", "--end", "1", "--kind", "fail"],
    )
    .await;
    let last = finished_job(&server.grpc, &["--start", "3", "--end", "4"]).await;

    let listed = jobs(&server.grpc, &["list", "--output", "json"]).await;
    assert_code(&listed, 0);
    let jids: Vec<_> = json(&listed)
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["jid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jids, [last.clone(), failed.clone(), first]);

    let errors = jobs(
        &server.grpc,
        &["list", "--status", "ERROR", "--output", "json"],
    )
    .await;
    assert_code(&errors, 0);
    let errors = json(&errors);
    assert_eq!(errors.as_array().unwrap().len(), 1, "{errors}");
    assert_eq!(errors[0]["jid"], failed.as_str());

    let table = jobs(&server.grpc, &["list", "--limit", "2"]).await;
    assert_code(&table, 0);
    let table = stdout(&table);
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two jobs: {table}");
    assert!(lines[0].starts_with("JID "), "{table}");
    assert!(lines[1].starts_with(&last), "{table}");
    assert!(lines[2].contains(" ERROR "), "{table}");
    // Aligned: every column starts where its header does.
    let status_column = lines[0].find("STATUS").unwrap();
    assert_eq!(lines[2].find("ERROR"), Some(status_column), "{table}");

    let none = jobs(&server.grpc, &["list", "--status", "cancelled"]).await;
    assert_code(&none, 0);
    assert_eq!(stdout(&none), "no jobs");
}

#[tokio::test]
async fn cancel_ends_a_queued_job_and_stops_a_running_one() {
    // One slot: the first job runs, the second waits in the queue behind it.
    let server = server_with(&["--concurrency", "1"]).await;
    let sleep = words("submit --start 0 --end 60000 --kind sleep");
    let running = stdout(&jobs(&server.grpc, &sleep).await);
    let queued = stdout(&jobs(&server.grpc, &sleep).await);

    let cancelled = jobs(&server.grpc, &["cancel", &queued, "--output", "json"]).await;
    assert_code(&cancelled, 0);
    assert_eq!(json(&cancelled)["status"], "CANCELLED");
    let again = jobs(&server.grpc, &["cancel", &queued]).await;
    assert_code(&again, 1);
    assert_one_error_line(&again);

    let stopping = jobs(&server.grpc, &["cancel", &running]).await;
    assert_code(&stopping, 0);
    assert!(stdout(&stopping).starts_with(&running), "{stopping:?}");
    // The worker stops it well before its minute is up; the watch ends with
    // the job CANCELLED.
    let started = Instant::now();
    let watched = jobs(&server.grpc, &["watch", &running, "--output", "json"]).await;
    assert_code(&watched, 1);
    assert!(started.elapsed() < Duration::from_secs(20));
    let last: serde_json::Value =
        serde_json::from_str(stdout(&watched).lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "CANCELLED", "{last}");
}

#[tokio::test]
async fn failures_are_one_line_with_a_documented_exit_code() {
    let server = server().await;
    let invalid = jobs(&server.grpc, &["submit", "--start", "5", "--end", "1"]).await;
    assert_code(&invalid, 1);
    assert!(
        stderr(&invalid).contains("end (1) must not be less than start (5)"),
        "{invalid:?}"
    );
    assert_one_error_line(&invalid);

    let missing = "0b0e2f0e-8a4c-4f65-9d2a-4f1e1d6d3c11";
    for args in [
        vec!["get", missing],
        vec!["result", missing],
        vec!["watch", missing],
        vec!["cancel", missing],
        vec!["get", missing, "--output", "json"],
    ] {
        let output = jobs(&server.grpc, &args).await;
        assert_code(&output, 3);
        assert_one_error_line(&output);
        assert!(stderr(&output).contains("not found"), "{output:?}");
    }

    let jid = stdout(
        &jobs(
            &server.grpc,
            &words("submit --start 0 --end 60000 --kind sleep"),
        )
        .await,
    );
    let unfinished = jobs(&server.grpc, &["result", &jid]).await;
    assert_code(&unfinished, 1);
    assert_one_error_line(&unfinished);
    assert!(stderr(&unfinished).contains("not ready"), "{unfinished:?}");
    jobs(&server.grpc, &["cancel", &jid]).await;

    for usage in [
        vec!["submit", "--start", "x"],
        vec!["list", "--status", "finished"],
        vec!["list", "--limit", "0"],
        vec!["get"],
        vec!["completions", "tcsh"],
    ] {
        assert_code(&jobs(&server.grpc, &usage).await, 2);
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_hint() {
    let port = jobs_testkit::free_port();
    let address = format!("127.0.0.1:{port}");
    for args in [
        vec!["health"],
        vec!["list", "--output", "json"],
        vec!["submit", "--start", "1", "--end", "2", "--wait"],
    ] {
        let started = Instant::now();
        let output = jobs(&address, &args).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_code(&output, 4);
        assert_one_error_line(&output);
        let line = stderr(&output);
        assert!(
            line.contains(&format!("http://{address}")) && line.contains("JOBS_SERVER"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn health_and_completions_speak_json_too() {
    let server = server().await;
    let health = jobs(&server.grpc, &["health", "--output", "json"]).await;
    assert_code(&health, 0);
    assert_eq!(json(&health)["status"], "SERVING");

    // Completions need no server: this one is not running.
    let nowhere = format!("127.0.0.1:{}", jobs_testkit::free_port());
    for (shell, marker) in [
        ("bash", "complete -F _jobs"),
        ("zsh", "#compdef jobs"),
        ("fish", "complete -c jobs"),
    ] {
        let script = jobs(&nowhere, &["completions", shell]).await;
        assert_code(&script, 0);
        let script = stdout(&script);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("submit") && script.contains("watch"),
            "{shell}"
        );

        let wrapped = jobs(&nowhere, &["completions", shell, "-o", "json"]).await;
        assert_code(&wrapped, 0);
        let wrapped = json(&wrapped);
        assert_eq!(wrapped["shell"], shell);
        assert_eq!(wrapped["script"].as_str().unwrap().trim_end(), script);
    }
    // Nor a server address that could be dialled: a shell's start-up
    // script must not break on a JOBS_SERVER that other commands refuse.
    let script = jobs("https://jobs.example:443", &["completions", "bash"]).await;
    assert_code(&script, 0);
    assert!(stdout(&script).contains("complete -F _jobs"));
    // Nor a token no header could carry.
    let script = jobs_with(
        &nowhere,
        &["completions", "bash"],
        &[("JOBS_API_TOKEN", "bad\u{1}token")],
        None,
    )
    .await;
    assert_code(&script, 0);
}

#[tokio::test]
async fn help_shows_examples_and_exit_codes() {
    let nowhere = "127.0.0.1:9";
    let help = jobs(nowhere, &["--help"]).await;
    assert_code(&help, 0);
    let help = stdout(&help);
    for line in [
        "0  ok",
        "1  the job failed",
        "2  usage",
        "3  not found",
        "4  server unreachable",
    ] {
        assert!(help.contains(line), "{line:?} in {help}");
    }
    for command in [
        "submit",
        "get",
        "list",
        "result",
        "watch",
        "cancel",
        "health",
        "completions",
        "data",
        "data load",
        "data search",
        "data get",
    ] {
        let mut args = words(command);
        args.push("--help");
        let help = jobs(nowhere, &args).await;
        assert_code(&help, 0);
        let help = stdout(&help);
        assert!(
            help.contains("Example") && help.contains(&format!("jobs {command}")),
            "{command}: {help}"
        );
    }
}

#[tokio::test]
async fn a_reader_that_goes_away_is_no_error() {
    let server = server().await;
    jobs(&server.grpc, &["submit", "--start", "1", "--end", "2"]).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobs"));
    command
        .args(["--server", &server.grpc, "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        // Close the read end before the list arrives, as `| head -0` would.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_code(&output, 0);
    assert_eq!(stderr(&output), "", "no panic, no message");
}

#[tokio::test]
async fn data_load_search_and_get() {
    let server = server().await;
    let people = DataFile::new(
        "people",
        r#"[
            {"id": "ada", "name": "Ada Lovelace", "born": 1815},
            {"name": "Grace Hopper", "tags": ["navy", "cobol"]},
            {"id": 42, "name": "Alan Turing", "city": "Wilmslow"}
        ]"#,
    );
    let loaded = jobs(&server.grpc, &["data", "load", people.path(), "-o", "json"]).await;
    assert_code(&loaded, 0);
    let loaded = json(&loaded);
    assert_eq!(loaded["loaded"], 3);
    let ids = loaded["ids"].as_array().unwrap();
    assert_eq!(
        (&ids[0], &ids[2]),
        (&Value::from("ada"), &Value::from("42"))
    );
    let generated = ids[1].as_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    // Text: the count, and the generated id beside its record's index. From
    // stdin, loading again replaces the records with those ids.
    let text = jobs_with(
        &server.grpc,
        &["data", "load", "-"],
        &[],
        Some(r#"[{"id": "ada", "name": "Ada King"}, {"name": "Anonymous"}]"#),
    )
    .await;
    assert_code(&text, 0);
    let lines: Vec<String> = stdout(&text).lines().map(str::to_owned).collect();
    assert_eq!(lines[..2], ["loaded 2 records", "generated ids (1):"]);
    assert!(lines[2].starts_with("  records[1]  "), "{lines:?}");
    assert_eq!(all_records(&server.grpc, &[]).await.len(), 4);

    // Case ignored. Not a term made of hex digits: ids are matched too, and a
    // generated one may hold any such run.
    let found = jobs(&server.grpc, &["data", "search", "KING", "-o", "json"]).await;
    assert_code(&found, 0);
    assert_eq!(
        json(&found),
        serde_json::json!([{"id": "ada", "name": "Ada King"}])
    );
    // Any string value at any depth, in load order, cut at --limit.
    let found = jobs(&server.grpc, &["data", "search", "a", "-o", "json"]).await;
    let found: Vec<_> = json(&found)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(
        found,
        ["Grace Hopper", "Alan Turing", "Ada King", "Anonymous"]
    );
    let cut = jobs(&server.grpc, &words("data search a --limit 2 -o json")).await;
    assert_eq!(json(&cut).as_array().unwrap().len(), 2);
    let navy = jobs(&server.grpc, &words("data search cobol -o json")).await;
    assert_eq!(json(&navy)[0]["id"], generated);

    let table = jobs(&server.grpc, &words("data search turing")).await;
    assert_code(&table, 0);
    let table = stdout(&table);
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("id  city      name"), "{table}");
    assert!(lines[1].starts_with("42  Wilmslow  Alan Turing"), "{table}");
    let none = jobs(&server.grpc, &words("data search nobody")).await;
    assert_code(&none, 0);
    assert_eq!(stdout(&none), "no matching records");

    let got = jobs(&server.grpc, &words("data get 42 -o json")).await;
    assert_code(&got, 0);
    assert_eq!(
        json(&got),
        serde_json::json!({"id": 42, "name": "Alan Turing", "city": "Wilmslow"})
    );
    let got = jobs(&server.grpc, &words("data get 42")).await;
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "id    42\ncity  Wilmslow\nname  Alan Turing");

    for args in [words("data get nobody"), words("data get nobody -o json")] {
        let missing = jobs(&server.grpc, &args).await;
        assert_code(&missing, 3);
        assert_one_error_line(&missing);
        assert!(
            stderr(&missing).contains("\"nobody\" not found"),
            "{missing:?}"
        );
    }
}

#[tokio::test]
async fn a_bad_record_loads_nothing_and_names_its_index() {
    let server = server().await;
    // More records than one batch go out before the bad one, so the server
    // has received some when the load is abandoned.
    let good: Vec<String> = (0..1500).map(|i| format!(r#"{{"id": {i}}}"#)).collect();
    let good = good.join(",");
    for (name, contents, expected) in [
        (
            "not-an-object",
            format!("[{good}, 5]"),
            "records[1500]: must be a JSON object, not a number",
        ),
        (
            "broken",
            format!("[{good}, {{\"id\": }}]"),
            "records[1500]: expected value",
        ),
        // Checked by the server, which refuses the whole load.
        (
            "bad-id",
            format!("[{good}, {{\"id\": true}}]"),
            "records[1500].id: must be a string or a whole number",
        ),
        (
            "twice",
            format!("[{good}, {{\"id\": 7}}]"),
            "records[1500].id: id \"7\" is already used by records[7]",
        ),
    ] {
        let file = DataFile::new(name, &contents);
        let output = jobs(&server.grpc, &["data", "load", file.path()]).await;
        assert_code(&output, 1);
        assert_one_error_line(&output);
        assert!(stderr(&output).contains(expected), "{name}: {output:?}");
        assert_eq!(stdout(&output), "", "{name}");
        assert_eq!(
            all_records(&server.grpc, &[]).await,
            Vec::<Value>::new(),
            "{name}"
        );
    }

    let missing = jobs(&server.grpc, &["data", "load", "/nonexistent/people.json"]).await;
    assert_code(&missing, 1);
    assert_one_error_line(&missing);
    assert!(
        stderr(&missing).contains("cannot read /nonexistent/people.json"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_server_with_a_token_takes_only_that_token() {
    let server = server_with(&["--api-token", "s3cret"]).await;

    let refused = jobs(&server.grpc, &words("list")).await;
    assert_code(&refused, 1);
    assert_one_error_line(&refused);
    assert!(stderr(&refused).contains("requires a token"), "{refused:?}");
    for wrong in [
        jobs(&server.grpc, &words("--token s3cres list")).await,
        jobs_with(
            &server.grpc,
            &words("list"),
            &[("JOBS_API_TOKEN", "nope")],
            None,
        )
        .await,
    ] {
        assert_code(&wrong, 1);
        assert_one_error_line(&wrong);
        assert!(stderr(&wrong).contains("refused the token"), "{wrong:?}");
    }
    let load = DataFile::new("token", r#"[{"id": "a"}]"#);
    let refused = jobs(&server.grpc, &["data", "load", load.path()]).await;
    assert_code(&refused, 1);
    assert!(stderr(&refused).contains("requires a token"), "{refused:?}");

    // Health stays open, for load balancers.
    assert_code(&jobs(&server.grpc, &words("health")).await, 0);

    let listed = jobs(&server.grpc, &words("--token s3cret list -o json")).await;
    assert_code(&listed, 0);
    assert_eq!(json(&listed), serde_json::json!([]));
    let env = [("JOBS_API_TOKEN", "s3cret")];
    let summed = jobs_with(
        &server.grpc,
        &words("submit --start 1 --end 4 --wait"),
        &env,
        None,
    )
    .await;
    assert_code(&summed, 0);
    assert_eq!(stdout(&summed), "10");
    // A client stream carries it too.
    let loaded = jobs_with(&server.grpc, &["data", "load", load.path()], &env, None).await;
    assert_code(&loaded, 0);
    assert_eq!(all_records(&server.grpc, &env).await.len(), 1);

    // The help names the variable but never shows its value.
    let help = jobs_with(&server.grpc, &["--help"], &env, None).await;
    let help = stdout(&help);
    assert!(help.contains("JOBS_API_TOKEN"), "{help}");
    assert!(!help.contains("s3cret"), "{help}");

    let unusable = jobs(&server.grpc, &["--token", "new\nline", "list"]).await;
    assert_code(&unusable, 2);
    assert_one_error_line(&unusable);
}

/// `jobs ARGS` with no environment of the developer's, ended after `limit`.
async fn jobs_within(args: &[&str], limit: Duration) -> Option<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobs"));
    command
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("JOBS_SERVER")
        .env_remove("JOBS_API_TOKEN")
        .env_remove("JOBS_REST_URL");
    support::run_within(command, limit).await
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_command_with_exit_4() {
    let silent = format!("http://{}", support::silent_listener());
    let jid = "0b0e2f0e-8a4c-4f65-9d2a-4f1e1d6d3c11";
    let commands = [
        words("health"),
        words("list"),
        vec!["get", jid],
        // The opening of a watch is timed too; its stream is not.
        vec!["watch", jid],
        words("submit --start 1 --end 2 --wait"),
        words("data search x"),
    ];
    let started = Instant::now();
    // Side by side: each waits out the call timeout (10 s).
    let runs = commands.iter().map(|args| {
        let mut all = vec!["--server", &silent];
        all.extend(args);
        async move { (args, jobs_within(&all, Duration::from_secs(30)).await) }
    });
    for (args, output) in futures_util::future::join_all(runs).await {
        let output = output.unwrap_or_else(|| panic!("{args:?} still waiting after 30 s"));
        assert_code(&output, 4);
        assert_one_error_line(&output);
        let line = stderr(&output);
        assert!(
            line.contains("did not answer within 10s") && line.contains(&silent),
            "{args:?}: {line}"
        );
        // A create it sent may have been made all the same.
        if args[0] == "submit" {
            assert!(
                line.contains("may have been created") && line.contains("--idempotency-key"),
                "{line}"
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[tokio::test]
async fn only_plain_http_servers_are_dialled() {
    // A listener that would see any connection the client made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    for (server, says) in [
        (format!("https://{address}"), "TLS"),
        (format!("HTTPS://{address}"), "TLS"),
        (format!("ftp://{address}"), "\"ftp\""),
        ("http://[::1".to_owned(), "not a URL"),
        ("http://".to_owned(), "http://host:port"),
    ] {
        let output = jobs_within(
            &["--server", &server, "--token", "s3cret", "list"],
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|| panic!("{server}: still running"));
        assert_code(&output, 2);
        let text = stderr(&output);
        assert!(text.contains("--server") && text.contains(says), "{text}");
    }
    // The same for the REST gateway the bench posts to.
    let rest = format!("https://{address}");
    let output = jobs_within(
        &[
            "--server",
            &format!("http://{address}"),
            "bench",
            "--mode",
            "rest",
            "--rest-url",
            &rest,
        ],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_code(&output, 2);
    assert!(stderr(&output).contains("--rest-url"), "{output:?}");
    // Nothing was sent anywhere, the token least of all.
    let accepted = listener.accept();
    assert!(
        accepted
            .as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock),
        "the client connected: {accepted:?}"
    );
}

#[tokio::test]
async fn watch_prints_every_update_when_stdout_is_not_a_terminal() {
    let server = server().await;
    let jid = stdout(
        &jobs(
            &server.grpc,
            &words("submit --start 0 --end 1500 --kind sleep"),
        )
        .await,
    );
    // stderr a terminal (a pseudo-terminal from util-linux `script`), stdout
    // a file: `jobs watch ID > file` or `| grep` typed at a terminal.
    let file = DataFile::new("watch", "");
    let line = format!(
        "'{}' --server '{}' watch '{jid}' > '{}'",
        env!("CARGO_BIN_EXE_jobs"),
        server.grpc,
        file.path()
    );
    let mut command = Command::new("script");
    command.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
    let output = support::run_within(command, Duration::from_secs(30))
        .await
        .expect("watch still running after 30 s");
    assert!(
        output.status.success(),
        "needs util-linux `script`: {output:?}"
    );
    let text = std::fs::read_to_string(file.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "a line per update: {text:?}");
    assert!(
        lines[0].starts_with("QUEUED") || lines[0].starts_with("RUNNING"),
        "{text:?}"
    );
    assert!(lines.last().unwrap().starts_with("SUCCESS"), "{text:?}");
}

#[tokio::test]
async fn text_output_never_carries_control_characters() {
    let server = server().await;
    // An error message that would retitle the terminal, clear it and break
    // the line, were it printed as it is.
    let message = "\x1b]0;owned\x07\x1b[2Jbo\rom\nline";
    let param = format!("message={message}");
    let failed = jobs(
        &server.grpc,
        &[
            "submit", "--start", "1", "--end", "1", "--kind", "fail", "--param", &param, "--wait",
        ],
    )
    .await;
    assert_code(&failed, 1);
    let is_clean = |text: &str| !text.chars().any(|c| c.is_control() && c != '\n');
    // "job ID submitted", then the one error line.
    let lines: Vec<String> = stderr(&failed).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{failed:?}");
    assert!(
        lines[1].starts_with("error: ") && is_clean(&lines[1]),
        "{failed:?}"
    );
    let jid = lines[0].split_whitespace().nth(1).unwrap().to_owned();

    let shown = jobs(&server.grpc, &["get", &jid]).await;
    assert_code(&shown, 0);
    let text = stdout(&shown);
    assert!(is_clean(&text), "{text:?}");
    let error = text.lines().find(|line| line.starts_with("error")).unwrap();
    assert!(error.contains("bo om line"), "{error:?}");
    let result = jobs(&server.grpc, &["result", &jid]).await;
    assert_one_error_line(&result);
    assert!(is_clean(&stderr(&result)), "{result:?}");
    // JSON keeps the text as it is (escaped by JSON itself).
    let shown = jobs(&server.grpc, &["get", &jid, "-o", "json"]).await;
    assert_eq!(json(&shown)["error"], message);

    let loaded = jobs_with(
        &server.grpc,
        &["data", "load", "-"],
        &[],
        Some(r#"[{"id": "esc", "na\u001bme": "a\u001b[2Jb\rc", "tags": ["x\u0007"]}]"#),
    )
    .await;
    assert_code(&loaded, 0);
    for args in [words("data get esc"), words("data search a")] {
        let output = jobs(&server.grpc, &args).await;
        assert_code(&output, 0);
        let text = stdout(&output);
        assert!(is_clean(&text), "{args:?}: {text:?}");
        assert!(text.contains("a [2Jb c"), "{args:?}: {text:?}");
    }
}

#[tokio::test]
async fn a_peer_that_is_no_jobs_grpc_server_fails_with_exit_4_and_a_hint() {
    let server = server().await;
    let peers = [
        // The REST gateway: the port most easily taken for the gRPC one.
        server.rest.clone(),
        format!("http://{}", support::http1_listener("400 Bad Request")),
        format!("http://{}", support::garbage_listener()),
        format!("http://{}", support::h2_listener(false)),
        format!("http://{}", support::h2_listener(true)),
    ];
    let jid = "0b0e2f0e-8a4c-4f65-9d2a-4f1e1d6d3c11";
    let records = DataFile::new("peer", r#"[{"id": "a"}]"#);
    let commands = [
        words("health"),
        words("list"),
        vec!["get", jid],
        vec!["watch", jid],
        words("submit --start 1 --end 2 --wait"),
        words("data search x"),
        vec!["data", "load", records.path()],
    ];
    for peer in &peers {
        for args in &commands {
            let mut all = vec!["--server", peer.as_str()];
            all.extend(args);
            // Well within the call timeout: the peer's answer is the failure.
            let output = jobs_within(&all, Duration::from_secs(8))
                .await
                .unwrap_or_else(|| panic!("{peer} {args:?}: still running after 8 s"));
            assert_code(&output, 4);
            assert_one_error_line(&output);
            let line = stderr(&output);
            assert!(
                line.contains(&format!("no Jobs gRPC server answered at {peer}"))
                    && line.contains("the gRPC port")
                    && line.contains("--server / JOBS_SERVER"),
                "{peer} {args:?}: {line}"
            );
        }
    }
}

#[tokio::test]
async fn submit_passes_its_limits_and_idempotency_key() {
    let server = server().await;
    let submit =
        words("submit --start 1 --end 3 --max-attempts 2 --timeout 90s --idempotency-key nightly");
    let first = jobs(&server.grpc, &submit).await;
    assert_code(&first, 0);
    let again = jobs(&server.grpc, &submit).await;
    assert_code(&again, 0);
    let jid = stdout(&first);
    assert_eq!(stdout(&again), jid, "the job the key first created");
    let listed = json(&jobs(&server.grpc, &words("list -o json")).await);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let job = json(&jobs(&server.grpc, &["get", &jid, "-o", "json"]).await);
    assert_eq!(
        (&job["max_attempts"], &job["timeout_ms"]),
        (&Value::from(2), &Value::from(90_000)),
        "{job}"
    );

    // The key for another job: the server refuses it.
    let reused = jobs(
        &server.grpc,
        &words("submit --start 1 --end 4 --idempotency-key nightly"),
    )
    .await;
    assert_code(&reused, 1);
    assert_one_error_line(&reused);
    assert!(stderr(&reused).contains("idempotency"), "{reused:?}");

    let nowhere = format!("127.0.0.1:{}", jobs_testkit::free_port());
    for (flag, value) in [
        ("--max-attempts", "0"),
        ("--max-attempts", "101"),
        ("--timeout", "0s"),
        ("--timeout", "1441m"),
        ("--timeout", "soon"),
        ("--idempotency-key", ""),
    ] {
        let output = jobs(
            &nowhere,
            &["submit", "--start", "1", "--end", "2", flag, value],
        )
        .await;
        assert_code(&output, 2);
        assert!(stderr(&output).contains(flag), "{output:?}");
    }
}

#[tokio::test]
async fn a_submit_the_server_cannot_confirm_says_how_to_repeat_it() {
    let redis = jobs_testkit::TestRedis::start();
    // create.lua's answer starts with the bulk string "ok": held back, once,
    // longer than the server waits for Redis, which has run the create.
    let proxy = jobs_testkit::FaultyProxy::start(
        redis.url(),
        jobs_testkit::Fault::Delay(Duration::from_secs(2)),
        |chunk| chunk.windows(8).any(|window| window == b"$2\r\nok\r\n"),
    );
    let server = support::server_on(redis, Some(proxy.url()), &["--redis-timeout-ms", "300"]).await;
    let submit = words("submit --start 1 --end 3 --idempotency-key nightly-7");
    let unconfirmed = jobs(&server.grpc, &submit).await;
    assert_code(&unconfirmed, 4);
    assert_one_error_line(&unconfirmed);
    let line = stderr(&unconfirmed);
    assert!(
        line.contains("may have been") && line.contains("the same --idempotency-key nightly-7"),
        "{line}"
    );

    // Repeated as the message says until Redis answers in time again: the
    // job the first submit made, and no other.
    let started = Instant::now();
    let jid = loop {
        let again = jobs(&server.grpc, &submit).await;
        if again.status.success() {
            break stdout(&again);
        }
        assert_code(&again, 4);
        assert!(started.elapsed() < Duration::from_secs(20), "{again:?}");
    };
    let listed = json(&jobs(&server.grpc, &words("list -o json")).await);
    let jids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["jid"].as_str().unwrap())
        .collect();
    assert_eq!(jids, [jid.as_str()]);
}

#[tokio::test]
async fn a_malformed_param_is_a_usage_error_before_anything_is_dialled() {
    // A listener that would see any connection the client made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    for param in ["foo", "=x"] {
        let output = jobs_within(
            &[
                "--server", &server, "submit", "--start", "1", "--end", "2", "--param", param,
            ],
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("{param}: still running"));
        assert_code(&output, 2);
        let text = stderr(&output);
        assert!(
            text.contains("--param") && text.contains(&format!("{param:?}")),
            "{text}"
        );
    }
    let accepted = listener.accept();
    assert!(
        accepted
            .as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock),
        "the client connected: {accepted:?}"
    );
}

#[tokio::test]
async fn get_shows_the_limits_and_every_attempt() {
    let server = server_with(&["--retry-backoff-ms", "10"]).await;
    // Fails its first attempt and succeeds on the second.
    let jid = finished_job(
        &server.grpc,
        &words("--start 1 --end 1 --kind fail --param message=boom --param fail_attempts=1"),
    )
    .await;

    let job = json(&jobs(&server.grpc, &["get", &jid, "-o", "json"]).await);
    assert_eq!(job["status"], "SUCCESS", "{job}");
    assert_eq!(
        (&job["attempts"], &job["max_attempts"], &job["timeout_ms"]),
        // The server's defaults.
        (&Value::from(2), &Value::from(3), &Value::from(7_200_000)),
        "{job}"
    );
    let history = job["history"].as_array().unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|attempt| {
            (
                attempt["number"].clone(),
                attempt["outcome"].clone(),
                attempt["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Value::from(1), Value::from("FAILED"), Value::from("boom")),
            (Value::from(2), Value::from("SUCCESS"), Value::Null),
        ],
        "{job}"
    );
    for attempt in history {
        assert!(!attempt["worker"].as_str().unwrap().is_empty(), "{attempt}");
        assert!(attempt["start_time"].is_string() && attempt["end_time"].is_string());
    }

    let text = stdout(&jobs(&server.grpc, &["get", &jid]).await);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"attempts  2"), "{text}");
    assert!(
        lines.contains(&"limits    3 attempts, 2h00m each"),
        "{text}"
    );
    let at = lines
        .iter()
        .position(|line| line.starts_with("history   #  OUTCOME  WORKER"))
        .unwrap_or_else(|| panic!("no history table: {text}"));
    let (failed, succeeded) = (lines[at + 1], lines[at + 2]);
    assert!(
        failed.starts_with("          1  FAILED ") && failed.ends_with("  boom"),
        "{text}"
    );
    assert!(succeeded.starts_with("          2  SUCCESS "), "{text}");
    assert_eq!(lines.len(), at + 3, "{text}");
    // Every row in the same columns.
    let worker_column = lines[at].find("WORKER").unwrap();
    let worker = history[0]["worker"].as_str().unwrap();
    assert_eq!(failed.find(worker), Some(worker_column), "{text}");
}
