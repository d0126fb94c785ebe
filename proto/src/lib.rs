//! The Jobs gRPC schema (`jobs/v1/jobs.proto`, `jobs/v1/data.proto`), its
//! generated code, and every conversion between proto and domain types.
//!
//! # Layout
//!
//! - [`pb`]: the generated messages, client and server, as `prost` and
//!   `tonic` emit them.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded schema (with its imports and doc
//!   comments), for server reflection.
//! - Conversions: `From`/`TryFrom` between domain and proto types live here,
//!   where the orphan rule allows them, so no other crate converts by hand.
//!   JSON values map to `google.protobuf.Value`; integers a double cannot hold
//!   exactly travel as decimal strings. The dataset's conversions are in
//!   `data`.

mod data;

pub use data::load_record;

use jobs_core::{
    Attempt, AttemptOutcome, Job, JobOutcome, JobStatus, NewJob, Params, Timestamp, ValidationError,
};
use prost_types::{ListValue, Struct, value::Kind};
use serde_json::{Number, Value};

/// The generated `jobs.v1` code.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("jobs.v1");
}

/// The encoded `FileDescriptorSet` of the `jobs.v1` files and their imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/jobs_descriptor.bin"));

/// The largest integer magnitude a double holds exactly (2^53).
const MAX_EXACT_DOUBLE: u64 = 1 << 53;

impl From<JobStatus> for pb::JobStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => pb::JobStatus::Queued,
            JobStatus::Running => pb::JobStatus::Running,
            JobStatus::Error => pb::JobStatus::Error,
            JobStatus::Success => pb::JobStatus::Success,
            JobStatus::Cancelled => pb::JobStatus::Cancelled,
        }
    }
}

/// A status filter from the wire: unspecified means "any status".
pub fn status_filter(raw: i32) -> Result<Option<JobStatus>, ValidationError> {
    match pb::JobStatus::try_from(raw) {
        Ok(pb::JobStatus::Unspecified) => Ok(None),
        Ok(pb::JobStatus::Queued) => Ok(Some(JobStatus::Queued)),
        Ok(pb::JobStatus::Running) => Ok(Some(JobStatus::Running)),
        Ok(pb::JobStatus::Error) => Ok(Some(JobStatus::Error)),
        Ok(pb::JobStatus::Success) => Ok(Some(JobStatus::Success)),
        Ok(pb::JobStatus::Cancelled) => Ok(Some(JobStatus::Cancelled)),
        Err(_) => Err(ValidationError::new(
            "status",
            format!("{raw} is not a JobStatus value"),
        )),
    }
}

