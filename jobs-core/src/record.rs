//! The storage representation of a job (a Redis hash of strings) and its
//! conversion to the domain [`Job`]. Private: nothing outside this crate sees
//! how a job is stored.

use chrono::DateTime;

use crate::{
    Attempt, AttemptOutcome, Error, Job, JobId, JobStatus, Params, Result, Timestamp, TraceParent,
};

/// Builds a job from a hash's fields, given as HGETALL's flat
/// `field, value, field, value, ...` sequence.
pub(crate) fn job_from_pairs(pairs: &[String]) -> Result<Job> {
    let mut stored = Stored::default();
    for pair in pairs.chunks_exact(2) {
        stored.set(&pair[0], &pair[1]);
    }
    stored.job()
}

/// The value of `field` in HGETALL's flat `field, value, ...` sequence.
pub(crate) fn field<'a>(pairs: &'a [String], field: &str) -> Option<&'a str> {
    pairs
        .chunks_exact(2)
        .find(|pair| pair[0] == field)
        .map(|pair| pair[1].as_str())
}

/// A job's fields as stored, each its text or absent: what a read of its
/// hash, or a claim's reply, gives before it is checked. Each field is
/// found by its name once, when it is set: the worker turns every job it
/// claims into a [`Job`] through here.
#[derive(Debug, Default)]
pub(crate) struct Stored<'a> {
    jid: Option<&'a str>,
    status: Option<&'a str>,
    version: Option<&'a str>,
    seq: Option<&'a str>,
    /// What the job was created with, see [`SPEC_FIELDS`]; when present it
    /// stands for the fields it holds, whatever else was set.
    spec: Option<&'a str>,
    start: Option<&'a str>,
    end: Option<&'a str>,
    kind: Option<&'a str>,
    params: Option<&'a str>,
    create_time: Option<&'a str>,
    max_attempts: Option<&'a str>,
    timeout_ms: Option<&'a str>,
    traceparent: Option<&'a str>,
    attempts: Option<&'a str>,
    lease: Option<&'a str>,
    start_time: Option<&'a str>,
    end_time: Option<&'a str>,
    progress: Option<&'a str>,
    history: Option<&'a str>,
    error: Option<&'a str>,
    outcome: Option<&'a str>,
    worker: Option<&'a str>,
}

/// The fields a job is created with and never changes, stored together in
/// its hash's `spec` field, joined by NUL, in this order (create.lua). One
/// field instead of eight keeps the hash short, and every later read and
/// write of it faster; the claim passes it on to the worker as it is. NUL
/// appears in none of them: numbers, a known kind, JSON text (which escapes
/// control characters), a time, a checked traceparent. A hash without
/// `spec` (written by an earlier release) has them as fields of their own.
const SPEC_FIELDS: [&str; 8] = [
    "start",
    "end",
    "kind",
    "params",
    "create_time",
    "max_attempts",
    "timeout_ms",
    "traceparent",
];

impl<'a> Stored<'a> {
    /// Sets the field stored under `name`. Fields a job is not built from
    /// (`result`, say) are left out.
    pub(crate) fn set(&mut self, name: &str, value: &'a str) {
        let slot = match name {
            "jid" => &mut self.jid,
            "status" => &mut self.status,
            "version" => &mut self.version,
            "seq" => &mut self.seq,
            "spec" => &mut self.spec,
            "start" => &mut self.start,
            "end" => &mut self.end,
            "kind" => &mut self.kind,
            "params" => &mut self.params,
            "create_time" => &mut self.create_time,
            "max_attempts" => &mut self.max_attempts,
            "timeout_ms" => &mut self.timeout_ms,
            "traceparent" => &mut self.traceparent,
            "attempts" => &mut self.attempts,
            "lease" => &mut self.lease,
            "start_time" => &mut self.start_time,
            "end_time" => &mut self.end_time,
            "progress" => &mut self.progress,
            "history" => &mut self.history,
            "error" => &mut self.error,
            "outcome" => &mut self.outcome,
            "worker" => &mut self.worker,
            _ => return,
        };
        *slot = Some(value);
    }

