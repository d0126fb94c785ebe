//! The job as the rest of the system sees it, independent of any transport.

use std::{fmt, str::FromStr, time::Duration};

use uuid::Uuid;

use crate::{TraceParent, ValidationError, kinds};

/// A point in time, in UTC, with microsecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A kind's options beyond start and end: a JSON object.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// The largest `params` accepted, measured as compact JSON.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// The most attempts a job may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// The longest run timeout a job may ask for: one day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// A job's id: a UUID, printed in its hyphenated lowercase form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a client-supplied id; the error names the field `jid`.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Uuid::try_parse(text)
            .map(Self)
            .map_err(|_| ValidationError::new("jid", format!("{text:?} is not a job id (a UUID)")))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Where a job is in its life.
///
/// `Queued -> Running -> Success | Error`, and `Cancelled` from `Queued` or
/// `Running`. The last three are terminal: a job never leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished with an error.
    Error,
    /// Finished successfully; its result is stored.
    Success,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Error,
        JobStatus::Success,
        JobStatus::Cancelled,
    ];

    /// The status's name as stored in Redis and shown in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Error => "ERROR",
            JobStatus::Success => "SUCCESS",
            JobStatus::Cancelled => "CANCELLED",
        }
    }

    /// True for the statuses a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Error | JobStatus::Success | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!(
                        "{text:?} is not a status (QUEUED, RUNNING, ERROR, SUCCESS, CANCELLED)"
                    ),
                )
            })
    }
}

/// A job and everything known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub jid: JobId,
    /// Where it is in its life.
    pub status: JobStatus,
    /// First integer of its inclusive range.
    pub start: i64,
    /// Last integer of its inclusive range.
    pub end: i64,
    /// Which handler runs it.
    pub kind: String,
    /// Its kind's options; empty when none.
    pub params: Params,
    /// When it was accepted.
    pub create_time: Timestamp,
    /// When its latest attempt started.
    pub start_time: Option<Timestamp>,
    /// When it reached a terminal status.
    pub end_time: Option<Timestamp>,
    /// How many times a worker has started it.
    pub attempts: u32,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// How far the running attempt has got, from 0.0 to 1.0.
    pub progress: f64,
    /// How many attempts it gets before it ends ERROR.
    pub max_attempts: u32,
    /// How long one attempt may run before it is stopped and counts as failed.
    pub timeout: Duration,
    /// Every attempt so far, oldest first.
    pub history: Vec<Attempt>,
    /// The trace context of the call that submitted it, if it sent one, so
    /// the worker's spans join that trace.
    pub trace_parent: Option<TraceParent>,
    /// Bumped by every change, so a watcher can drop stale events.
    pub(crate) version: u64,
    /// Its place in the creation order; the list's page token.
    pub(crate) seq: u64,
    /// The fencing token of the current (or last) lease.
    pub(crate) lease: u64,
}

/// One attempt at running a job, as its history records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Attempt {
    /// Which attempt, from 1; `None` for a run handed back at shutdown,
    /// which does not count.
    #[serde(default)]
    pub number: Option<u32>,
    /// The worker that ran it.
    #[serde(default)]
    pub worker: String,
    /// When it started.
    #[serde(default, deserialize_with = "micros_opt")]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(default, deserialize_with = "micros_opt")]
    pub end_time: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AttemptOutcome {
    /// The handler succeeded.
    Success,
    /// The handler failed (or timed out); the job was retried if attempts remained.
    Failed,
    /// The handler failed for good; no retry.
    Error,
    /// The job was cancelled while it ran.
    Cancelled,
    /// Its worker shut down and handed the job back; not counted.
    Release,
    /// Its worker stopped renewing the lease (killed, lost, paused).
    Lost,
}

impl AttemptOutcome {
    /// Reads the stored name (`SUCCESS`, `FAILED`, ...).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SUCCESS" => Self::Success,
            "FAILED" => Self::Failed,
            "ERROR" => Self::Error,
            "CANCELLED" => Self::Cancelled,
            "RELEASE" => Self::Release,
            "LOST" => Self::Lost,
            _ => return None,
        })
    }
}

fn micros_opt<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Timestamp>, D::Error> {
    let text = <Option<String> as serde::Deserialize>::deserialize(de)?;
    Ok(text
        .and_then(|micros| micros.parse().ok())
        .and_then(chrono::DateTime::from_timestamp_micros))
}

/// A submission that passed every check: a valid job, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    start: i64,
    end: i64,
    kind: &'static str,
    params: Params,
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    trace_parent: Option<TraceParent>,
}

impl NewJob {
    /// Checks a submission: `start <= end`, a known kind (`sum` when empty),
    /// `params` within [`MAX_PARAMS_BYTES`] and accepted by the kind. The
    /// error names the offending field.
    ///
    /// An empty kind is taken for none, as proto3 sends an unset string;
    /// a client that can tell the two apart uses
    /// [`NewJob::parse_optional_kind`].
    pub fn parse(
        start: i64,
        end: i64,
        kind: &str,
        params: Option<Params>,
    ) -> Result<Self, ValidationError> {
        Self::parse_optional_kind(start, end, (!kind.is_empty()).then_some(kind), params)
    }

