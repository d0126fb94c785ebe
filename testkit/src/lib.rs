//! Test support: a real Redis for each test, and a key prefix of its own.
//!
//! When `REDIS_URL` is set, tests share that server and stay apart by prefix;
//! otherwise each [`TestRedis`] starts a private `redis-server` on a free port
//! and stops it when dropped. Either way the test's keys are deleted at the
//! end, so a shared Redis keeps no trace of the run.

use rustix::process::{Pid, Signal};
use std::{
    net::TcpListener,
    ops::{Deref, DerefMut},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A Redis server and a key prefix that belong to one test.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
    server: Option<Child>,
    /// True for a private server (running or stopped): its keys go with it.
    private: bool,
    /// For a persistent private server: its port and data folder.
    persistent: Option<(u16, std::path::PathBuf)>,
}

impl TestRedis {
    /// `REDIS_URL`'s server if set, otherwise a private one.
    pub fn start() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Self::with_url(url, None),
            _ => Self::private(),
        }
    }

    /// Always a private `redis-server` (for tests that stop it, or that
    /// count the commands it runs).
    pub fn private() -> Self {
        let port = free_port();
        let server = spawn_server(port, &["--save", "", "--appendonly", "no"]);
        Self::with_url(format!("redis://127.0.0.1:{port}"), Some(server))
    }

    /// A private `redis-server` with the append-only file on (fsync on every
    /// write), in a folder of its own, for tests that restart it and expect
    /// every acknowledged write to survive.
    pub fn private_persistent() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("jobs-test-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Redis data folder");
        let server = spawn_persistent(port, &dir);
        let mut redis = Self::with_url(format!("redis://127.0.0.1:{port}"), Some(server));
        redis.persistent = Some((port, dir));
        redis
    }

    /// Stops the private server (SIGTERM, so it finishes its writes).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // A server that has already exited cannot take the signal; the
            // wait reaps it either way.
            let _ = signal(&server, Signal::TERM);
            let _ = server.wait();
        }
    }

    /// Suspends (`true`) or resumes (`false`) the private server's process,
    /// as a hung Redis would be: connections stay open, nothing is answered.
    pub fn freeze(&self, frozen: bool) {
        let server = self.server.as_ref().expect("freeze needs a private server");
        let (sig, name) = if frozen {
            (Signal::STOP, "SIGSTOP")
        } else {
            (Signal::CONT, "SIGCONT")
        };
        signal(server, sig).unwrap_or_else(|err| panic!("send {name} to the test Redis: {err}"));
    }

    /// Starts a stopped persistent server again on the same port and data.
    pub fn restart(&mut self) {
        let (port, dir) = self
            .persistent
            .clone()
            .expect("restart needs private_persistent()");
        self.stop();
        self.server = Some(spawn_persistent(port, &dir));
        self.wait_until_ready();
    }

    fn with_url(url: String, server: Option<Child>) -> Self {
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let redis = Self {
            url,
            prefix,
            private: server.is_some(),
            server,
            persistent: None,
        };
        redis.wait_until_ready();
        redis
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A plain connection, for a test that inspects keys directly.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .expect("connect to the test Redis")
    }

    /// Puts the private server out of memory: every command that needs
    /// memory is refused (OOM) from now on.
    pub fn out_of_memory(&self) {
        assert!(
            self.server.is_some(),
            "out_of_memory needs a private server"
        );
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(1)
            .query::<()>(&mut self.connection())
            .expect("CONFIG SET maxmemory");
    }

    /// Zeroes the server's command statistics (`CONFIG RESETSTAT`). Only
    /// meaningful on a [`TestRedis::private`] server: on a shared one other
    /// tests' commands count too.
    pub fn reset_command_stats(&self) {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query::<()>(&mut self.connection())
            .expect("reset the test Redis's statistics");
    }

    /// How many times the server has run `command` (lower case, as in
    /// `INFO commandstats`; commands run by scripts included) since its
    /// statistics were last reset.
    pub fn command_calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("read the test Redis's statistics");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().expect("a count of calls"))
    }

    /// The keys under this test's prefix.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.connection();
        let keys: redis::Iter<'_, String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}:*", self.prefix))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)
            .expect("scan the test's keys");
        keys.collect::<Result<_, _>>()
            .expect("scan the test's keys")
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = redis::Client::open(self.url.as_str())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            match ping {
                Ok(_) => return,
                Err(err) if Instant::now() > deadline => {
                    panic!("Redis at {} did not answer: {err}", self.url)
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.private {
            // Stopped by the test, maybe: then there is nothing to clean.
            if let Some(server) = &mut self.server {
                let _ = server.kill();
                let _ = server.wait();
            }
            if let Some((_, dir)) = &self.persistent {
                let _ = std::fs::remove_dir_all(dir);
            }
            return;
        }
        let keys = self.keys();
        if !keys.is_empty() {
            let mut conn = self.connection();
            for chunk in keys.chunks(500) {
                let _ = redis::cmd("DEL").arg(chunk).query::<()>(&mut conn);
            }
        }
    }
}

