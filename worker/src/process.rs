//! What every Jobs binary does at its edge: turn signals into one shutdown
//! token. (Logging and span export: [`crate::telemetry`].)

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM. A second one
/// ends the process at once, with the shell's code for that signal (130 or
/// 143): a graceful stop can wait as long as Redis is away (outcomes are
/// kept until they are recorded), and someone pressing Ctrl-C again has
/// decided not to wait. Whatever was not yet recorded then goes back to the
/// queue when its lease lapses, as after a crash.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let (first, _) = signals.next().await;
        tracing::info!(
            signal = first,
            "shutting down (a second signal stops at once)"
        );
        trigger.cancel();
        let (second, code) = signals.next().await;
        tracing::warn!(
            signal = second,
            "second signal: stopping now; jobs not yet recorded go back to the queue when their leases lapse"
        );
        std::process::exit(code);
    });
    token
}

/// The signals that stop a process, listened to from the start so that a
/// second one is never missed.
#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next signal's name and the exit code that reports it.
    async fn next(&mut self) -> (&'static str, i32) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => ("SIGINT", 130),
            () = recv(&mut self.terminate) => ("SIGTERM", 143),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Self {
        Self
    }

    async fn next(&mut self) -> (&'static str, i32) {
        let _ = tokio::signal::ctrl_c().await;
        ("Ctrl-C", 130)
    }
}
