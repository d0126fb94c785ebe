//! How a failure becomes one line on stderr and a documented exit code.
//!
//! Commands return `anyhow::Error`; [`exit_code`] is the one place that maps
//! an error to a code (see `EXIT_CODES_HELP`), and [`message`] the one place
//! that words it.

use std::{error::Error as _, time::Duration};

use tonic::Code;

use crate::{auth::BadToken, output::printable};

/// Exit codes; `cli::EXIT_CODES_HELP` documents them.
pub(crate) mod exit {
    /// The job failed or was cancelled, or any failure without its own code
    /// (a missing or wrong token among them).
    pub(crate) const FAILED: u8 = 1;
    /// A bad command line (clap exits with it too), or a token no header can
    /// carry.
    pub(crate) const USAGE: u8 = 2;
    /// No job with that id.
    pub(crate) const NOT_FOUND: u8 = 3;
    /// The server (or the Redis behind it) cannot be reached, or what
    /// answers at its address is no Jobs gRPC server.
    pub(crate) const UNREACHABLE: u8 = 4;
}

/// A job that ended without success, for the commands whose exit code says
/// how the job ended (`submit --wait`, `watch`, `result`).
#[derive(Debug)]
pub(crate) struct JobEnded {
    pub(crate) jid: String,
    /// The terminal status's name, as `jobs` prints it.
    pub(crate) status: &'static str,
    pub(crate) error: String,
}

impl std::fmt::Display for JobEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {} ended {}", self.jid, self.status)?;
        if !self.error.is_empty() {
            write!(f, ": {}", self.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for JobEnded {}

/// A gRPC call that got no answer in time: the server accepted the
/// connection but said nothing (a hung process, or not a Jobs server).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no answer within {}s", .0.as_secs())]
pub(crate) struct NoAnswer(pub(crate) Duration);

/// The connection broke while a job was being followed (`watch`,
/// `submit --wait`).
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the connection to the server while following job {jid} ({cause}); `jobs watch {jid}` follows it again"
)]
pub(crate) struct ConnectionLost {
    pub(crate) jid: String,
    pub(crate) cause: String,
}

/// The REST gateway (`jobs bench --mode rest`) refused the connection or
/// did not answer; exit code 4, like the gRPC server.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the REST gateway at {url} ({cause}); start it, or point --rest-url / JOBS_REST_URL at it"
)]
pub(crate) struct RestUnreachable {
    pub(crate) url: String,
    pub(crate) cause: String,
}

/// The REST gateway (`jobs bench --mode rest`) answered 503 or 504: it is
/// up, but its Redis is down or did not answer in time. Exit code 4, as
/// UNAVAILABLE and DEADLINE_EXCEEDED are over gRPC.
#[derive(Debug, thiserror::Error)]
#[error("the REST gateway at {url} is unavailable: it answered {status}: {detail}")]
pub(crate) struct RestUnavailable {
    pub(crate) url: String,
    pub(crate) status: http::StatusCode,
    /// The problem document's `detail`, or the body as it came.
    pub(crate) detail: String,
}

/// A create the server could not confirm (DEADLINE_EXCEEDED), or that got
/// no answer in time: the job may exist. Only a repeat under the same
/// idempotency key is safe, so the message names the flag rather than the
/// server's field.
#[derive(Debug, thiserror::Error)]
#[error("the server did not confirm in time that the job was created")]
pub(crate) struct Unconfirmed {
    /// `--idempotency-key`, when one was given.
    pub(crate) idempotency_key: Option<String>,
    /// The CLI's own wait, when it gave up on the answer rather than the
    /// server on Redis's.
    pub(crate) no_answer: Option<NoAnswer>,
}

/// `--server` / `JOBS_SERVER` is not an address `jobs` can dial; a usage
/// error (exit code 2), as clap's own are.
#[derive(Debug, thiserror::Error)]
#[error("invalid --server / JOBS_SERVER: {0}")]
pub(crate) struct BadServer(pub(crate) String);

