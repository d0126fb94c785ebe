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
    /// Its Redis (a test may stop a private one).
    pub redis: TestRedis,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the server with these extra `jobs-api` flags.
pub async fn server(flags: &[&str]) -> Server {
    server_on(TestRedis::start(), None, flags).await
}

/// Starts the server on `redis`, reaching it at `via` (a proxy in front of
/// it) when given.
pub async fn server_on(redis: TestRedis, via: Option<&str>, flags: &[&str]) -> Server {
    let mut args = vec![
        "jobs-api",
        "--dev",
        "--redis-url",
        via.unwrap_or(redis.url()),
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
        redis,
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

/// Runs `answer` on every connection to a new listener, on a thread of its
/// own, and returns the listener's address; it lives until the test process
/// ends.
fn listener(answer: impl Fn(std::net::TcpStream) + Copy + Send + 'static) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    address
}

/// A plain HTTP/1.1 server that answers every request with `status` (as
/// `503 Service Unavailable`) and a problem+json body, then closes the
/// connection. Returns its address.
pub fn http1_listener(status: &'static str) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    listener(move |mut stream| {
        let mut request = [0; 4096];
        if matches!(stream.read(&mut request), Ok(1..)) {
            let body = format!(r#"{{"status": {}, "detail": "{status}"}}"#, &status[..3]);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

/// A TCP server that speaks no protocol a client knows: it answers
/// whatever it reads with a Redis-like error line, and keeps the
/// connection open. Returns its address.
pub fn garbage_listener() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    listener(|mut stream| {
        let mut buffer = [0; 4096];
        while matches!(stream.read(&mut buffer), Ok(1..)) {
            if stream.write_all(b"-ERR unknown command\r\n").is_err() {
                return;
            }
        }
    })
}

/// An HTTP/2 server that is no gRPC server: it answers every request with
/// HTTP status 200 (`ok`) or 404, no body and no `grpc-status`, as a plain
/// HTTP/2 server would. Returns its address.
pub fn h2_listener(ok: bool) -> std::net::SocketAddr {
    // An indexed field of HPACK's static table: 8 is `:status 200`, 13
    // `:status 404`.
    let status = 0x80 | if ok { 8 } else { 13 };
    listener(move |stream| answer_h2(stream, status))
}

/// Just enough HTTP/2 (RFC 9113) to answer requests: the server's
/// SETTINGS, an ACK of the client's, and to each request's HEADERS a
/// HEADERS frame that ends the stream, holding the one HPACK byte `status`.
fn answer_h2(mut stream: std::net::TcpStream, status: u8) {
    use std::io::{Read, Write};
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
    let frame = |kind: u8, flags: u8, stream_id: u32, payload: &[u8]| {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend(stream_id.to_be_bytes());
        frame.extend(payload);
        frame
    };
    let mut preface = [0; 24];
    if stream.read_exact(&mut preface).is_err()
        || stream.write_all(&frame(SETTINGS, 0, 0, &[])).is_err()
    {
        return;
    }
    let mut header = [0; 9];
    while stream.read_exact(&mut header).is_ok() {
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; length];
        if stream.read_exact(&mut payload).is_err() {
            return;
        }
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let reply = match header[3] {
            SETTINGS if header[4] & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
            HEADERS => frame(HEADERS, END_STREAM_AND_HEADERS, stream_id, &[status]),
            _ => continue,
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}
