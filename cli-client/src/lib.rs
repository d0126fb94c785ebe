//! `jobs`: the command-line client of the Jobs service, over gRPC.
//!
//! `main` parses arguments and calls [`run`]; [`run`] returns the process
//! exit code, so every failure ends as one line on stderr and a documented
//! code, never a panic.

mod commands;

pub use commands::{Cli, run};
