//! `jobs bench`: a load generator for a running deployment.
//!
//! - grpc / rest: `--concurrency` tasks submit as fast as answers come back,
//!   until `--count` jobs or `--duration`; each request's latency goes into
//!   the task's own HdrHistogram, merged at the end (no lock on the hot
//!   path).
//! - drain: a backlog submitted in batches, then waited for; the rate comes
//!   from the jobs' own start and end times (the server's clock), so how
//!   quickly the bench notices the end does not count.
//! - e2e: one job at a time, from just before CreateJob until WatchJob shows
//!   it ended.
//!
//! Every loop is bounded in count and in time.

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jobs_proto::pb;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    cli::{BenchArgs, BenchMode},
    commands::{Api, CALL_TIMEOUT, JobsClient, answer},
    errors::{RestUnavailable, RestUnreachable},
    follow::follow,
    output::{Printer, status_name},
};

/// The largest latency recorded: one minute, in microseconds. Slower
/// requests are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Jobs per CreateJobs call when the drain builds its backlog (the server's
/// batch limit).
const DRAIN_BATCH: usize = 1000;

/// Jobs per ListJobs page when the drain collects its jobs' times.
const LIST_PAGE: i32 = 1000;

/// How often the drain looks again for jobs not finished yet.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// The job every mode submits: cheap, so the numbers measure the service.
fn bench_job() -> pb::CreateJobRequest {
    pb::CreateJobRequest {
        start: 1,
        end: 100,
        kind: "sum".into(),
        ..Default::default()
    }
}

/// The same job as the REST body takes it.
fn bench_job_json() -> Value {
    json!({"start": 1, "end": 100, "kind": "sum"})
}

/// Runs the modes asked for and prints one report.
pub(crate) async fn run(api: &Api, args: &BenchArgs, printer: Printer) -> anyhow::Result<()> {
    let modes: &[BenchMode] = match args.mode {
        // The quiet measures first, before the submit runs leave a backlog.
        BenchMode::All => &[
            BenchMode::E2e,
            BenchMode::Drain,
            BenchMode::Grpc,
            BenchMode::Rest,
        ],
        ref mode => std::slice::from_ref(mode),
    };
    let rest_url = args
        .rest_url
        .clone()
        .unwrap_or_else(|| api.default_rest_url());
    let client = api.jobs().await?;
    let mut report = Report::default();
    for mode in modes {
        match mode {
            BenchMode::Grpc => report.grpc = Some(grpc(&client, args).await?),
            BenchMode::Rest => report.rest = Some(rest(api, args, &rest_url).await?),
            BenchMode::Drain => report.drain = Some(drain(&client, args).await?),
            BenchMode::E2e => report.e2e = Some(e2e(&client, args).await?),
            BenchMode::All => unreachable!("expanded above"),
        }
    }
    if printer.json() {
        return printer.document(&report.json(args, &rest_url));
    }
    for line in report.text(args) {
        printer.line(&line)?;
    }
    Ok(())
}

/// What the modes measured; a mode not run is `None`.
#[derive(Debug, Default)]
struct Report {
    grpc: Option<LoadReport>,
    rest: Option<LoadReport>,
    drain: Option<DrainReport>,
    e2e: Option<E2eReport>,
}

impl Report {
    /// One JSON document: the settings, then an object per mode run.
    fn json(&self, args: &BenchArgs, rest_url: &str) -> Value {
        let mut doc = json!({
            "settings": {
                "concurrency": args.concurrency,
                "batch": args.batch,
                "duration_secs": args.duration.as_secs_f64(),
                "count": args.count,
                "rest_url": rest_url,
                "drain_jobs": args.drain_jobs,
                "samples": args.samples,
            }
        });
        if let Some(grpc) = &self.grpc {
            doc["grpc"] = grpc.json();
        }
        if let Some(rest) = &self.rest {
            doc["rest"] = rest.json();
        }
        if let Some(drain) = &self.drain {
            doc["drain"] = drain.json();
        }
        if let Some(e2e) = &self.e2e {
            doc["e2e"] = e2e.json();
        }
        doc
    }