/// The process exit code for a failure.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<BadToken>().is_some() || err.downcast_ref::<BadServer>().is_some() {
        return exit::USAGE;
    }
    if err.downcast_ref::<tonic::transport::Error>().is_some()
        || err.downcast_ref::<NoAnswer>().is_some()
        || err.downcast_ref::<RestUnreachable>().is_some()
        || err.downcast_ref::<RestUnavailable>().is_some()
        || err.downcast_ref::<ConnectionLost>().is_some()
        || err.downcast_ref::<Unconfirmed>().is_some()
        || not_grpc(err).is_some()
    {
        return exit::UNREACHABLE;
    }
    match err.downcast_ref::<tonic::Status>().map(tonic::Status::code) {
        Some(Code::NotFound) => exit::NOT_FOUND,
        // DEADLINE_EXCEEDED: a server, or a proxy before it, that gave up
        // waiting is as good as unreachable to the caller.
        Some(Code::Unavailable | Code::DeadlineExceeded) => exit::UNREACHABLE,
        // A refused token is a failure like a bad request: the server is
        // there, and the fix is in the caller's hands (the message says how).
        Some(Code::Unauthenticated) => exit::FAILED,
        _ => exit::FAILED,
    }
}

/// The one line printed on stderr for a failure talking to `server`;
/// `token_sent` says whether the calls carried a bearer token.
pub(crate) fn message(err: &anyhow::Error, server: &str, token_sent: bool) -> String {
    if connection_failed(err) {
        return format!(
            "error: cannot reach the Jobs server at {server} ({}); start it, or point --server / JOBS_SERVER at it",
            cause_chain(err)
        );
    }
    if let Some(cause) = not_grpc(err) {
        return format!(
            "error: no Jobs gRPC server answered at {server} ({}); is this the gRPC port? The REST gateway's port is not: point --server / JOBS_SERVER at the gRPC port (50051 unless configured)",
            one_line(&cause)
        );
    }
    if let Some(unconfirmed) = err.downcast_ref::<Unconfirmed>() {
        let what = match &unconfirmed.no_answer {
            Some(NoAnswer(after)) => format!(
                "the server at {server} did not answer within {}s, so the job may have been created",
                after.as_secs()
            ),
            None => format!("{unconfirmed}: it may have been"),
        };
        return match &unconfirmed.idempotency_key {
            Some(key) => format!(
                "error: {what}. Run the same submit again, with the same --idempotency-key {}, to be sure it is created once",
                one_line(key)
            ),
            None => format!(
                "error: {what}. Look for it (jobs list) before submitting again; a submit with --idempotency-key is safe to repeat"
            ),
        };
    }
    if let Some(NoAnswer(after)) = err.downcast_ref::<NoAnswer>() {
        return format!(
            "error: the server at {server} accepted the connection but did not answer within {}s; check that it is a running Jobs server, or point --server / JOBS_SERVER at one",
            after.as_secs()
        );
    }
    let status = err.downcast_ref::<tonic::Status>();
    if status.is_some_and(|status| status.code() == Code::Unauthenticated) {
        // The server's words name the header, which a CLI user never sees.
        return if token_sent {
            format!(
                "error: the server at {server} refused the token; check --token / JOBS_API_TOKEN"
            )
        } else {
            format!(
                "error: the server at {server} requires a token; pass --token or set JOBS_API_TOKEN"
            )
        };
    }
    let detail = match status {
        // The server's own words, without tonic's "status: …, message: …" frame.
        Some(status) if !status.message().is_empty() => status.message().to_owned(),
        _ => format!("{err:#}"),
    };
    format!("error: {}", one_line(&detail))
}

/// Whether stdout's reader has gone.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|err| err.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Whether the error is the connection itself failing (as opposed to the
/// server answering UNAVAILABLE, whose message says why).
fn connection_failed(err: &anyhow::Error) -> bool {
    if err.downcast_ref::<tonic::transport::Error>().is_some() {
        return true;
    }
    // A call on a connection that broke carries the transport error as its
    // source; a status the server sent has none.
    err.downcast_ref::<tonic::Status>()
        .is_some_and(|status| status.code() == Code::Unavailable && status.source().is_some())
}

/// Why the peer at `--server` is no Jobs gRPC server, when the error shows
/// that tonic, not the server, gave up on the call: the peer closed the
/// connection or spoke something other than HTTP/2 (an HTTP/1.1 server such
/// as the REST gateway, Redis), or answered HTTP without a gRPC status.
/// `None` for statuses the server sent, and for a connection that could
/// not be made at all ([`connection_failed`]).
fn not_grpc(err: &anyhow::Error) -> Option<String> {
    let status = err.downcast_ref::<tonic::Status>()?;
    if connection_failed(err) {
        return None;
    }
    // A status the server sent is read from its headers and has no source;
    // one tonic made from a transport or HTTP/2 error carries that error.
    if let Some(source) = status.source() {
        return Some(root_cause(source));
    }
    answered_without_grpc(status).then(|| status.message().to_owned())
}

