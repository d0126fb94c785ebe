//! The command line: every command, flag and help text, as one clap derive
//! tree, so `--help` is the reference.
//!
//! Job commands are verbs at the top level (`jobs submit`, `jobs watch`);
//! other resources get a noun with verbs under it (`jobs data load`), so a
//! new service adds one subcommand group without moving existing commands
//! (`DataService` is `Command::Data` with its own `DataCommand` enum).

use clap_complete::Shell;
use jobs_proto::pb;

/// Exit codes, shown at the end of `jobs --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  the job failed or was cancelled (submit --wait, watch, result), or another failure
     (a bad request or record, a missing or wrong token)
  2  usage: a bad command line
  3  not found: no job or record with that id
  4  server unreachable, silent (no answer within 10s), not a Jobs gRPC server (the
     REST gateway's port, say), or unavailable (also when its Redis is down, and
     when submit cannot be confirmed: repeat it with the same --idempotency-key)

The server is JOBS_SERVER or --server (default http://127.0.0.1:50051), plain
http only: jobs has no TLS client; a server started with a token wants it in
JOBS_API_TOKEN or --token.
Colour only on a terminal, never when NO_COLOR is set.";

/// Command-line client of the Jobs service: submit long-running work, follow
/// it, and fetch its result.
#[derive(Debug, clap::Parser)]
#[command(name = "jobs", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The Jobs API server's gRPC address: http://host:port, or host:port.
    /// Plain text only (jobs has no TLS client).
    #[arg(
        long,
        global = true,
        env = "JOBS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    // Checked by `commands::run` (`parse_http_url`), not by clap: a bad
    // JOBS_SERVER must not stop `jobs completions`, which dials nothing.
    pub(crate) server: String,

    /// The bearer token the server requires (the server's JOBS_API_TOKEN),
    /// sent with every call. Prefer the environment variable: a flag's value
    /// shows in the process list.
    #[arg(long, global = true, env = "JOBS_API_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// How to print results: text for people, or json (one document; one
    /// line per update for `watch`).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = Format::Text
    )]
    pub(crate) output: Format,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned text for people.
    Text,
    /// Machine-readable JSON.
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Submit a job and print its id.
    #[command(after_help = "\
Examples:
  jobs submit --start 1 --end 100
  jobs submit --start 1 --end 100 --wait          # prints 5050 when done
  jobs submit --start 0 --end 3000 --kind sleep --wait
  jobs submit --start 1 --end 1 --kind fail --param message=boom --param fail_attempts=1
  jobs submit --start 0 --end 5000 --kind sleep --timeout 2s --max-attempts 1
  jobs submit --start 1 --end 100 --idempotency-key nightly-2026-11-30   # safe to repeat

With --wait the id goes to stderr and the result to stdout, so
  sum=$(jobs submit --start 1 --end 100 --wait)
captures the result; the exit code is 1 when the job fails or is cancelled.
When the server cannot confirm that a job was created (exit code 4), it may
have been: run the same submit again with the same --idempotency-key.")]
    Submit(SubmitArgs),

    /// Show one job: its status, range, times, attempts, limits, error and
    /// the history of its attempts.
    #[command(after_help = "\
Example:
  jobs get 5b7e2a0c-3f4e-4f8e-9a52-0c9b8f1d2e3a
Exit code 3 when there is no such job.")]
    Get {
        /// The job's id.
        jid: String,
    },

    /// List jobs, newest first: id, kind, status, created, duration.
    #[command(after_help = "\
Examples:
  jobs list
  jobs list --status running --limit 5
  jobs list --output json | jq -r '.[].jid'")]
    List {
        /// Only jobs with this status.
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<StatusFilter>,
        /// The most jobs to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },

    /// Print the result of a finished job.
    #[command(after_help = "\
Example:
  jobs result 5b7e2a0c-3f4e-4f8e-9a52-0c9b8f1d2e3a      # 5050
Exit code 1 with the job's error when it failed or was cancelled, or while it
has not finished yet.")]
    Result {
        /// The job's id.
        jid: String,
    },

    /// Follow a job's status and progress until it ends.
    #[command(after_help = "\
Examples:
  jobs watch 5b7e2a0c-3f4e-4f8e-9a52-0c9b8f1d2e3a
  jobs watch 5b7e2a0c-3f4e-4f8e-9a52-0c9b8f1d2e3a --output json   # one JSON line per update
A progress bar on a terminal, one line per update otherwise. Exit code 1 when
the job ends failed or cancelled.")]
    Watch {
        /// The job's id.
        jid: String,
    },

    /// Cancel a queued or running job.
    #[command(after_help = "\
Example:
  jobs cancel 5b7e2a0c-3f4e-4f8e-9a52-0c9b8f1d2e3a
A queued job ends CANCELLED at once; a running one is stopped by its worker
shortly after (`jobs watch` shows it end). Exit code 1 when the job has
already finished.")]
    Cancel {
        /// The job's id.
        jid: String,
    },

    /// Check that the server is up and serving.
    #[command(after_help = "\
Example:
  jobs health && echo up")]
    Health,

    /// Load, search and read the dataset: JSON records the service holds.
    #[command(
        subcommand,
        after_help = "\
Examples:
  jobs data load people.json
  jobs data search ada
  jobs data get 42"
    )]
    Data(DataCommand),

    /// Measure a running deployment: submit throughput and latency (gRPC
    /// and REST), drain rate with its workers, and end-to-end latency.
    #[command(after_help = BENCH_HELP)]
    Bench(BenchArgs),

    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  jobs completions bash > ~/.local/share/bash-completion/completions/jobs
  jobs completions zsh > ~/.zfunc/_jobs
  jobs completions fish > ~/.config/fish/completions/jobs.fish")]
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

