//! Serves the REST gateway's router over HTTP/1.1, one task per connection.
//!
//! Here rather than in `axum::serve`, which gives hyper no timer and so no
//! bound on how long a client may take to send its headers: a client that
//! sends half a request, or nothing, would hold its connection (and delay
//! shutdown) forever. With the timer, hyper closes a connection whose next
//! request's headers are not all in within the header timeout, which bounds
//! idle keep-alive connections too. The body's bound is the `Json`
//! extractor's, which can still answer (408).

use std::time::Duration;

use axum::{
    Router,
    serve::{Listener, ListenerExt},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// the requests in flight finish (each connection closes once it is idle)
/// and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    // HTTP/1.1 only, as axum is built: an HTTP/2 connection would have no
    // header timeout.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Responses are often small: Nagle's algorithm would hold them back for
    // the client's delayed acknowledgement.
    let mut listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            // Reap finished connections, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // axum's `accept` retries failed accepts (backing off when out of
            // file descriptors), so it never returns an error.
            accepted = Listener::accept(&mut listener) => accepted,
        };
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // A client that goes away, or is cut off by the header timeout,
            // is the client's affair, not the server's.
            if let Err(err) = result {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
