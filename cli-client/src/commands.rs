//! The commands: one function each, talking gRPC to the server and handing
//! what it answers to [`Printer`].

use std::{future::Future, io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::{Context, anyhow};
use clap::CommandFactory;
use clap_complete::Shell;
use jobs_proto::pb::{
    self, data_service_client::DataServiceClient, job_service_client::JobServiceClient,
};
use serde_json::{Value, json};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{
    auth::BearerToken,
    bench,
    cli::{self, Cli, Command, DataCommand, StatusFilter, SubmitArgs},
    errors::{self, BadServer, JobEnded, NoAnswer, Unconfirmed},
    follow::{Bar, follow},
    load,
    output::{Printer, job_json, outcome_json, result_json, status_name, stderr_line, value_text},
};

/// How long to wait for the server to accept a connection: an unreachable
/// server fails within seconds, not at the OS's TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a unary call (and the opening of a watch) may wait for its
/// answer. The server answers in milliseconds, and in a few seconds at worst
/// (its own Redis timeout is 2 s); a server that accepted the connection and
/// then says nothing fails the command rather than hanging it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings: a peer that stops answering them for
/// `KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT` is dead, which ends a watch or
/// a load (calls with no time limit of their own) instead of leaving them
/// waiting forever on a vanished server.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most jobs one `ListJobs` page may hold (the server's limit).
const MAX_PAGE_SIZE: u32 = 1000;

/// A channel that carries the bearer token on every call.
pub(crate) type Authed = InterceptedService<Channel, BearerToken>;

/// A `JobService` client.
pub(crate) type JobsClient = JobServiceClient<Authed>;

/// A `DataService` client.
pub(crate) type DataClient = DataServiceClient<Authed>;

/// Runs the command; returns the exit code after printing any error as one
/// line on stderr.
pub async fn run(cli: Cli) -> ExitCode {
    let printer = Printer::new(cli.output);
    // `completions` dials nothing, so it works whatever JOBS_SERVER and
    // JOBS_API_TOKEN hold.
    let dials = !matches!(cli.command, Command::Completions { .. });
    let server = match cli::parse_http_url(&cli.server) {
        Ok(server) => server,
        Err(reason) if dials => return fail(&BadServer(reason).into(), &cli.server, false),
        Err(_) => cli.server,
    };
    let token = match BearerToken::new(cli.token.as_deref()) {
        Ok(token) => token,
        Err(err) if dials => return fail(&err.into(), &server, false),
        Err(_) => BearerToken::none(),
    };
    let api = Api { server, token };
    match execute(cli.command, &api, printer).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout has gone (`jobs list | head -1`): nothing
        // is wrong and nobody is left to tell.
        Err(err) if errors::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => fail(&err, &api.server, api.token.is_set()),
    }
}

/// Prints the failure as one line on stderr and returns its exit code.
fn fail(err: &anyhow::Error, server: &str, token_sent: bool) -> ExitCode {
    stderr_line(&errors::message(err, server, token_sent));
    ExitCode::from(errors::exit_code(err))
}

/// Awaits a unary call's answer for at most [`CALL_TIMEOUT`]. Streams are
/// not cut off this way: they may rightly last long, and keep-alive pings
/// watch over them instead.
pub(crate) async fn answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answered) => Ok(answered?.into_inner()),
        Err(_) => Err(NoAnswer(CALL_TIMEOUT).into()),
    }
}

async fn execute(command: Command, api: &Api, printer: Printer) -> anyhow::Result<()> {
    match command {
        Command::Submit(args) => submit(api, args, printer).await,
        Command::Get { jid } => get(api, jid, printer).await,
        Command::List { status, limit } => list(api, status, limit, printer).await,
        Command::Result { jid } => result(api, jid, printer).await,
        Command::Watch { jid } => watch(api, &jid, printer).await,
        Command::Cancel { jid } => cancel(api, jid, printer).await,
        Command::Health => health(api, printer).await,
        Command::Data(DataCommand::Load { file }) => data_load(api, &file, printer).await,
        Command::Data(DataCommand::Search { text, limit }) => {
            data_search(api, text, limit, printer).await
        }
        Command::Data(DataCommand::Get { id }) => data_get(api, id, printer).await,
        Command::Bench(args) => bench::run(api, &args, printer).await,
        Command::Completions { shell } => completions(shell, printer),
    }
}

