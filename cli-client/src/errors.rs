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
    /// The server (or the Redis behind it) cannot be reached.
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
#[derive(Debug, thiserror::Error)]
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
        || err.downcast_ref::<ConnectionLost>().is_some()
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
