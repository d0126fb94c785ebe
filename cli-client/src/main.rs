//! `jobs`: the command-line client of the Jobs service.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    jobs_cli::run(jobs_cli::Cli::parse()).await
}
