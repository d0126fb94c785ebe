//! The commands and how each talks to the server.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, anyhow};
use jobs_proto::pb::{self, job_service_client::JobServiceClient};
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};

/// How long to wait for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Exit codes, documented in `--help`.
mod exit {
    pub(super) const JOB_FAILED: u8 = 1;
    pub(super) const NOT_FOUND: u8 = 3;
    pub(super) const UNREACHABLE: u8 = 4;
}

/// Command-line client of the Jobs service.
///
/// Exit codes: 0 ok, 1 failed (or the job failed), 2 usage, 3 not found,
/// 4 server unreachable.
#[derive(Debug, clap::Parser)]
#[command(name = "jobs", version)]
pub struct Cli {
    /// The Jobs API server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "JOBS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Submit a job and print its id.
    ///
    /// Example: jobs submit --start 1 --end 100
    Submit {
        /// First integer of the job's range.
        #[arg(long, allow_negative_numbers = true)]
        start: i64,
        /// Last integer of the job's range.
        #[arg(long, allow_negative_numbers = true)]
        end: i64,
        /// Which handler runs it: sum (default), sleep or fail.
        #[arg(long, default_value = "")]
        kind: String,
        /// A parameter of the kind, as key=value; the value is read as JSON
        /// when it parses, as a string otherwise. Repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Show one job as JSON.
    ///
    /// Example: jobs get 1b4e28ba-2fa1-11d2-883f-0016d3cca427
    Get {
        /// The job's id.
        jid: String,
    },
    /// Check that the server is up and serving.
    ///
    /// Example: jobs health
    Health,
}

/// Runs the command; returns the exit code after printing any error.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if code == exit::UNREACHABLE {
                eprintln!(
                    "error: cannot reach the Jobs server at {} ({err:#}); start it, or point --server / JOBS_SERVER at it",
                    cli.server
                );
            } else if let Some(status) = err.downcast_ref::<tonic::Status>() {
                eprintln!("error: {}", status.message());
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<tonic::transport::Error>().is_some() {
        return exit::UNREACHABLE;
    }
    match err.downcast_ref::<tonic::Status>().map(tonic::Status::code) {
        Some(Code::NotFound) => exit::NOT_FOUND,
        Some(Code::Unavailable) => exit::UNREACHABLE,
        _ => exit::JOB_FAILED,
    }
}

async fn connect(server: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|err| anyhow!("--server {server:?} is not a URL: {err}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    Ok(endpoint.connect().await?)
}

async fn execute(cli: &Cli) -> anyhow::Result<()> {
    let channel = connect(&cli.server).await?;
    match &cli.command {
        Command::Submit {
            start,
            end,
            kind,
            params,
        } => {
            let request = pb::CreateJobRequest {
                start: *start,
                end: *end,
                kind: kind.clone(),
                params: Some(parse_params(params)?),
                ..Default::default()
            };
            let job = JobServiceClient::new(channel)
                .create_job(request)
                .await?
                .into_inner()
                .job
                .context("the server returned no job")?;
            print_line(&job.jid);
        }
        Command::Get { jid } => {
            let job = JobServiceClient::new(channel)
                .get_job(pb::GetJobRequest { jid: jid.clone() })
                .await?
                .into_inner()
                .job
                .context("the server returned no job")?;
            print_line(&serde_json::to_string_pretty(&job_json(&job))?);
        }
        Command::Health => {
            let status = tonic_health_check(channel).await?;
            print_line(&status);
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // the CLI's output is its purpose
fn print_line(text: &str) {
    println!("{text}");
}

fn parse_params(pairs: &[String]) -> anyhow::Result<prost_types::Struct> {
    let mut params = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--param {pair:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
        params.insert(key.to_owned(), value);
    }
    Ok(jobs_proto::params_to_struct(params))
}

async fn tonic_health_check(channel: Channel) -> anyhow::Result<String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    match response.status() {
        ServingStatus::Serving => Ok("SERVING".to_owned()),
        other => Err(anyhow!("the server is {}", other.as_str_name())),
    }
}

/// A job as JSON, with the status and times spelled out.
fn job_json(job: &pb::Job) -> serde_json::Value {
    let time = |t: &Option<prost_types::Timestamp>| -> serde_json::Value {
        t.as_ref()
            .map_or(serde_json::Value::Null, |t| t.to_string().into())
    };
    let params = job
        .params
        .clone()
        .map(|params| jobs_proto::struct_to_params(params).unwrap_or_default())
        .unwrap_or_default();
    serde_json::json!({
        "jid": job.jid,
        "status": job.status().as_str_name(),
        "start": job.start,
        "end": job.end,
        "kind": job.kind,
        "params": params,
        "create_time": time(&job.create_time),
        "start_time": time(&job.start_time),
        "end_time": time(&job.end_time),
        "attempts": job.attempts,
        "error": job.error,
        "progress": job.progress,
    })
}