/// The server and what every call to it carries.
#[derive(Debug)]
pub(crate) struct Api {
    server: String,
    token: BearerToken,
}

impl Api {
    /// The bearer token, for calls that do not go through gRPC.
    pub(crate) fn token(&self) -> &BearerToken {
        &self.token
    }

    /// The REST gateway's URL when `--rest-url` is not given: its default
    /// port on the gRPC server's host, so pointing `--server` at another
    /// machine does not leave the REST bench hitting this one.
    pub(crate) fn default_rest_url(&self) -> String {
        let host = self
            .server
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned))
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        format!("http://{host}:5000")
    }

    async fn connect(&self) -> anyhow::Result<Authed> {
        // `--server` was checked when parsed; this cannot fail but is not
        // worth a panic.
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|err| anyhow!("--server {:?} is not a URL: {err}", self.server))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect().await?;
        Ok(InterceptedService::new(channel, self.token.clone()))
    }

    // Answers are not capped at tonic's default 4 MiB: a page of 1000
    // jobs with large params, or the ids of a million-record load, is more,
    // and the server already bounds what it sends.
    pub(crate) async fn jobs(&self) -> anyhow::Result<JobsClient> {
        Ok(JobServiceClient::new(self.connect().await?).max_decoding_message_size(usize::MAX))
    }

    async fn data(&self) -> anyhow::Result<DataClient> {
        Ok(DataServiceClient::new(self.connect().await?).max_decoding_message_size(usize::MAX))
    }
}

async fn submit(api: &Api, args: SubmitArgs, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let timeout = args
        .timeout
        .map(prost_types::Duration::try_from)
        .transpose()
        .context("--timeout does not fit a protobuf Duration")?;
    let request = pb::CreateJobRequest {
        start: args.start,
        end: args.end,
        // Empty asks the server for its default kind, and 0 and no timeout
        // for its default limits.
        kind: args.kind.unwrap_or_default(),
        params: Some(jobs_proto::params_to_struct(
            args.params.into_iter().collect(),
        )),
        max_attempts: args.max_attempts.unwrap_or_default(),
        timeout,
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
    };
    let job = answer(client.create_job(request))
        .await
        .map_err(|err| unconfirmed(err, args.idempotency_key))?
        .job
        .context("the server returned no job")?;
    if !args.wait {
        if printer.json() {
            return printer.document(&job_json(&job));
        }
        return Ok(printer.line(&job.jid)?);
    }
    // The id on stderr keeps stdout for the result, and still tells the
    // user which job to look up if they stop waiting.
    if !printer.json() {
        stderr_line(&format!("job {} submitted", job.jid));
    }
    let bar = Bar::for_terminal();
    let followed = follow(&mut client, &job.jid, |job| {
        bar.update(job);
        Ok(())
    })
    .await;
    bar.clear();
    followed?;
    let outcome = fetch_result(&mut client, job.jid).await?;
    report_outcome(&outcome, printer)
}

/// A create that failed with DEADLINE_EXCEEDED, or got no answer within the
/// CLI's own wait, may have been made: it becomes [`Unconfirmed`], whose
/// message says how to repeat it safely.
fn unconfirmed(err: anyhow::Error, idempotency_key: Option<String>) -> anyhow::Error {
    if let Some(&no_answer) = err.downcast_ref::<NoAnswer>() {
        return Unconfirmed {
            idempotency_key,
            no_answer: Some(no_answer),
        }
        .into();
    }
    let deadline = err
        .downcast_ref::<tonic::Status>()
        .is_some_and(|status| status.code() == tonic::Code::DeadlineExceeded);
    if deadline {
        return Unconfirmed {
            idempotency_key,
            no_answer: None,
        }
        .into();
    }
    err
}