/// Signals `child` from this process, so the tests need no `kill` binary.
fn signal(child: &Child, sig: Signal) -> rustix::io::Result<()> {
    rustix::process::kill_process(Pid::from_child(child), sig)
}

fn spawn_server(port: u16, args: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (is it installed? Debian: apt-get install redis-server)")
}

fn spawn_persistent(port: u16, dir: &std::path::Path) -> Child {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    spawn_server(
        port,
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir,
        ],
    )
}

/// What a [`FaultyProxy`] does with a chunk of bytes from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Forward it (and what follows on that connection) this much later.
    Delay(Duration),
    /// Drop it and close the connection, as a Redis that went away after
    /// running the command would.
    Cut,
}

/// A TCP proxy in front of a test's Redis that does to the first chunk from
/// Redis matching a predicate what a flaky network or a stalled server
/// would, and passes everything else; for tests of answers that are lost or
/// late. It runs on threads of its own, so a test that blocks its async
/// runtime does not stall it.
#[derive(Debug)]
pub struct FaultyProxy {
    url: String,
}

impl FaultyProxy {
    /// Forwards to `redis` (a `redis://host:port` URL); `fault` is applied
    /// to the first chunk from Redis for which `matches` holds, once.
    pub fn start(redis: &str, fault: Fault, matches: fn(&[u8]) -> bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!(
            "redis://{}",
            listener.local_addr().expect("the proxy's address")
        );
        let upstream = redis.trim_start_matches("redis://").to_owned();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(mut client_in), Ok(mut server_in)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let (mut client_out, mut server_out) = (client, server);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut client_in, &mut server_out);
                });
                let done = done.clone();
                thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(read @ 1..) = server_in.read(&mut buffer) {
                        let chunk = &buffer[..read];
                        if matches(chunk) && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            match fault {
                                Fault::Pass => {}
                                Fault::Delay(delay) => thread::sleep(delay),
                                Fault::Cut => {
                                    let _ = client_out.shutdown(std::net::Shutdown::Both);
                                    let _ = server_in.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                            }
                        }
                        if client_out.write_all(chunk).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url }
    }

    /// The URL to reach Redis through the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port")
}

/// Reading a metrics scrape (Prometheus or OpenMetrics text) in tests.
pub mod metrics {
    use std::collections::BTreeMap;

    /// Every sample of one scrape, by series: the metric name with its
    /// labels exactly as printed, e.g. `jobs_created_total{kind="sum"}`.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Scrape(BTreeMap<String, f64>);

    impl Scrape {
        /// Parses the text of a scrape. Panics on a sample line it cannot
        /// read: a test should fail on a malformed exposition.
        pub fn parse(text: &str) -> Self {
            let mut samples = BTreeMap::new();
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
                let value: f64 = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    other => other
                        .parse()
                        .unwrap_or_else(|_| panic!("not a sample value: {line:?}")),
                };
                samples.insert(series.to_owned(), value);
            }
            Self(samples)
        }

        /// The value of `series`; 0 when the scrape lacks it (a counter
        /// not yet incremented).
        pub fn value(&self, series: &str) -> f64 {
            self.0.get(series).copied().unwrap_or(0.0)
        }

        /// Whether any sample belongs to the metric `name` (any labels,
        /// any suffix such as `_total` or `_bucket`).
        pub fn has_metric(&self, name: &str) -> bool {
            self.0.keys().any(|series| series.starts_with(name))
        }

        /// The samples whose series starts with `prefix`.
        pub fn matching<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
            self.0
                .iter()
                .filter(move |(series, _)| series.starts_with(prefix))
                .map(|(series, value)| (series.as_str(), *value))
        }
    }
}

/// A process a test started (a server binary), killed when dropped unless
/// it has exited: a test that fails half-way leaves nothing running.
#[derive(Debug)]
pub struct Spawned(Child);

impl Spawned {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// Sends `signal`, written as `kill` takes it (`-TERM`, `-STOP`, ...),
    /// and fails the test if it could not be delivered.
    pub fn signal(&self, signal: &str) {
        let sig = match signal.trim_start_matches('-') {
            "TERM" => Signal::TERM,
            "KILL" => Signal::KILL,
            "INT" => Signal::INT,
            "STOP" => Signal::STOP,
            "CONT" => Signal::CONT,
            other => panic!("no such signal in the test kit: {other}"),
        };
        if let Err(err) = self::signal(&self.0, sig) {
            panic!("kill {signal} {} failed: {err}", self.0.id());
        }
    }

    /// Sends SIGTERM and waits for the process to exit, failing the test
    /// after `limit`: a server must stop by itself when asked to. It waits
    /// without blocking the test's runtime, whose clients the server's
    /// graceful stop may be waiting on.
    pub async fn terminate_within(&mut self, limit: Duration) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("the process can be waited on") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not stop within {limit:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Deref for Spawned {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