/// Whether tonic made `status` up because the answer, though HTTP/2, was
/// no gRPC: no `grpc-status` (a plain HTTP server's 404, say), or a body
/// that is not gRPC's framing. Tonic's own words are the only sign of it.
pub(crate) fn answered_without_grpc(status: &tonic::Status) -> bool {
    const TONIC_WORDS: [&str; 2] = ["grpc-status header missing", "protocol error:"];
    status.source().is_none()
        && TONIC_WORDS
            .iter()
            .any(|words| status.message().starts_with(words))
}

/// The innermost cause ("connection closed", "frame with invalid size"):
/// the outer ones are tonic's and hyper's framing ("transport error").
fn root_cause(mut err: &(dyn std::error::Error + 'static)) -> String {
    while let Some(source) = err.source() {
        err = source;
    }
    err.to_string()
}

/// The error and its causes on one line, each said once (tonic's transport
/// errors repeat a cause: "tcp connect error: tcp connect error: …").
fn cause_chain(err: &anyhow::Error) -> String {
    let mut causes: Vec<String> = err.chain().map(ToString::to_string).collect();
    causes.dedup();
    one_line(&causes.join(": "))
}

/// Keeps the promise of one line, whatever a cause chain contains: the
/// server's words (a job's error among them) may hold escape sequences that
/// would rewrite the terminal, so control characters go too.
fn one_line(text: &str) -> String {
    printable(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    const SERVER: &str = "http://127.0.0.1:50051";

    #[test]
    fn statuses_tonic_made_up_mean_no_jobs_server_answered() {
        let made_up = [
            // An HTTP/2 server without gRPC: a 404, or a 200 with no status.
            Status::new(
                Code::Unimplemented,
                "grpc-status header missing, mapped from HTTP status code 404",
            ),
            Status::unknown("protocol error: missing grpc-status trailer"),
            // The connection broke under the call: it carries the cause.
            Status::from_error(Box::new(std::io::Error::other("connection closed"))),
        ];
        for status in made_up {
            let err = anyhow::Error::from(status);
            assert_eq!(exit_code(&err), exit::UNREACHABLE, "{err:?}");
            let line = message(&err, SERVER, false);
            assert!(
                line.starts_with(&format!("error: no Jobs gRPC server answered at {SERVER}"))
                    && line.contains("gRPC port"),
                "{line}"
            );
        }
        // The server's own words stay its own, with their own codes.
        for (status, code) in [
            (
                Status::internal("internal error; the server log has the details"),
                1,
            ),
            (Status::unknown("boom"), 1),
            (Status::unimplemented("no such method"), 1),
            (
                Status::unavailable("the job store (Redis) is unavailable"),
                4,
            ),
        ] {
            let err = anyhow::Error::from(status);
            assert_eq!(exit_code(&err), code, "{err:?}");
            assert!(!message(&err, SERVER, false).contains("gRPC port"));
        }
    }

    #[test]
    fn an_unconfirmed_create_says_how_to_repeat_it_safely() {
        let keyed = anyhow::Error::from(Unconfirmed {
            idempotency_key: Some("nightly".into()),
            no_answer: None,
        });
        assert_eq!(exit_code(&keyed), exit::UNREACHABLE);
        assert!(message(&keyed, SERVER, false).contains("with the same --idempotency-key nightly"));
        let bare = anyhow::Error::from(Unconfirmed {
            idempotency_key: None,
            no_answer: None,
        });
        assert_eq!(exit_code(&bare), exit::UNREACHABLE);
        let line = message(&bare, SERVER, false);
        assert!(
            line.contains("may have been") && line.contains("with --idempotency-key is safe"),
            "{line}"
        );
        // The CLI's own wait ran out: the request may have reached it too.
        let silent = anyhow::Error::from(Unconfirmed {
            idempotency_key: Some("nightly".into()),
            no_answer: Some(NoAnswer(std::time::Duration::from_secs(10))),
        });
        assert_eq!(exit_code(&silent), exit::UNREACHABLE);
        let line = message(&silent, SERVER, false);
        assert!(
            line.contains("did not answer within 10s")
                && line.contains("may have been created")
                && line.contains("--idempotency-key nightly"),
            "{line}"
        );
    }
}
