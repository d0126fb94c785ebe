//! Rendering: jobs and outcomes as text for people or JSON for programs, and
//! the one place that writes to stdout.
//!
//! Status names are the short forms everywhere, in text and JSON alike:
//! QUEUED, RUNNING, SUCCESS, ERROR, CANCELLED (the proto's names without
//! `JOB_STATUS_`), which are also what `jobs list --status` takes.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, TimeDelta, Utc};
use jobs_proto::pb;
use serde_json::{Value, json};

use crate::{cli::Format, load::Loaded};

/// A dataset record: a JSON object holding its own `id`.
type Record = serde_json::Map<String, Value>;

/// Where output goes, and how it looks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    format: Format,
    colour: bool,
}

impl Printer {
    /// A printer for `format`; colour only when stdout is a terminal and
    /// NO_COLOR is unset or empty (<https://no-color.org>).
    pub(crate) fn new(format: Format) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self {
            format,
            colour: format == Format::Text && !no_color && std::io::stdout().is_terminal(),
        }
    }

    /// Whether the output is JSON.
    pub(crate) fn json(self) -> bool {
        self.format == Format::Json
    }

    /// One line on stdout. Writes rather than `println!`, which panics when
    /// the reader has gone (`jobs list | head -1`); the error ends the
    /// command quietly instead.
    pub(crate) fn line(self, text: &str) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()
    }

    /// One JSON document, pretty-printed.
    pub(crate) fn document(self, value: &Value) -> anyhow::Result<()> {
        Ok(self.line(&serde_json::to_string_pretty(value)?)?)
    }

    /// One JSON document on one line (for streams of updates).
    pub(crate) fn json_line(self, value: &Value) -> anyhow::Result<()> {
        Ok(self.line(&serde_json::to_string(value)?)?)
    }

    /// A status name padded to `width`, coloured when colour is on (the
    /// padding goes first, so escape codes never upset alignment).
    pub(crate) fn status(self, status: pb::JobStatus, width: usize) -> String {
        let text = format!("{:width$}", status_name(status));
        if !self.colour {
            return text;
        }
        let code = match status {
            pb::JobStatus::Success => "32",                            // green
            pb::JobStatus::Error => "31",                              // red
            pb::JobStatus::Cancelled => "33",                          // yellow
            pb::JobStatus::Running => "36",                            // cyan
            pb::JobStatus::Queued | pb::JobStatus::Unspecified => "2", // dim
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Text lines describing one job, one field a line.
    pub(crate) fn job_text(self, job: &pb::Job) -> Vec<String> {
        let mut rows = vec![
            ("jid", printable(&job.jid)),
            ("status", self.status(job.status(), 0)),
            ("kind", printable(&job.kind)),
            ("range", format!("{}..={}", job.start, job.end)),
        ];
        let params = params_json(job);
        if !params.is_empty() {
            rows.push(("params", Value::Object(params).to_string()));
        }
        rows.push(("created", time_text(job.create_time.as_ref())));
        rows.push(("started", time_text(job.start_time.as_ref())));
        rows.push(("ended", time_text(job.end_time.as_ref())));
        rows.push(("duration", duration_text(job)));
        rows.push(("attempts", job.attempts.to_string()));
        rows.push(("limits", limits_text(job)));
        if job.status() == pb::JobStatus::Running {
            rows.push(("progress", format!("{:.0}%", job.progress * 100.0)));
        }
        if !job.error.is_empty() {
            rows.push(("error", printable(&job.error)));
        }
        let mut lines: Vec<String> = rows
            .into_iter()
            .map(|(key, value)| format!("{key:<9} {value}"))
            .collect();
        // The attempts as a table under the value column, header first.
        for (at, row) in history_table(&job.history).into_iter().enumerate() {
            let key = if at == 0 { "history" } else { "" };
            lines.push(format!("{key:<9} {row}"));
        }
        lines
    }

    /// One line for one state of a watched job: its status, then its
    /// progress while it runs or its duration once it has ended.
    pub(crate) fn update_text(self, job: &pb::Job) -> String {
        let status = job.status();
        let detail = match status {
            pb::JobStatus::Running => format!("{:>3.0}%", job.progress * 100.0),
            _ if is_terminal(status) => format!("after {}", duration_text(job)),
            _ => String::new(),
        };
        format!("{} {detail}", self.status(status, 9))
            .trim_end()
            .to_owned()
    }

    /// The aligned table of `jobs list`, header first.
    pub(crate) fn job_table(self, jobs: &[pb::Job]) -> Vec<String> {
        let rows: Vec<[String; 4]> = jobs
            .iter()
            .map(|job| {
                [
                    printable(&job.jid),
                    printable(&job.kind),
                    time_text(job.create_time.as_ref()),
                    duration_text(job),
                ]
            })
            .collect();
        let width = |header: &str, column: usize| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or_default()
        };
        let (jid, kind, created) = (width("JID", 0), width("KIND", 1), width("CREATED", 2));
        let status = "CANCELLED".len();
        let mut lines = vec![format!(
            "{:jid$}  {:kind$}  {:status$}  {:created$}  DURATION",
            "JID", "KIND", "STATUS", "CREATED"
        )];
        for (job, row) in jobs.iter().zip(&rows) {
            lines.push(format!(
                "{:jid$}  {:kind$}  {}  {:created$}  {}",
                row[0],
                row[1],
                self.status(job.status(), status),
                row[2],
                row[3]
            ));
        }
        lines
    }
}