    /// The fields `spec` holds, in [`SPEC_FIELDS`]' order.
    fn spec_slots(&mut self) -> [&mut Option<&'a str>; SPEC_FIELDS.len()] {
        [
            &mut self.start,
            &mut self.end,
            &mut self.kind,
            &mut self.params,
            &mut self.create_time,
            &mut self.max_attempts,
            &mut self.timeout_ms,
            &mut self.traceparent,
        ]
    }

    /// Checks the fields and builds the job they describe.
    pub(crate) fn job(mut self) -> Result<Job> {
        if let Some(spec) = self.spec {
            let mut parts = NulSeparated::new(spec);
            let mut missing = false;
            for slot in self.spec_slots() {
                match parts.next() {
                    Some(value) => *slot = Some(value).filter(|value| !value.is_empty()),
                    None => missing = true,
                }
            }
            if missing || parts.next().is_some() {
                return Err(Error::Corrupt(format!(
                    "job spec has {} parts, not {}",
                    NulSeparated::new(spec).count(),
                    SPEC_FIELDS.len()
                )));
            }
        }
        job_from(&self)
    }
}

/// The parts of a text between NULs, as a stored spec or a claim's row
/// holds them. A byte scan, where `str::split` searched with `memchr` at
/// ~120 instructions a part: parts are a few bytes each, and the worker
/// splits fifteen for every job it claims.
#[derive(Debug)]
pub(crate) struct NulSeparated<'a> {
    rest: Option<&'a str>,
}

impl<'a> NulSeparated<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }

    /// What follows the parts taken so far, NULs and all.
    pub(crate) fn rest(self) -> Option<&'a str> {
        self.rest
    }
}

impl<'a> Iterator for NulSeparated<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        match text.bytes().position(|byte| byte == 0) {
            Some(at) => {
                self.rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                self.rest = None;
                Some(text)
            }
        }
    }
}

fn text<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str> {
    value.ok_or_else(|| Error::Corrupt(format!("job hash lacks field {name:?}")))
}

fn number(value: Option<&str>, name: &str) -> Result<i64> {
    let value = text(value, name)?;
    value
        .parse()
        .map_err(|_| Error::Corrupt(format!("job field {name:?} is not an integer: {value:?}")))
}

fn count(value: Option<&str>, name: &str) -> Result<u32> {
    u32::try_from(number(value, name)?)
        .map_err(|_| Error::Corrupt(format!("job field {name:?} out of range")))
}

fn time(value: Option<&str>, name: &str) -> Result<Option<Timestamp>> {
    match value {
        None => Ok(None),
        Some(text) => text
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .map(Some)
            .ok_or_else(|| Error::Corrupt(format!("job field {name:?} is not a time: {text:?}"))),
    }
}