    /// An aligned table, a row per mode, and a line of settings.
    fn text(&self, args: &BenchArgs) -> Vec<String> {
        let dash = || "-".to_owned();
        let mut rows = vec![
            [
                "MODE", "JOBS", "REQUESTS", "SECS", "JOBS/S", "P50 MS", "P90 MS", "P99 MS",
                "MAX MS",
            ]
            .map(str::to_owned),
        ];
        let latency = |l: &Latency| [l.p50, l.p90, l.p99, l.max].map(ms_text);
        for (name, load) in [("grpc", &self.grpc), ("rest", &self.rest)] {
            if let Some(load) = load {
                let [p50, p90, p99, max] = latency(&load.latency);
                rows.push([
                    name.to_owned(),
                    load.jobs.to_string(),
                    load.requests.to_string(),
                    format!("{:.2}", load.elapsed.as_secs_f64()),
                    format!("{:.0}", load.jobs_per_sec()),
                    p50,
                    p90,
                    p99,
                    max,
                ]);
            }
        }
        if let Some(drain) = &self.drain {
            rows.push([
                "drain".to_owned(),
                drain.jobs.to_string(),
                dash(),
                format!("{:.2}", drain.drain.as_secs_f64()),
                format!("{:.0}", drain.jobs_per_sec()),
                dash(),
                dash(),
                dash(),
                dash(),
            ]);
        }
        if let Some(e2e) = &self.e2e {
            let [p50, p90, p99, max] = latency(&e2e.latency);
            rows.push([
                "e2e".to_owned(),
                e2e.samples.to_string(),
                e2e.samples.to_string(),
                format!("{:.2}", e2e.elapsed.as_secs_f64()),
                dash(),
                p50,
                p90,
                p99,
                max,
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
            .collect();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    // The mode left-aligned, numbers right-aligned.
                    .map(|(i, (cell, &width))| {
                        if i == 0 {
                            format!("{cell:<width$}")
                        } else {
                            format!("{cell:>width$}")
                        }
                    })
                    .collect();
                cells.join("  ")
            })
            .collect();
        lines.push(String::new());
        lines.push(format!(
            "concurrency {}, batch {}, sum jobs over 1..=100",
            args.concurrency, args.batch
        ));
        if let Some(drain) = &self.drain {
            lines.push(format!(
                "drain: {} jobs submitted in {:.2}s; first start to last end {:.2}s; \
                 first submit to last end {:.2}s",
                drain.jobs,
                drain.submit.as_secs_f64(),
                drain.drain.as_secs_f64(),
                drain.total.as_secs_f64()
            ));
        }
        lines
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        #[allow(clippy::cast_precision_loss)] // microseconds below a minute
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }

    fn json(&self) -> Value {
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        json!({
            "p50": round(self.p50),
            "p90": round(self.p90),
            "p99": round(self.p99),
            "p999": round(self.p999),
            "max": round(self.max),
            "mean": round(self.mean),
        })
    }
}

fn ms_text(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.1}")
    }
}

fn new_histogram() -> Histogram<u64> {
    // Bounds and precision are constants that HdrHistogram accepts.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap()
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

/// What a submit run (grpc or rest) measured.
#[derive(Debug)]
struct LoadReport {
    requests: u64,
    jobs: u64,
    elapsed: Duration,
    latency: Latency,
}

impl LoadReport {
    fn jobs_per_sec(&self) -> f64 {
        rate(self.jobs, self.elapsed)
    }

    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "jobs": self.jobs,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "requests_per_sec": rate(self.requests, self.elapsed),
            "jobs_per_sec": self.jobs_per_sec(),
            "latency_ms": self.latency.json(),
        })
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Hands out jobs to the submitting tasks until `--count` is reached.
#[derive(Debug)]
struct Budget {
    taken: AtomicU64,
    limit: u64,
}

impl Budget {
    /// How many jobs the next request may carry: up to `batch`, 0 when the
    /// count is spent.
    fn take(&self, batch: u64) -> u64 {
        let before = self.taken.fetch_add(batch, Ordering::Relaxed);
        self.limit.saturating_sub(before).min(batch)
    }
}