async fn get(api: &Api, jid: String, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let job = answer(client.get_job(pb::GetJobRequest { jid }))
        .await?
        .job
        .context("the server returned no job")?;
    if printer.json() {
        return printer.document(&job_json(&job));
    }
    for line in printer.job_text(&job) {
        printer.line(&line)?;
    }
    Ok(())
}

/// Pages through `ListJobs` until `limit` jobs or the last page.
async fn list(
    api: &Api,
    status: Option<StatusFilter>,
    limit: u32,
    printer: Printer,
) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let status = status.map_or(pb::JobStatus::Unspecified, pb::JobStatus::from);
    let jobs = collect_pages(limit, async |page_size, page_token| {
        let request = pb::ListJobsRequest {
            page_size,
            page_token,
            status: status.into(),
        };
        let page = answer(client.list_jobs(request)).await?;
        Ok((page.jobs, page.next_page_token))
    })
    .await?;
    print_listing(printer, &jobs, job_json, "no jobs", |jobs| {
        printer.job_table(jobs)
    })
}

/// Asks `fetch` for pages (page size, page token -> items, next token)
/// until `limit` items or the last page.
async fn collect_pages<T>(
    limit: u32,
    mut fetch: impl AsyncFnMut(i32, String) -> anyhow::Result<(Vec<T>, String)>,
) -> anyhow::Result<Vec<T>> {
    let limit = limit as usize;
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let wanted = limit
            .saturating_sub(items.len())
            .min(MAX_PAGE_SIZE as usize);
        let (page, next) = fetch(i32::try_from(wanted).unwrap_or(i32::MAX), page_token).await?;
        items.extend(page);
        page_token = next;
        if page_token.is_empty() || items.len() >= limit {
            break;
        }
    }
    items.truncate(limit);
    Ok(items)
}

/// Prints a listing: a JSON array, a line saying there is nothing, or the
/// table.
fn print_listing<T>(
    printer: Printer,
    items: &[T],
    to_json: impl Fn(&T) -> Value,
    nothing: &str,
    table: impl FnOnce(&[T]) -> Vec<String>,
) -> anyhow::Result<()> {
    if printer.json() {
        return printer.document(&items.iter().map(to_json).collect());
    }
    if items.is_empty() {
        return Ok(printer.line(nothing)?);
    }
    for line in table(items) {
        printer.line(&line)?;
    }
    Ok(())
}

async fn result(api: &Api, jid: String, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let outcome = fetch_result(&mut client, jid).await?;
    report_outcome(&outcome, printer)
}

async fn fetch_result(
    client: &mut JobsClient,
    jid: String,
) -> anyhow::Result<pb::GetJobResultResponse> {
    answer(client.get_job_result(pb::GetJobResultRequest { jid })).await
}

/// Prints a finished job's outcome: the result on success; a job that failed
/// or was cancelled becomes an error (exit code 1, its error on stderr),
/// after its JSON document when the output is JSON.
fn report_outcome(outcome: &pb::GetJobResultResponse, printer: Printer) -> anyhow::Result<()> {
    let succeeded = outcome.status() == pb::JobStatus::Success;
    if printer.json() {
        printer.document(&outcome_json(outcome))?;
    } else if succeeded {
        printer.line(&value_text(&result_json(outcome)))?;
    }
    if succeeded {
        return Ok(());
    }
    Err(JobEnded {
        jid: outcome.jid.clone(),
        status: status_name(outcome.status()),
        error: outcome.error.clone(),
    }
    .into())
}

/// Follows a job: JSON lines; or, when stdout and stderr are both a
/// terminal, a progress bar and the final state; otherwise a line per
/// update (`jobs watch ID | grep …` at a terminal gets every update).
async fn watch(api: &Api, jid: &str, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let bar = if printer.json() || !std::io::stdout().is_terminal() {
        Bar::none()
    } else {
        Bar::for_terminal()
    };
    let followed = follow(&mut client, jid, |job| {
        if printer.json() {
            printer.json_line(&job_json(job))
        } else if bar.is_drawn() {
            bar.update(job);
            Ok(())
        } else {
            Ok(printer.line(&printer.update_text(job))?)
        }
    })
    .await;
    bar.clear();
    let last = followed?;
    if bar.is_drawn() {
        printer.line(&printer.update_text(&last))?;
    }
    if last.status() == pb::JobStatus::Success {
        return Ok(());
    }
    Err(JobEnded {
        jid: last.jid.clone(),
        status: status_name(last.status()),
        error: last.error,
    }
    .into())
}