/// Builds a job from its stored fields, `spec` already split into them.
fn job_from(stored: &Stored<'_>) -> Result<Job> {
    let jid =
        JobId::parse(text(stored.jid, "jid")?).map_err(|err| Error::Corrupt(err.to_string()))?;
    let status: JobStatus = text(stored.status, "status")?
        .parse()
        .map_err(|err: crate::ValidationError| Error::Corrupt(err.to_string()))?;
    let params = match stored.params {
        None | Some("") => Params::new(),
        Some(json) => serde_json::from_str(json)
            .map_err(|err| Error::Corrupt(format!("job params are not a JSON object: {err}")))?,
    };
    let create_time = time(stored.create_time, "create_time")?
        .ok_or_else(|| Error::Corrupt("job hash lacks field \"create_time\"".into()))?;
    // A successful job's progress and outcome go unwritten (see finish.lua).
    let succeeded = status == JobStatus::Success;
    let progress = if succeeded {
        1.0
    } else {
        stored
            .progress
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut history: Vec<Attempt> = match stored.history {
        // cjson writes an empty Lua table as an object.
        None | Some("" | "{}") => Vec::new(),
        Some(json) => serde_json::from_str(json)
            .map_err(|err| Error::Corrupt(format!("job history is not readable: {err}")))?,
    };
    let start_time = time(stored.start_time, "start_time")?;
    let end_time = time(stored.end_time, "end_time")?;
    // Absent until the first attempt.
    let attempts = stored
        .attempts
        .map_or(Ok(0), |value| count(Some(value), "attempts"))?;
    let error = stored.error.filter(|e| !e.is_empty()).map(str::to_owned);
    // The attempt that ended the job is kept in the hash's own fields, not
    // in `history` (see finish.lua).
    if let Some(outcome) = stored.outcome.or(succeeded.then_some("SUCCESS")) {
        let outcome = AttemptOutcome::parse(outcome)
            .ok_or_else(|| Error::Corrupt(format!("job outcome is unknown: {outcome:?}")))?;
        history.push(Attempt {
            number: Some(count(stored.attempts, "attempts")?),
            worker: stored.worker.unwrap_or_default().to_owned(),
            start_time,
            end_time,
            outcome,
            error: error.clone().filter(|_| outcome != AttemptOutcome::Success),
        });
    }

    Ok(Job {
        jid,
        status,
        start: number(stored.start, "start")?,
        end: number(stored.end, "end")?,
        kind: text(stored.kind, "kind")?.to_owned(),
        params,
        create_time,
        start_time,
        end_time,
        attempts,
        error,
        progress,
        max_attempts: count(stored.max_attempts, "max_attempts")?,
        timeout: std::time::Duration::from_millis(
            u64::try_from(number(stored.timeout_ms, "timeout_ms")?).unwrap_or_default(),
        ),
        history,
        // Checked when stored; an unreadable one only costs the trace link.
        trace_parent: stored
            .traceparent
            .and_then(|text| TraceParent::parse(text).ok()),
        version: u64::try_from(number(stored.version, "version")?).unwrap_or(0),
        seq: u64::try_from(number(stored.seq, "seq")?).unwrap_or(0),
        lease: stored
            .lease
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn queued_with_spec(spec: &str) -> Result<Job> {
        let mut stored = Stored::default();
        for (name, value) in [("jid", JID), ("status", "QUEUED"), ("version", "1")] {
            stored.set(name, value);
        }
        stored.set("seq", "4");
        stored.set("spec", spec);
        stored.job()
    }

    #[test]
    fn a_spec_gives_the_fields_it_holds_and_an_empty_part_is_absent() {
        let spec = ["1", "100", "sum", "", "1796016744523293", "3", "60000", ""].join("\0");
        let job = queued_with_spec(&spec).unwrap();
        assert_eq!((job.start, job.end, job.kind.as_str()), (1, 100, "sum"));
        assert!(job.params.is_empty());
        assert_eq!(job.create_time.timestamp_micros(), 1_796_016_744_523_293);
        assert_eq!((job.max_attempts, job.seq), (3, 4));
        assert_eq!(job.timeout, std::time::Duration::from_secs(60));
        assert!(job.trace_parent.is_none());
    }

    #[test]
    fn a_spec_with_parts_missing_or_to_spare_is_corrupt() {
        let parts = [
            "1",
            "100",
            "sum",
            "",
            "1796016744523293",
            "3",
            "60000",
            "",
            "",
        ];
        for count in [7, 9] {
            let err = queued_with_spec(&parts[..count].join("\0")).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("job spec has {count} parts, not 8")),
                "{err}"
            );
        }
    }

    #[test]
    fn nul_separated_parts_keep_empty_ones_and_the_rest() {
        let parts: Vec<&str> = NulSeparated::new("a\0\0b").collect();
        assert_eq!(parts, ["a", "", "b"]);
        let mut parts = NulSeparated::new("id\0spec\0of\0parts");
        assert_eq!(parts.next(), Some("id"));
        assert_eq!(parts.rest(), Some("spec\0of\0parts"));
        let mut last = NulSeparated::new("only");
        assert_eq!(last.next(), Some("only"));
        assert_eq!((last.next(), last.rest()), (None, None));
    }
}
