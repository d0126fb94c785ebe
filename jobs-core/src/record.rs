//! The storage representation of a job (a Redis hash of strings) and its
//! conversion to the domain [`Job`]. Private: nothing outside this crate sees
//! how a job is stored.

use std::collections::HashMap;

use chrono::DateTime;

use crate::{
    Attempt, AttemptOutcome, Error, Job, JobId, JobStatus, Params, Result, Timestamp, TraceParent,
};

/// Builds a job from a hash's fields, given as HGETALL's flat
/// `field, value, field, value, ...` sequence.
pub(crate) fn job_from_pairs<I>(pairs: I) -> Result<Job>
where
    I: IntoIterator<Item = String>,
{
    let mut fields = HashMap::new();
    let mut iter = pairs.into_iter();
    while let (Some(field), Some(value)) = (iter.next(), iter.next()) {
        fields.insert(field, value);
    }
    job_from_fields(&fields)
}

/// Builds a job from a hash read as a map.
pub(crate) fn job_from_fields(fields: &HashMap<String, String>) -> Result<Job> {
    job_from(|name| fields.get(name).map(String::as_str))
}

/// The fields a job is created with and never changes, stored together in
/// its hash's `spec` field, joined by NUL, in this order (create.lua). One
/// field instead of eight keeps the hash short, and every later read and
/// write of it faster; the claim passes it on to the worker as it is. NUL
/// appears in none of them: numbers, a known kind, JSON text (which escapes
/// control characters), a time, a checked traceparent.
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

/// Builds a job from its stored fields, each looked up by name. A hash
/// without `spec` (written by an earlier release) has these as fields of
/// their own.
pub(crate) fn job_from<'a>(stored: impl Fn(&str) -> Option<&'a str>) -> Result<Job> {
    let spec: Option<Vec<&str>> = stored("spec").map(|spec| spec.split('\0').collect());
    if let Some(parts) = &spec
        && parts.len() != SPEC_FIELDS.len()
    {
        return Err(Error::Corrupt(format!(
            "job spec has {} parts, not {}",
            parts.len(),
            SPEC_FIELDS.len()
        )));
    }
    let field = |name: &str| match (&spec, SPEC_FIELDS.iter().position(|f| *f == name)) {
        (Some(parts), Some(at)) => Some(parts[at]).filter(|value| !value.is_empty()),
        _ => stored(name),
    };
    let text = |name: &str| {
        field(name).ok_or_else(|| Error::Corrupt(format!("job hash lacks field {name:?}")))
    };
    let number = |name: &str| -> Result<i64> {
        let value = text(name)?;
        value
            .parse()
            .map_err(|_| Error::Corrupt(format!("job field {name:?} is not an integer: {value:?}")))
    };
    let time = |name: &str| -> Result<Option<Timestamp>> {
        match field(name) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .map(Some)
                .ok_or_else(|| {
                    Error::Corrupt(format!("job field {name:?} is not a time: {value:?}"))
                }),
        }
    };

    let jid = JobId::parse(text("jid")?).map_err(|err| Error::Corrupt(err.to_string()))?;
    let status: JobStatus = text("status")?
        .parse()
        .map_err(|err: crate::ValidationError| Error::Corrupt(err.to_string()))?;
    let params = match field("params") {
        None | Some("") => Params::new(),
        Some(json) => serde_json::from_str(json)
            .map_err(|err| Error::Corrupt(format!("job params are not a JSON object: {err}")))?,
    };
    let create_time = time("create_time")?
        .ok_or_else(|| Error::Corrupt("job hash lacks field \"create_time\"".into()))?;
    // A successful job's progress and outcome go unwritten (see finish.lua).
    let succeeded = status == JobStatus::Success;
    let progress = if succeeded {
        1.0
    } else {
        field("progress")
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut history: Vec<Attempt> = match field("history") {
        // cjson writes an empty Lua table as an object.
        None | Some("" | "{}") => Vec::new(),
        Some(json) => serde_json::from_str(json)
            .map_err(|err| Error::Corrupt(format!("job history is not readable: {err}")))?,
    };
    let count = |name: &str| -> Result<u32> {
        u32::try_from(number(name)?)
            .map_err(|_| Error::Corrupt(format!("job field {name:?} out of range")))
    };
    let error = field("error").filter(|e| !e.is_empty()).map(str::to_owned);
    // The attempt that ended the job is kept in the hash's own fields, not
    // in `history` (see finish.lua).
    if let Some(outcome) = field("outcome").or(succeeded.then_some("SUCCESS")) {
        let outcome = AttemptOutcome::parse(outcome)
            .ok_or_else(|| Error::Corrupt(format!("job outcome is unknown: {outcome:?}")))?;
        history.push(Attempt {
            number: Some(count("attempts")?),
            worker: field("worker").unwrap_or_default().to_owned(),
            start_time: time("start_time")?,
            end_time: time("end_time")?,
            outcome,
            error: error.clone().filter(|_| outcome != AttemptOutcome::Success),
        });
    }

    Ok(Job {
        jid,
        status,
        start: number("start")?,
        end: number("end")?,
        kind: text("kind")?.to_owned(),
        params,
        create_time,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
        // Absent until the first attempt.
        attempts: field("attempts").map_or(Ok(0), |_| count("attempts"))?,
        error,
        progress,
        max_attempts: count("max_attempts")?,
        timeout: std::time::Duration::from_millis(
            u64::try_from(number("timeout_ms")?).unwrap_or_default(),
        ),
        history,
        // Checked when stored; an unreadable one only costs the trace link.
        trace_parent: field("traceparent").and_then(|text| TraceParent::parse(text).ok()),
        version: u64::try_from(number("version")?).unwrap_or(0),
        seq: u64::try_from(number("seq")?).unwrap_or(0),
        lease: field("lease")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
    })
}