    /// As [`NewJob::parse`], for a submission that can leave the kind out
    /// (JSON): no kind is `sum`, and an empty one is refused, naming `kind`,
    /// since a client that wrote one meant some kind, not the default.
    pub fn parse_optional_kind(
        start: i64,
        end: i64,
        kind: Option<&str>,
        params: Option<Params>,
    ) -> Result<Self, ValidationError> {
        if start > end {
            return Err(ValidationError::new(
                "end",
                format!("end ({end}) must not be less than start ({start})"),
            ));
        }
        let kind = kind.unwrap_or(kinds::DEFAULT);
        let spec = kinds::find(kind).ok_or_else(|| {
            ValidationError::new(
                "kind",
                format!(
                    "unknown kind {kind:?}; known kinds: {}",
                    kinds::names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let params = params.unwrap_or_default();
        let size = serde_json::to_vec(&params).map_or(usize::MAX, |json| json.len());
        if size > MAX_PARAMS_BYTES {
            return Err(ValidationError::new(
                "params",
                format!(
                    "params take {size} bytes as JSON; at most {MAX_PARAMS_BYTES} are accepted"
                ),
            ));
        }
        spec.check(start, end, &params)?;
        Ok(Self {
            start,
            end,
            kind: spec.name(),
            params,
            max_attempts: None,
            timeout: None,
            idempotency_key: None,
            trace_parent: None,
        })
    }

    /// Sets how many attempts the job gets (1 to [`MAX_ATTEMPTS`]); without
    /// it the server's default applies.
    pub fn with_max_attempts(mut self, attempts: u32) -> Result<Self, ValidationError> {
        if !(1..=MAX_ATTEMPTS).contains(&attempts) {
            return Err(ValidationError::new(
                "max_attempts",
                format!("must be from 1 to {MAX_ATTEMPTS} (got {attempts})"),
            ));
        }
        self.max_attempts = Some(attempts);
        Ok(self)
    }

    /// Sets how long one attempt may run (1 ms to [`MAX_TIMEOUT`]); without
    /// it the server's default applies.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ValidationError> {
        if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
            return Err(ValidationError::new(
                "timeout",
                format!(
                    "must be from 1 ms to {} s (got {timeout:?})",
                    MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        self.timeout = Some(timeout);
        Ok(self)
    }

    /// Sets an idempotency key: a repeat of the same submission with the same
    /// key, within the server's window, returns the job first created.
    pub fn with_idempotency_key(mut self, key: &str) -> Result<Self, ValidationError> {
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
            || key.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                "idempotency_key",
                format!(
                    "must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes with no control characters"
                ),
            ));
        }
        self.idempotency_key = Some(key.to_owned());
        Ok(self)
    }

    /// Records the submitting call's trace context, to travel with the job.
    /// It is not part of the submission: a repeat under the same idempotency
    /// key from another trace is still the same job.
    pub fn with_trace_parent(mut self, parent: TraceParent) -> Self {
        self.trace_parent = Some(parent);
        self
    }

    /// The submitting call's trace context, if any.
    pub fn trace_parent(&self) -> Option<&TraceParent> {
        self.trace_parent.as_ref()
    }

    /// The attempts asked for, if any.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The run timeout asked for, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The idempotency key, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// First integer of the range.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Last integer of the range.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// The kind, one of [`kinds::names`].
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The kind's options.
    pub fn params(&self) -> &Params {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_a_classic_job_and_defaults_the_kind() {
        let job = NewJob::parse(1, 2, "", None).unwrap();
        assert_eq!((job.start(), job.end(), job.kind()), (1, 2, "sum"));
    }

    #[test]
    fn an_empty_kind_is_the_default_only_where_it_cannot_be_told_from_none() {
        let job = NewJob::parse_optional_kind(1, 2, None, None).unwrap();
        assert_eq!(job.kind(), "sum");
        let err = NewJob::parse_optional_kind(1, 2, Some(""), None).unwrap_err();
        assert_eq!(err.field(), "kind");
        assert!(err.message().contains("known kinds: sum"), "{err}");
        let job = NewJob::parse_optional_kind(1, 2, Some("sleep"), None).unwrap();
        assert_eq!(job.kind(), "sleep");
    }

    #[test]
    fn parse_names_the_field_at_fault() {
        assert_eq!(NewJob::parse(5, 1, "sum", None).unwrap_err().field(), "end");
        assert_eq!(
            NewJob::parse(1, 1, "nope", None).unwrap_err().field(),
            "kind"
        );
        let mut big = Params::new();
        big.insert("message".into(), "x".repeat(MAX_PARAMS_BYTES).into());
        assert_eq!(
            NewJob::parse(1, 1, "fail", Some(big)).unwrap_err().field(),
            "params"
        );
    }

    #[test]
    fn options_are_checked_and_name_their_field() {
        let job = NewJob::parse(1, 2, "", None).unwrap();
        assert_eq!(
            job.clone().with_max_attempts(0).unwrap_err().field(),
            "max_attempts"
        );
        assert_eq!(
            job.clone().with_max_attempts(101).unwrap_err().field(),
            "max_attempts"
        );
        assert_eq!(
            job.clone()
                .with_timeout(Duration::ZERO)
                .unwrap_err()
                .field(),
            "timeout"
        );
        assert_eq!(
            job.clone().with_idempotency_key("").unwrap_err().field(),
            "idempotency_key"
        );
        let job = job
            .with_max_attempts(5)
            .and_then(|j| j.with_timeout(Duration::from_secs(3)))
            .and_then(|j| j.with_idempotency_key("order-42"))
            .unwrap();
        assert_eq!(job.max_attempts(), Some(5));
        assert_eq!(job.timeout(), Some(Duration::from_secs(3)));
        assert_eq!(job.idempotency_key(), Some("order-42"));
    }

    #[test]
    fn status_names_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
        }
        assert!("FINISHED".parse::<JobStatus>().is_err());
    }

    #[test]
    fn job_ids_must_be_uuids() {
        let jid = JobId::new_random();
        assert_eq!(JobId::parse(&jid.to_string()).unwrap(), jid);
        assert_eq!(JobId::parse("42").unwrap_err().field(), "jid");
    }
}