/// `jobs data …`: the dataset.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DataCommand {
    /// Load records from a JSON file: an array of objects, streamed to the
    /// server; prints how many were loaded and the ids generated.
    #[command(after_help = "\
Examples:
  jobs data load people.json
  jobs data load - < people.json                   # from stdin
  jobs data load people.json --output json | jq -r '.ids[]'

Each object's `id` (a string or a whole number) is its id; one without gets
a generated UUID. A record with an id already stored replaces it. A bad
record fails the whole load, naming its index (records[7]), and nothing is
stored. Numbers travel as doubles: integers beyond 2^53 arrive as strings.
A progress bar on stderr when it is a terminal.")]
    Load {
        /// The JSON file, or `-` for stdin.
        file: String,
    },

    /// Find records with a string value (at any depth) containing TEXT,
    /// ignoring case; in load order.
    #[command(after_help = "\
Examples:
  jobs data search ada
  jobs data search \"new york\" --limit 5
  jobs data search ada --output json | jq '.[].id'
An empty TEXT (\"\") matches every record.")]
    Search {
        /// The text to look for.
        text: String,
        /// The most records to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },

    /// Show one record.
    #[command(after_help = "\
Examples:
  jobs data get 42
  jobs data get 42 --output json
Exit code 3 when there is no such record.")]
    Get {
        /// The record's id.
        id: String,
    },
}

/// Examples and notes of `jobs bench`.
const BENCH_HELP: &str = "\
Examples:
  jobs bench                                        # every mode, default sizes
  jobs bench --mode grpc --concurrency 64 --duration 10s
  jobs bench --mode grpc --batch 100 --count 100000 # CreateJobs, 100 jobs a call
  jobs bench --mode rest --rest-url http://127.0.0.1:5000 --concurrency 50
  jobs bench --mode drain --drain-jobs 20000
  jobs bench --mode e2e --samples 1000
  jobs bench --output json | jq '.grpc.jobs_per_sec'

Modes:
  grpc   CreateJob (CreateJobs with --batch > 1) from --concurrency tasks
         sharing one connection, until --count jobs or --duration
  rest   POST /jobs (an array with --batch > 1) the same way, over HTTP/1.1
         keep-alive connections, one per task
  drain  submits --drain-jobs jobs in batches of 1000, then waits until all
         have finished; the rate is jobs / (last end - first start), both on
         the server's clock
  e2e    one job at a time on the system as it is: submit, WatchJob until
         SUCCESS; percentiles over --samples jobs
  all    e2e, drain, grpc, rest, in that order (the quiet measures first)

Every job is `sum` over 1..=100, so the numbers measure the service, not the
work. Latencies are per request, in milliseconds (HdrHistogram, 3 significant
digits). Every mode is bounded: grpc and rest by --duration, drain and e2e by
--timeout. A failed request stops the bench with its error. The jobs it
creates stay in the deployment until its retention removes them.";

/// `jobs bench`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = BenchMode::All)]
    pub(crate) mode: BenchMode,
    /// Requests in flight at once (grpc, rest).
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) concurrency: u32,
    /// How long grpc and rest each submit: 10s, 500ms, 2m, or seconds (at
    /// most a day).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// Stop grpc and rest after this many jobs each (or at --duration,
    /// whichever comes first).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Jobs per request: 1 sends CreateJob and single objects; more sends
    /// CreateJobs and arrays (at most 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) batch: u32,
    /// The REST gateway's base URL (rest mode): http://host:port, or
    /// host:port [default: port 5000 on --server's host]
    #[arg(long, env = "JOBS_REST_URL", value_parser = parse_http_url)]
    pub(crate) rest_url: Option<String>,
    /// Jobs the drain mode submits and waits for.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) drain_jobs: u32,
    /// Jobs the e2e mode times, one after another.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) samples: u32,
    /// The longest drain and e2e may each take before the bench gives up (at
    /// most a day).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub(crate) timeout: std::time::Duration,
}