async fn cancel(api: &Api, jid: String, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.jobs().await?;
    let job = answer(client.cancel_job(pb::CancelJobRequest { jid }))
        .await?
        .job
        .context("the server returned no job")?;
    if printer.json() {
        return printer.document(&job_json(&job));
    }
    let text = if job.status() == pb::JobStatus::Cancelled {
        format!("{} {}", job.jid, printer.status(job.status(), 0))
    } else {
        format!(
            "{jid} {status}: cancellation requested; its worker stops it shortly (jobs watch {jid})",
            jid = job.jid,
            status = printer.status(job.status(), 0)
        )
    };
    Ok(printer.line(&text)?)
}

async fn health(api: &Api, printer: Printer) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut client = HealthClient::new(api.connect().await?);
    let response = answer(client.check(HealthCheckRequest {
        service: String::new(),
    }))
    .await?;
    let status = response.status();
    if status != ServingStatus::Serving {
        // Up but not serving is "unavailable" to a caller: exit code 4.
        return Err(tonic::Status::unavailable(format!(
            "the server at {} reports {}",
            api.server,
            status.as_str_name()
        ))
        .into());
    }
    if printer.json() {
        return printer.document(&json!({ "status": "SERVING", "server": api.server }));
    }
    Ok(printer.line("SERVING")?)
}

async fn data_load(api: &Api, file: &str, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.data().await?;
    let loaded = load::load(&mut client, file).await?;
    if printer.json() {
        return printer.document(&json!({ "loaded": loaded.loaded, "ids": loaded.ids }));
    }
    for line in printer.loaded_text(&loaded) {
        printer.line(&line)?;
    }
    Ok(())
}

/// Pages through `ListData` with the search until `limit` records or the
/// last page.
async fn data_search(api: &Api, text: String, limit: u32, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.data().await?;
    let records = collect_pages(limit, async |page_size, page_token| {
        let request = pb::ListDataRequest {
            page_size,
            page_token,
            search: text.clone(),
        };
        let page = answer(client.list_data(request)).await?;
        Ok((page.records, page.next_page_token))
    })
    .await?;
    let records = records
        .into_iter()
        .map(jobs_proto::struct_to_params)
        .collect::<Result<Vec<_>, _>>()?;
    print_listing(
        printer,
        &records,
        |record| Value::Object(record.clone()),
        "no matching records",
        |records| printer.record_table(records),
    )
}

async fn data_get(api: &Api, id: String, printer: Printer) -> anyhow::Result<()> {
    let mut client = api.data().await?;
    let record = answer(client.get_data(pb::GetDataRequest { id }))
        .await?
        .record
        .context("the server returned no record")?;
    let record = jobs_proto::struct_to_params(record)?;
    if printer.json() {
        return printer.document(&Value::Object(record));
    }
    for line in printer.record_text(&record) {
        printer.line(&line)?;
    }
    Ok(())
}

fn completions(shell: Shell, printer: Printer) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "jobs", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    if printer.json() {
        return printer.document(&json!({ "shell": shell.to_string(), "script": script }));
    }
    Ok(printer.line(script.trim_end())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_gateway_defaults_to_the_servers_host() {
        let api = |server: &str| Api {
            server: server.to_owned(),
            token: BearerToken::new(None).unwrap(),
        };
        assert_eq!(
            api("http://10.1.2.3:50051").default_rest_url(),
            "http://10.1.2.3:5000"
        );
        assert_eq!(
            api("http://jobs.internal").default_rest_url(),
            "http://jobs.internal:5000"
        );
        assert_eq!(
            api("http://[::1]:50051").default_rest_url(),
            "http://[::1]:5000"
        );
    }
}