/// A domain time as a protobuf timestamp.
pub fn timestamp(time: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl From<Job> for pb::Job {
    fn from(job: Job) -> Self {
        pb::Job {
            jid: job.jid.to_string(),
            status: pb::JobStatus::from(job.status).into(),
            start: job.start,
            end: job.end,
            kind: job.kind,
            params: Some(params_to_struct(job.params)),
            create_time: Some(timestamp(job.create_time)),
            start_time: job.start_time.map(timestamp),
            end_time: job.end_time.map(timestamp),
            attempts: job.attempts,
            error: job.error.unwrap_or_default(),
            progress: job.progress,
            max_attempts: job.max_attempts,
            timeout: prost_types::Duration::try_from(job.timeout).ok(),
            history: job.history.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Attempt> for pb::JobAttempt {
    fn from(attempt: Attempt) -> Self {
        pb::JobAttempt {
            number: attempt.number.unwrap_or(0),
            worker: attempt.worker,
            start_time: attempt.start_time.map(timestamp),
            end_time: attempt.end_time.map(timestamp),
            outcome: outcome_name(attempt.outcome).to_owned(),
            error: attempt.error.unwrap_or_default(),
        }
    }
}

/// The name of an attempt's outcome, as the schema documents it.
pub fn outcome_name(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Success => "SUCCESS",
        AttemptOutcome::Failed => "FAILED",
        AttemptOutcome::Error => "ERROR",
        AttemptOutcome::Cancelled => "CANCELLED",
        AttemptOutcome::Release => "RELEASE",
        AttemptOutcome::Lost => "LOST",
    }
}

impl TryFrom<pb::CreateJobRequest> for NewJob {
    type Error = ValidationError;

    fn try_from(request: pb::CreateJobRequest) -> Result<Self, Self::Error> {
        let params = request.params.map(struct_to_params).transpose()?;
        let mut job = NewJob::parse(request.start, request.end, &request.kind, params)?;
        if request.max_attempts != 0 {
            job = job.with_max_attempts(request.max_attempts)?;
        }
        if let Some(timeout) = request.timeout {
            job = job.with_timeout(positive_duration(timeout, "timeout")?)?;
        }
        if !request.idempotency_key.is_empty() {
            job = job.with_idempotency_key(&request.idempotency_key)?;
        }
        Ok(job)
    }
}

/// The largest `nanos` of a well-formed `google.protobuf.Duration`.
const MAX_DURATION_NANOS: i32 = 999_999_999;

/// A `google.protobuf.Duration` that is well-formed and not negative, as a
/// std `Duration`; the error names `field`. prost's own conversion
/// normalises what the schema forbids (`{seconds: 1, nanos: -5}` becomes
/// 0.999999995 s), which would run a job under a timeout nobody wrote.
fn positive_duration(
    duration: prost_types::Duration,
    field: &str,
) -> Result<std::time::Duration, ValidationError> {
    let prost_types::Duration { seconds, nanos } = duration;
    if !(-MAX_DURATION_NANOS..=MAX_DURATION_NANOS).contains(&nanos) {
        return Err(ValidationError::new(
            field,
            format!(
                "nanos must be from -999999999 to 999999999 (got {nanos}); \
                 carry whole seconds in seconds"
            ),
        ));
    }
    if (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
        return Err(ValidationError::new(
            field,
            format!("seconds ({seconds}) and nanos ({nanos}) must not have opposite signs"),
        ));
    }
    match (u64::try_from(seconds), u32::try_from(nanos)) {
        (Ok(seconds), Ok(nanos)) => Ok(std::time::Duration::new(seconds, nanos)),
        _ => Err(ValidationError::new(
            field,
            format!("must not be negative (got {seconds} s and {nanos} ns)"),
        )),
    }
}

/// A batch of submissions, each checked as [`NewJob`] from a
/// `CreateJobRequest` is; the first bad one is named by its place
/// (`jobs[3].end`). The batch's size is checked first, so an oversized one
/// is refused before any job is parsed.
pub fn new_jobs(request: pb::CreateJobsRequest) -> Result<Vec<NewJob>, ValidationError> {
    jobs_core::check_batch_size(request.jobs.len())?;
    request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| NewJob::try_from(job).map_err(|err| err.within(&format!("jobs[{i}]"))))
        .collect()
}

impl From<JobOutcome> for pb::GetJobResultResponse {
    fn from(outcome: JobOutcome) -> Self {
        pb::GetJobResultResponse {
            jid: outcome.jid.to_string(),
            status: pb::JobStatus::from(outcome.status).into(),
            result: outcome.result.map(json_to_value),
            error: outcome.error.unwrap_or_default(),
        }
    }
}

/// JSON params as a protobuf `Struct`.
pub fn params_to_struct(params: Params) -> Struct {
    Struct {
        fields: params
            .into_iter()
            .map(|(key, value)| (key, json_to_value(value)))
            .collect(),
    }
}

/// A protobuf `Struct` as JSON params. Whole numbers become integers, so
/// `{"fail_attempts": 2}` sent as a double reads as the integer 2.
pub fn struct_to_params(params: Struct) -> Result<Params, ValidationError> {
    params
        .fields
        .into_iter()
        .map(|(key, value)| {
            let path = format!("params.{key}");
            value_to_json(value, &path).map(|value| (key, value))
        })
        .collect()
}

/// A JSON value as a protobuf `Value`. Integers beyond ±2^53 become decimal
/// strings, as the proto3 JSON mapping does for int64, so none loses digits.
pub fn json_to_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(flag),
        Value::Number(number) => number_kind(&number),
        Value::String(text) => Kind::StringValue(text),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(params_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn number_kind(number: &Number) -> Kind {
    let exact = |magnitude: u64, value: f64| {
        if magnitude <= MAX_EXACT_DOUBLE {
            Kind::NumberValue(value)
        } else {
            Kind::StringValue(number.to_string())
        }
    };
    if let Some(int) = number.as_i64() {
        #[allow(clippy::cast_precision_loss)] // exact below 2^53, checked
        return exact(int.unsigned_abs(), int as f64);
    }
    if let Some(int) = number.as_u64() {
        #[allow(clippy::cast_precision_loss)]
        return exact(int, int as f64);
    }
    let text = number.to_string();
    if text.contains(['.', 'e', 'E']) {
        Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN))
    } else {
        // An integer wider than 64 bits (a large sum).
        Kind::StringValue(text)
    }
}

/// A protobuf `Value` as JSON; `path` names it in errors.
pub fn value_to_json(value: prost_types::Value, path: &str) -> Result<Value, ValidationError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(flag),
        Some(Kind::StringValue(text)) => Value::String(text),
        Some(Kind::NumberValue(number)) => number_to_json(number, path)?,
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, item)| value_to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(map)) => Value::Object(
            map.fields
                .into_iter()
                .map(|(key, item)| {
                    let inner = format!("{path}.{key}");
                    value_to_json(item, &inner).map(|item| (key, item))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn number_to_json(number: f64, path: &str) -> Result<Value, ValidationError> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT_DOUBLE as f64 {
        return Ok(Value::Number(Number::from(number as i64)));
    }
    Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| ValidationError::new(path, "must be a finite number"))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn the_descriptor_set_decodes_and_describes_the_service() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|file| file.name() == "jobs/v1/jobs.proto")
            .expect("jobs.proto is in the set");
        assert_eq!(file.package(), "jobs.v1");
        let service = &file.service[0];
        assert_eq!(service.name(), "JobService");
        let methods: Vec<_> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "CreateJob",
                "CreateJobs",
                "GetJob",
                "ListJobs",
                "GetJobResult",
                "WatchJob",
                "CancelJob"
            ]
        );
        assert!(service.method[5].server_streaming());
        // Imports travel with it, so reflection clients can resolve them.
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/struct.proto")
        );
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto")
        );
        // Doc comments travel too (grpcurl describe shows them).
        assert!(
            file.source_code_info
                .as_ref()
                .is_some_and(|info| !info.location.is_empty())
        );
    }

    #[test]
    fn a_batch_names_the_job_at_fault() {
        let job = |start, end| pb::CreateJobRequest {
            start,
            end,
            ..Default::default()
        };
        let ok = new_jobs(pb::CreateJobsRequest {
            jobs: vec![job(1, 2), job(3, 4)],
        })
        .unwrap();
        assert_eq!(ok.len(), 2);
        let err = new_jobs(pb::CreateJobsRequest {
            jobs: vec![job(1, 2), job(5, 1)],
        })
        .unwrap_err();
        assert_eq!(err.field(), "jobs[1].end");
        let err = new_jobs(pb::CreateJobsRequest { jobs: vec![] }).unwrap_err();
        assert_eq!(err.field(), "jobs");
    }

    #[test]
    fn big_integers_travel_as_decimal_strings() {
        let small = json_to_value(Value::from(5050));
        assert_eq!(small.kind, Some(Kind::NumberValue(5050.0)));
        let big: Value = serde_json::from_str("-85070591730234615847396907784232501249").unwrap();
        assert_eq!(
            json_to_value(big).kind,
            Some(Kind::StringValue(
                "-85070591730234615847396907784232501249".into()
            ))
        );
        let beyond_double = Value::from(i64::MAX);
        assert_eq!(
            json_to_value(beyond_double).kind,
            Some(Kind::StringValue(i64::MAX.to_string()))
        );
        assert_eq!(
            json_to_value(serde_json::json!(0.5)).kind,
            Some(Kind::NumberValue(0.5))
        );
    }

    #[test]
    fn whole_doubles_in_params_read_as_integers() {
        let value = prost_types::Value {
            kind: Some(Kind::NumberValue(2.0)),
        };
        assert_eq!(
            value_to_json(value, "params.n").unwrap(),
            serde_json::json!(2)
        );
        let nan = prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert_eq!(
            value_to_json(nan, "params.n").unwrap_err().field(),
            "params.n"
        );
    }

    #[test]
    fn only_well_formed_non_negative_durations_convert() {
        let duration = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(
            positive_duration(duration(1, 500_000_000), "timeout").unwrap(),
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(
            positive_duration(duration(0, 999_999_999), "timeout").unwrap(),
            std::time::Duration::new(0, 999_999_999)
        );
        for (seconds, nanos) in [
            (1, -5),
            (-1, 5),
            (0, 1_000_000_000),
            (0, -1_000_000_000),
            (-1, 0),
            (0, -1),
            (-1, -5),
        ] {
            let err = positive_duration(duration(seconds, nanos), "jobs[2].timeout").unwrap_err();
            assert_eq!(err.field(), "jobs[2].timeout", "{seconds} s {nanos} ns");
        }
    }
}