/// Runs `--concurrency` tasks, each calling `submit(jobs)` in a loop until
/// the count is spent or the duration is up, and merges what they measured.
async fn load<F, Fut>(args: &BenchArgs, submit: F) -> anyhow::Result<LoadReport>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let budget = Arc::new(Budget {
        taken: AtomicU64::new(0),
        limit: args.count.unwrap_or(u64::MAX),
    });
    let batch = u64::from(args.batch);
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency {
        let budget = budget.clone();
        let submit = submit.clone();
        tasks.spawn(async move {
            let mut histogram = new_histogram();
            let (mut requests, mut jobs) = (0_u64, 0_u64);
            while Instant::now() < deadline {
                let n = budget.take(batch);
                if n == 0 {
                    break;
                }
                let sent = Instant::now();
                submit(n).await?;
                record(&mut histogram, sent.elapsed());
                requests += 1;
                jobs += n;
            }
            anyhow::Ok((histogram, requests, jobs))
        });
    }
    let mut histogram = new_histogram();
    let (mut requests, mut jobs) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        // The first failure stops the run (dropping the set ends the rest).
        let (part, part_requests, part_jobs) = joined.context("a bench task panicked")??;
        histogram
            .add(&part)
            .map_err(|err| anyhow!("merging latencies: {err:?}"))?;
        requests += part_requests;
        jobs += part_jobs;
    }
    Ok(LoadReport {
        requests,
        jobs,
        elapsed: started.elapsed(),
        latency: Latency::of(&histogram),
    })
}

/// gRPC submit throughput: CreateJob, or CreateJobs with `--batch`.
async fn grpc(client: &JobsClient, args: &BenchArgs) -> anyhow::Result<LoadReport> {
    let client = client.clone();
    let batched = args.batch > 1;
    load(args, move |n| {
        // Clones share the one HTTP/2 connection.
        let mut client = client.clone();
        async move {
            if batched {
                let jobs = vec![bench_job(); usize::try_from(n)?];
                let created = answer(client.create_jobs(pb::CreateJobsRequest { jobs })).await?;
                if created.jobs.len() as u64 != n {
                    bail!("CreateJobs returned {} jobs for {n}", created.jobs.len());
                }
            } else {
                answer(client.create_job(bench_job())).await?;
            }
            Ok(())
        }
    })
    .await
}