/// What `jobs bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchMode {
    /// gRPC submit throughput and latency.
    Grpc,
    /// REST `POST /jobs` throughput and latency.
    Rest,
    /// How fast the running workers drain a backlog.
    Drain,
    /// One job's latency from submit to SUCCESS seen.
    E2e,
    /// All of them.
    All,
}

/// The longest `--duration` or `--timeout`: a bench runs for minutes, and
/// a bound keeps `now + duration` from overflowing.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A duration as people write it: `10s`, `500ms`, `2m`, or bare seconds; at
/// most [`MAX_DURATION`].
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if seconds > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "{text:?} is too long: at most a day (1440m, {}s)",
            MAX_DURATION.as_secs()
        ));
    }
    std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?} must be a positive duration"))
}

/// A server address as `--server` and `--rest-url` take it: `http://host:port`,
/// or `host:port` meaning that. Any other scheme is refused rather than
/// dialled: jobs has no TLS client, so `https://` would reach the server in
/// plain text, bearer token included, while the user believes it encrypted.
pub(crate) fn parse_http_url(text: &str) -> Result<String, String> {
    let url = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|err| format!("{text:?} is not a URL ({err}); expected http://host:port"))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {
            return Err(format!(
                "{text:?}: https is not supported: jobs has no TLS client and would send \
                 everything, the token too, in plain text. Use http:// on a trusted network, \
                 or a tunnel to the server (ssh -L 50051:127.0.0.1:50051 HOST, then \
                 --server http://127.0.0.1:50051)"
            ));
        }
        scheme => {
            return Err(format!(
                "{text:?}: the scheme {:?} is not supported; expected http://host:port",
                scheme.unwrap_or_default()
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host; expected http://host:port"));
    }
    Ok(url)
}

/// `jobs submit`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    /// First integer of the job's range (inclusive).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) start: i64,
    /// Last integer of the job's range (inclusive).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) end: i64,
    /// Which handler runs it: sum (when omitted), sleep or fail.
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// A parameter of the kind, as KEY=VALUE; the value is read as JSON when
    /// it parses, as a string otherwise. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub(crate) params: Vec<(String, serde_json::Value)>,
    /// How many attempts the job gets before it ends ERROR, 1 to 100
    /// [default: the server's, 3 unless configured]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) max_attempts: Option<u32>,
    /// How long one attempt may run before it is stopped and counts as
    /// failed: 30s, 500ms, 10m, or seconds (at most a day) [default: the
    /// server's, 2h unless configured]
    #[arg(long, value_parser = parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// Makes the submit safe to repeat: a repeat with the same key (within
    /// the server's window, a day by default) returns the job first created
    /// and creates nothing. Reusing a key for a different job is an error.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(crate) idempotency_key: Option<String>,
    /// Follow the job until it ends, then print its result.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// A `--param`: KEY=VALUE, the value read as JSON when it parses (`n=3`,
/// `tags=["a"]`) and as a string otherwise (`message=boom`). Checked here so
/// a malformed one is a usage error before anything is dialled.
fn parse_param(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?}: the key before = is empty"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((key.to_owned(), value))
}

/// A status to filter by; the names `jobs` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum StatusFilter {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished successfully.
    Success,
    /// Finished with an error.
    Error,
    /// Cancelled before it finished.
    Cancelled,
}

impl From<StatusFilter> for pb::JobStatus {
    fn from(filter: StatusFilter) -> Self {
        match filter {
            StatusFilter::Queued => pb::JobStatus::Queued,
            StatusFilter::Running => pb::JobStatus::Running,
            StatusFilter::Success => pb::JobStatus::Success,
            StatusFilter::Error => pb::JobStatus::Error,
            StatusFilter::Cancelled => pb::JobStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_http_url, parse_param};

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in [
            "",
            "0s",
            "x",
            "5h",
            "-1s",
            "86401s",
            "10000000000000000000s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("1440m"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn params_need_a_key_and_read_their_value_as_json_when_they_can() {
        assert_eq!(
            parse_param("n=3"),
            Ok(("n".to_owned(), serde_json::json!(3)))
        );
        assert_eq!(
            parse_param("message=a=b"),
            Ok(("message".to_owned(), serde_json::json!("a=b")))
        );
        assert_eq!(
            parse_param("empty="),
            Ok(("empty".to_owned(), serde_json::json!("")))
        );
        for bad in ["foo", "=x", ""] {
            assert!(parse_param(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert_eq!(
            parse_http_url("localhost:50051").as_deref(),
            Ok("http://localhost:50051")
        );
        assert_eq!(
            parse_http_url("http://[::1]:5000").as_deref(),
            Ok("http://[::1]:5000")
        );
        for bad in [
            "https://h:1",
            "ftp://h:1",
            "http://",
            "not a url",
            "unix:///tmp/s",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        assert!(parse_http_url("https://h:1").unwrap_err().contains("TLS"));
    }
}