/// Generated ids listed in text; `--output json` has every id.
const GENERATED_SHOWN: usize = 20;
/// The widest cell of the record table, in characters.
const CELL_CHARS: usize = 40;

impl Printer {
    /// What `data load` stored: the count, then the ids the server made up
    /// for records without one, each beside its record's index.
    pub(crate) fn loaded_text(self, loaded: &Loaded) -> Vec<String> {
        let noun = if loaded.loaded == 1 {
            "record"
        } else {
            "records"
        };
        let mut lines = vec![format!("loaded {} {noun}", loaded.loaded)];
        if loaded.generated.is_empty() {
            return lines;
        }
        lines.push(format!("generated ids ({}):", loaded.generated.len()));
        for &index in loaded.generated.iter().take(GENERATED_SHOWN) {
            let id = loaded.ids.get(index).map_or("-", String::as_str);
            lines.push(format!("  records[{index}]  {}", printable(id)));
        }
        if loaded.generated.len() > GENERATED_SHOWN {
            lines.push(format!(
                "  … and {} more (--output json lists every id)",
                loaded.generated.len() - GENERATED_SHOWN
            ));
        }
        lines
    }

    /// One record, a field a line: `id` first, then the rest by name.
    pub(crate) fn record_text(self, record: &Record) -> Vec<String> {
        let keys = record_keys(std::slice::from_ref(record));
        let width = keys
            .iter()
            .map(|key| key.chars().count())
            .max()
            .unwrap_or(0);
        keys.iter()
            .map(|key| {
                let value = record
                    .get(*key)
                    .map_or_else(|| "-".to_owned(), |value| printable(&value_text(value)));
                format!("{:<width$}  {value}", printable(key))
            })
            .collect()
    }

    /// The aligned table of `data search`: a column per field (`id` first),
    /// a row per record; long values are cut, and missing ones are `-`.
    pub(crate) fn record_table(self, records: &[Record]) -> Vec<String> {
        let keys = record_keys(records);
        let mut rows = vec![keys.iter().map(|key| printable(key)).collect::<Vec<_>>()];
        rows.extend(records.iter().map(|record| {
            keys.iter()
                .map(|key| record.get(*key).map_or_else(|| "-".to_owned(), cell_text))
                .collect()
        }));
        aligned(&rows)
    }
}

/// Every field name of `records`: `id` first, then the rest in order.
fn record_keys(records: &[Record]) -> Vec<&str> {
    let mut rest: Vec<&str> = records
        .iter()
        .flat_map(|record| record.keys().map(String::as_str))
        .filter(|key| *key != "id")
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    rest.insert(0, "id");
    rest
}

/// A value for a table cell: on one line (a table row must stay one), at
/// most [`CELL_CHARS`] characters, ending in `…` when cut.
fn cell_text(value: &Value) -> String {
    let text = printable(&value_text(value));
    if text.chars().count() <= CELL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(CELL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `text` safe to show on a terminal: a control character (an escape
/// sequence's ESC, a carriage return, a newline) or a bidirectional
/// override becomes a space, so what the server or a record holds can
/// neither rewrite the screen nor break a line in two. For text output
/// only: JSON escapes them itself.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi { ' ' } else { c }
        })
        .collect()
}

/// One line on stderr, for errors and notes beside the output. A closed
/// stderr is ignored: there is nowhere left to report it.
pub(crate) fn stderr_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The short name of a status: `SUCCESS` for `JOB_STATUS_SUCCESS`.
pub(crate) fn status_name(status: pb::JobStatus) -> &'static str {
    let name = status.as_str_name();
    name.strip_prefix("JOB_STATUS_").unwrap_or(name)
}

/// Whether a job in this status never changes again.
pub(crate) fn is_terminal(status: pb::JobStatus) -> bool {
    matches!(
        status,
        pb::JobStatus::Success | pb::JobStatus::Error | pb::JobStatus::Cancelled
    )
}