/// REST submit throughput: `POST /jobs`, an array with `--batch`.
async fn rest(api: &Api, args: &BenchArgs, rest_url: &str) -> anyhow::Result<LoadReport> {
    let base = rest_url.trim_end_matches('/');
    let url: http::Uri = format!("{base}/jobs")
        .parse()
        .map_err(|err| anyhow!("--rest-url {rest_url:?} is not a URL: {err}"))?;
    let gateway = rest_url.to_owned();
    let authorization = api.token().header().map(str::to_owned);
    // One keep-alive connection per task: the pool grows to the concurrency.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::try_from(args.concurrency)?)
        .build_http();
    let batched = args.batch > 1;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=args.batch)
            .map(|n| {
                let body = if batched {
                    Value::Array(vec![bench_job_json(); n as usize])
                } else {
                    bench_job_json()
                };
                Bytes::from(body.to_string())
            })
            .collect(),
    );
    load(args, move |n| {
        let client = client.clone();
        let url = url.clone();
        let gateway = gateway.clone();
        let authorization = authorization.clone();
        let bodies = bodies.clone();
        async move {
            let body = bodies[usize::try_from(n)?].clone();
            let mut request = http::Request::post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(value) = &authorization {
                request = request.header(http::header::AUTHORIZATION, value);
            }
            let unreachable = |cause: String| RestUnreachable {
                url: gateway.clone(),
                cause,
            };
            let sent = client.request(request.body(Full::new(body))?);
            let response = match tokio::time::timeout(CALL_TIMEOUT, sent).await {
                Err(_) => {
                    let cause = format!("no answer within {}s", CALL_TIMEOUT.as_secs());
                    return Err(unreachable(cause).into());
                }
                // Refused, or no such host: nothing is listening there.
                Ok(Err(err)) if err.is_connect() => {
                    return Err(unreachable(root_cause(&err)).into());
                }
                Ok(response) => response.with_context(|| format!("POST {url}"))?,
            };
            let status = response.status();
            // Read the body whole, so the connection is free for the next.
            let body = response.into_body().collect().await?.to_bytes();
            // Up, but its Redis is down or slow: unavailable, as over gRPC.
            if matches!(
                status,
                http::StatusCode::SERVICE_UNAVAILABLE | http::StatusCode::GATEWAY_TIMEOUT
            ) {
                return Err(RestUnavailable {
                    url: gateway.clone(),
                    status,
                    detail: problem_detail(&body),
                }
                .into());
            }
            if status != http::StatusCode::CREATED {
                bail!(
                    "POST {url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }
    })
    .await
}

/// What a problem+json body says (its `detail`), else the body itself.
fn problem_detail(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|problem| problem.get("detail")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// The innermost cause of `err` ("Connection refused (os error 111)"), which
/// hyper's own words ("client error (Connect)") leave out.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(err), |err| err.source())
        .last()
        .map_or_else(|| err.to_string(), ToString::to_string)
}

/// What the drain measured.
#[derive(Debug)]
struct DrainReport {
    jobs: u64,
    /// From the first CreateJobs call to the last answer.
    submit: Duration,
    /// From the first job's start to the last job's end (server clock).
    drain: Duration,
    /// From the first job's creation to the last job's end (server clock).
    total: Duration,
}

impl DrainReport {
    fn jobs_per_sec(&self) -> f64 {
        rate(self.jobs, self.drain)
    }

    fn json(&self) -> Value {
        json!({
            "jobs": self.jobs,
            "submit_secs": self.submit.as_secs_f64(),
            "drain_secs": self.drain.as_secs_f64(),
            "total_secs": self.total.as_secs_f64(),
            "jobs_per_sec": self.jobs_per_sec(),
        })
    }
}

/// Submits `--drain-jobs` jobs, waits until every one has finished, and
/// reads their times.
async fn drain(client: &JobsClient, args: &BenchArgs) -> anyhow::Result<DrainReport> {
    let mut client = client.clone();
    let started = Instant::now();
    let deadline = started + args.timeout;
    let total = usize::try_from(args.drain_jobs)?;
    let mut pending: HashSet<String> = HashSet::with_capacity(total);
    let mut last = String::new();
    while pending.len() < total {
        let n = (total - pending.len()).min(DRAIN_BATCH);
        let created = answer(client.create_jobs(pb::CreateJobsRequest {
            jobs: vec![bench_job(); n],
        }))
        .await?;
        for job in created.jobs {
            last.clone_from(&job.jid);
            pending.insert(job.jid);
        }
    }
    let submit = started.elapsed();

    // The last job submitted is about the last to finish: follow it without
    // polling, then collect every job's times from the list.
    let waited = tokio::time::timeout_at(deadline.into(), follow(&mut client, &last, |_| Ok(())));
    waited
        .await
        .map_err(|_| timed_out("drain", args.timeout, &pending))??;
    let (mut first_create, mut first_start, mut last_end) = (None, None, None);
    let mut unfinished = pending;
    loop {
        let mut page_token = String::new();
        // Ours are the newest jobs: a pass stops once it has seen each one
        // still unfinished.
        let wanted = unfinished.len();
        let mut seen = 0;
        loop {
            let page = answer(client.list_jobs(pb::ListJobsRequest {
                page_size: LIST_PAGE,
                page_token,
                status: pb::JobStatus::Unspecified.into(),
            }))
            .await?;
            for job in &page.jobs {
                if !unfinished.contains(&job.jid) {
                    continue;
                }
                seen += 1;
                let status = job.status();
                if !is_finished(status) {
                    continue;
                }
                if status != pb::JobStatus::Success {
                    bail!(
                        "drain: job {} ended {} ({}); the workers fail jobs",
                        job.jid,
                        status_name(status),
                        job.error
                    );
                }
                first_create = earliest(first_create, job.create_time.as_ref());
                first_start = earliest(first_start, job.start_time.as_ref());
                last_end = latest(last_end, job.end_time.as_ref());
                unfinished.remove(&job.jid);
            }
            if seen >= wanted || page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if unfinished.is_empty() {
            break;
        }
        if Instant::now() + DRAIN_POLL > deadline {
            return Err(timed_out("drain", args.timeout, &unfinished));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let span = |from: Option<prost_types::Timestamp>| match (from, last_end) {
        (Some(from), Some(to)) => between(&from, &to),
        _ => Duration::ZERO,
    };
    Ok(DrainReport {
        jobs: total as u64,
        submit,
        drain: span(first_start),
        total: span(first_create),
    })
}

fn timed_out(mode: &str, timeout: Duration, unfinished: &HashSet<String>) -> anyhow::Error {
    anyhow!(
        "{mode}: {} jobs had not finished after --timeout {}s; are workers running?",
        unfinished.len(),
        timeout.as_secs_f64()
    )
}

fn is_finished(status: pb::JobStatus) -> bool {
    matches!(
        status,
        pb::JobStatus::Success | pb::JobStatus::Error | pb::JobStatus::Cancelled
    )
}

fn key(time: &prost_types::Timestamp) -> (i64, i32) {
    (time.seconds, time.nanos)
}

fn earliest(
    so_far: Option<prost_types::Timestamp>,
    time: Option<&prost_types::Timestamp>,
) -> Option<prost_types::Timestamp> {
    match (so_far, time) {
        (Some(a), Some(b)) if key(b) < key(&a) => Some(*b),
        (None, Some(b)) => Some(*b),
        (a, _) => a,
    }
}

fn latest(
    so_far: Option<prost_types::Timestamp>,
    time: Option<&prost_types::Timestamp>,
) -> Option<prost_types::Timestamp> {
    match (so_far, time) {
        (Some(a), Some(b)) if key(b) > key(&a) => Some(*b),
        (None, Some(b)) => Some(*b),
        (a, _) => a,
    }
}

/// `to - from`, zero if `to` is earlier.
fn between(from: &prost_types::Timestamp, to: &prost_types::Timestamp) -> Duration {
    let nanos =
        |t: &prost_types::Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    u64::try_from(nanos(to) - nanos(from)).map_or(Duration::ZERO, Duration::from_nanos)
}

/// What the end-to-end mode measured.
#[derive(Debug)]
struct E2eReport {
    samples: u64,
    elapsed: Duration,
    latency: Latency,
}

impl E2eReport {
    fn json(&self) -> Value {
        json!({
            "samples": self.samples,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "latency_ms": self.latency.json(),
        })
    }
}

/// One job at a time: submit, follow until it ends, time it.
async fn e2e(client: &JobsClient, args: &BenchArgs) -> anyhow::Result<E2eReport> {
    let mut client = client.clone();
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut histogram = new_histogram();
    for _ in 0..args.samples {
        let sent = Instant::now();
        let one = async {
            let job = answer(client.create_job(bench_job()))
                .await?
                .job
                .context("the server returned no job")?;
            follow(&mut client, &job.jid, |_| Ok(())).await
        };
        let job = tokio::time::timeout_at(deadline.into(), one)
            .await
            .map_err(|_| {
                anyhow!(
                    "e2e: the samples took longer than --timeout {}s; are workers running?",
                    args.timeout.as_secs_f64()
                )
            })??;
        record(&mut histogram, sent.elapsed());
        if job.status() != pb::JobStatus::Success {
            bail!(
                "e2e: job {} ended {} ({})",
                job.jid,
                status_name(job.status()),
                job.error
            );
        }
    }
    Ok(E2eReport {
        samples: u64::from(args.samples),
        elapsed: started.elapsed(),
        latency: Latency::of(&histogram),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_hands_out_exactly_the_count() {
        let budget = Budget {
            taken: AtomicU64::new(0),
            limit: 25,
        };
        let taken: Vec<u64> = (0..5).map(|_| budget.take(10)).collect();
        assert_eq!(taken, [10, 10, 5, 0, 0]);
    }

    #[test]
    fn percentiles_never_decrease() {
        let mut histogram = new_histogram();
        for micros in [5, 50, 500, 5000, 50_000, 120_000_000] {
            record(&mut histogram, Duration::from_micros(micros));
        }
        let l = Latency::of(&histogram);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!(l.max <= 60_000.0 * 1.001, "clamped to a minute: {}", l.max);
    }

    #[test]
    fn time_spans_come_from_timestamps() {
        let t = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(
            between(&t(1, 500), &t(2, 0)),
            Duration::from_nanos(999_999_500)
        );
        assert_eq!(between(&t(2, 0), &t(1, 0)), Duration::ZERO);
        let first = earliest(None, Some(&t(5, 0)));
        let first = earliest(first, Some(&t(3, 0)));
        assert_eq!(first, Some(t(3, 0)));
        assert_eq!(latest(Some(t(5, 0)), Some(&t(3, 0))), Some(t(5, 0)));
    }
}
