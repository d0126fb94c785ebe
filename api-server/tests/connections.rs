//! The REST gateway's connections over raw TCP: a client that sends half a
//! request, or nothing at all, cannot hold a connection for longer than the
//! configured bounds (slowloris).

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::time::{Duration, Instant};

use support::{TestApp, within};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The bounds the tests set, low so they run quickly.
const FLAGS: &[&str] = &[
    "--http-header-timeout-ms",
    "300",
    "--http-body-timeout-ms",
    "300",
];

/// Far above the bounds: a connection still open by then is held for good.
const GUARD: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.http_base().strip_prefix("http://").unwrap();
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    within(GUARD, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    received
}

#[tokio::test]
async fn a_client_sending_half_its_headers_is_cut_off() {
    let app = TestApp::start_with(FLAGS).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    let began = Instant::now();
    read_until_closed(&mut stream).await;
    assert!(
        began.elapsed() >= Duration::from_millis(200),
        "closed only once the bound passed, after {:?}",
        began.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_before_and_after_a_request() {
    let app = TestApp::start_with(FLAGS).await;
    // Nothing sent at all.
    let mut silent = connect(&app).await;
    assert!(read_until_closed(&mut silent).await.is_empty());

    // One request answered, then the connection kept alive but idle.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let received = String::from_utf8(read_until_closed(&mut idle).await).unwrap();
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_shorter_than_its_length_gets_408_then_the_connection_closes() {
    let app = TestApp::start_with(FLAGS).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"start\":1",
        )
        .await
        .unwrap();
    let received = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    let lower = received.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{received}"
    );
    assert!(received.contains("\"status\":408"), "{received}");
    // Nothing half-sent was stored.
    let listed = app.http("GET", "/jobs", None).await.json();
    assert_eq!(listed, serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_slow_but_steady_request_within_the_bounds_is_served() {
    let app = TestApp::start_with(&[
        "--http-header-timeout-ms",
        "2000",
        "--http-body-timeout-ms",
        "2000",
    ])
    .await;
    let mut stream = connect(&app).await;
    let body = br#"{"start":1,"end":2}"#;
    let head = format!(
        "POST /jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body[5..]).await.unwrap();
    let received = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    assert!(received.starts_with("HTTP/1.1 201"), "{received}");
    app.stop().await;
}