/// A job as JSON: short status names, RFC 3339 times (null until known),
/// `error` null unless the job failed or was cancelled; then its limits
/// (`timeout_ms` in milliseconds, as the REST gateway gives it) and the
/// `history` of its ended attempts.
pub(crate) fn job_json(job: &pb::Job) -> Value {
    json!({
        "jid": job.jid,
        "status": status_name(job.status()),
        "kind": job.kind,
        "start": job.start,
        "end": job.end,
        "params": params_json(job),
        "create_time": json_time(job.create_time.as_ref()),
        "start_time": json_time(job.start_time.as_ref()),
        "end_time": json_time(job.end_time.as_ref()),
        "attempts": job.attempts,
        "progress": job.progress,
        "error": non_empty(&job.error),
        "max_attempts": job.max_attempts,
        "timeout_ms": job.timeout.as_ref().map(duration_ms),
        "history": job.history.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

/// One ended attempt as JSON, in the REST gateway's shape: `number` null
/// for a run handed back at shutdown (which does not count), `error` null
/// on success.
fn attempt_json(attempt: &pb::JobAttempt) -> Value {
    json!({
        "number": (attempt.number != 0).then_some(attempt.number),
        "worker": attempt.worker,
        "start_time": json_time(attempt.start_time.as_ref()),
        "end_time": json_time(attempt.end_time.as_ref()),
        "outcome": attempt.outcome,
        "error": non_empty(&attempt.error),
    })
}

/// An RFC 3339 time for JSON; null when unknown.
fn json_time(time: Option<&prost_types::Timestamp>) -> Value {
    time.map_or(Value::Null, |time| time.to_string().into())
}

/// A protobuf duration in whole milliseconds (as the REST gateway gives
/// `timeout_ms`); a negative one, which no server sends, as 0.
fn duration_ms(duration: &prost_types::Duration) -> u64 {
    std::time::Duration::try_from(*duration).map_or(0, |duration| {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The job's attempts and how long each may run: `3 attempts, 2h00m each`.
fn limits_text(job: &pb::Job) -> String {
    let attempts = match job.max_attempts {
        0 => "-".to_owned(),
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    match &job.timeout {
        Some(timeout) => {
            let millis = i64::try_from(duration_ms(timeout)).unwrap_or(i64::MAX);
            format!(
                "{attempts}, {} each",
                human_duration(TimeDelta::milliseconds(millis))
            )
        }
        None => attempts,
    }
}

/// The attempts that have ended, as aligned rows under a header; none when
/// there are none.
fn history_table(history: &[pb::JobAttempt]) -> Vec<String> {
    if history.is_empty() {
        return Vec::new();
    }
    let header = ["#", "OUTCOME", "WORKER", "STARTED", "DURATION", "ERROR"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    rows.extend(history.iter().map(|attempt| {
        let took = match (
            attempt.start_time.as_ref().and_then(to_chrono),
            attempt.end_time.as_ref().and_then(to_chrono),
        ) {
            (Some(start), Some(end)) => human_duration(end - start),
            _ => "-".to_owned(),
        };
        vec![
            // 0 is a run handed back at shutdown, which does not count.
            match attempt.number {
                0 => "-".to_owned(),
                n => n.to_string(),
            },
            printable(&attempt.outcome),
            printable(&attempt.worker),
            time_text(attempt.start_time.as_ref()),
            took,
            printable(&attempt.error),
        ]
    }));
    aligned(&rows)
}

/// `rows` (a header first) as lines whose columns line up, two spaces
/// apart, with nothing trailing.
fn aligned(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or_default()
        })
        .collect();
    rows.iter()
        .map(|row| {
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// A finished job's outcome as JSON: `result` on success (big integers as
/// decimal strings, as the server sends them), `error` otherwise.
pub(crate) fn outcome_json(outcome: &pb::GetJobResultResponse) -> Value {
    json!({
        "jid": outcome.jid,
        "status": status_name(outcome.status()),
        "result": result_json(outcome),
        "error": non_empty(&outcome.error),
    })
}

/// The result value of an outcome; null when there is none.
pub(crate) fn result_json(outcome: &pb::GetJobResultResponse) -> Value {
    outcome
        .result
        .clone()
        .and_then(|value| jobs_proto::value_to_json(value, "result").ok())
        .unwrap_or(Value::Null)
}

/// A JSON value as a person reads it: strings bare (a big sum arrives as a
/// decimal string and should look like a number), everything else as JSON.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn params_json(job: &pb::Job) -> serde_json::Map<String, Value> {
    job.params
        .clone()
        .and_then(|params| jobs_proto::struct_to_params(params).ok())
        .unwrap_or_default()
}

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        text.into()
    }
}

fn to_chrono(time: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
}

/// A time to the second, in UTC: the server's clock, whatever the client's zone.
fn time_text(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(to_chrono).map_or_else(
        || "-".to_owned(),
        |time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// How long the job ran: start to end, or start to now while it runs.
fn duration_text(job: &pb::Job) -> String {
    let Some(start) = job.start_time.as_ref().and_then(to_chrono) else {
        return "-".to_owned();
    };
    let end = match job.end_time.as_ref().and_then(to_chrono) {
        Some(end) => end,
        None if job.status() == pb::JobStatus::Running => Utc::now(),
        None => return "-".to_owned(),
    };
    human_duration(end - start)
}

/// `850ms`, `4.2s`, `3m07s`, `2h05m`.
fn human_duration(delta: TimeDelta) -> String {
    let millis = delta.num_milliseconds().max(0);
    let secs = millis / 1000;
    if millis < 1000 {
        format!("{millis}ms")
    } else if secs < 60 {
        #[allow(clippy::cast_precision_loss)] // under a minute of milliseconds
        let secs = millis as f64 / 1000.0;
        format!("{secs:.1}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        let cases = [
            (850, "850ms"),
            (4_249, "4.2s"),
            (187_000, "3m07s"),
            (7_500_000, "2h05m"),
            (-5, "0ms"),
        ];
        for (millis, text) in cases {
            assert_eq!(human_duration(TimeDelta::milliseconds(millis)), text);
        }
    }

    #[test]
    fn status_names_are_short_and_colour_follows_the_flag() {
        assert_eq!(status_name(pb::JobStatus::Cancelled), "CANCELLED");
        let plain = Printer {
            format: Format::Text,
            colour: false,
        };
        assert_eq!(plain.status(pb::JobStatus::Error, 7), "ERROR  ");
        let coloured = Printer {
            format: Format::Text,
            colour: true,
        };
        assert_eq!(
            coloured.status(pb::JobStatus::Error, 7),
            "\x1b[31mERROR  \x1b[0m"
        );
    }

    #[test]
    fn records_show_id_first_and_cut_long_values() {
        let printer = Printer {
            format: Format::Text,
            colour: false,
        };
        let record = |value: Value| match value {
            Value::Object(record) => record,
            _ => unreachable!("records are objects"),
        };
        let records = [
            record(json!({"name": "Ada", "id": "a", "tags": ["x"]})),
            record(json!({"id": 7, "name": "line\nbreak", "note": "n".repeat(50)})),
        ];
        assert_eq!(
            printer.record_table(&records),
            [
                format!("id  name        note{}  tags", " ".repeat(36)),
                format!("a   Ada         -{}  [\"x\"]", " ".repeat(39)),
                format!("7   line break  {}…  -", "n".repeat(39)),
            ]
        );
        assert_eq!(
            printer.record_text(&records[0]),
            ["id    a", "name  Ada", "tags  [\"x\"]"]
        );
    }

    #[test]
    fn a_load_lists_the_ids_it_generated() {
        let printer = Printer {
            format: Format::Text,
            colour: false,
        };
        let loaded = Loaded {
            loaded: 3,
            ids: vec!["a".into(), "f00d".into(), "b".into()],
            generated: vec![1],
        };
        assert_eq!(
            printer.loaded_text(&loaded),
            [
                "loaded 3 records",
                "generated ids (1):",
                "  records[1]  f00d"
            ]
        );
        let many = Loaded {
            loaded: 25,
            ids: (0..25).map(|i| i.to_string()).collect(),
            generated: (0..25).collect(),
        };
        let lines = printer.loaded_text(&many);
        assert_eq!(lines.len(), 2 + GENERATED_SHOWN + 1);
        assert_eq!(
            lines.last().unwrap(),
            "  … and 5 more (--output json lists every id)"
        );
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let job = |jid: &str, kind: &str| pb::Job {
            jid: jid.into(),
            kind: kind.into(),
            status: pb::JobStatus::Success.into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            start_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_002,
                nanos: 0,
            }),
            ..pb::Job::default()
        };
        let printer = Printer {
            format: Format::Text,
            colour: false,
        };
        let lines = printer.job_table(&[job("a", "sum"), job("bb", "sleep")]);
        assert_eq!(
            lines,
            [
                "JID  KIND   STATUS     CREATED               DURATION",
                "a    sum    SUCCESS    2027-01-15T08:00:00Z  2.0s",
                "bb   sleep  SUCCESS    2027-01-15T08:00:00Z  2.0s",
            ]
        );
    }
}
