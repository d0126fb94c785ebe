//! `jobs`: the command-line client of the Jobs service, over gRPC.
//!
//! `main` parses arguments and calls [`run`]; [`run`] returns the process
//! exit code, so every failure ends as one line on stderr and a documented
//! code, never a panic.
//!
//! # Layout
//!
//! - `cli`: the clap command tree and every help text (exit codes included).
//! - `commands`: one function per command; each connects, calls, and hands
//!   the answer to the printer.
//! - `bench`: `jobs bench`, the load generator: submit throughput and
//!   latency over gRPC and REST, drain rate, end-to-end latency.
//! - `follow`: following a job through `WatchJob`, and the progress bar.
//! - `load`: `data load`, a JSON array read incrementally and streamed to
//!   `LoadData`.
//! - `output`: text and JSON rendering, and the only writes to stdout.
//! - `auth`: the bearer token, added to every call by an interceptor.
//! - `errors`: the one mapping from a failure to its exit code and message.

mod auth;
mod bench;
mod cli;
mod commands;
mod errors;
mod follow;
mod load;
mod output;

pub use cli::Cli;
pub use commands::run;
