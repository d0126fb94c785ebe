//! `/jobs`: the classic HTTP contract. Each handler parses the request into
//! domain values, makes the same store call as its gRPC twin, and writes the
//! job in the classic shape.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::SecondsFormat;
use jobs_core::{
    Job, JobId, JobOutcome, JobStatus, ListQuery, MAX_BATCH_JOBS, MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_TIMEOUT, NewJob, Params, Timestamp, TraceParent, ValidationError, integer_text,
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{Error as _, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::Value;
use utoipa::{
    IntoParams, ToSchema,
    openapi::{
        RefOr,
        schema::{ArrayBuilder, OneOfBuilder, Ref, Schema},
    },
};

use super::{
    AppState, Problem, TAG_JOBS,
    extract::{Json, NoQuery, Object, Path, Query},
    next_link, page_limit,
};
use crate::{
    errors::problem,
    observe::{TRACEPARENT, record_jid},
};

/// A job's status as the classic contract writes it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) enum ClassicStatus {
    /// Accepted, waiting for a worker.
    #[serde(rename = "QUEUED")]
    Queued,
    /// A worker is running it.
    #[serde(rename = "RUNNING")]
    Running,
    /// Finished with an error.
    #[serde(rename = "FINISHED -- ERROR")]
    Error,
    /// Finished successfully; its result is ready.
    #[serde(rename = "FINISHED -- SUCCESS")]
    Success,
    /// Cancelled before it finished.
    #[serde(rename = "FINISHED -- CANCELLED")]
    Cancelled,
}

impl From<JobStatus> for ClassicStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => ClassicStatus::Queued,
            JobStatus::Running => ClassicStatus::Running,
            JobStatus::Error => ClassicStatus::Error,
            JobStatus::Success => ClassicStatus::Success,
            JobStatus::Cancelled => ClassicStatus::Cancelled,
        }
    }
}

/// A status filter: the classic strings, or the short names.
fn parse_status(text: &str) -> Result<JobStatus, Problem> {
    Ok(match text {
        "QUEUED" => JobStatus::Queued,
        "RUNNING" => JobStatus::Running,
        "FINISHED -- ERROR" | "ERROR" => JobStatus::Error,
        "FINISHED -- SUCCESS" | "SUCCESS" => JobStatus::Success,
        "FINISHED -- CANCELLED" | "CANCELLED" => JobStatus::Cancelled,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "status: {text:?} is not a status (QUEUED, RUNNING, FINISHED -- ERROR, \
                     FINISHED -- SUCCESS, FINISHED -- CANCELLED, or ERROR, SUCCESS, CANCELLED)"
                ),
            )
            .with_field("status"));
        }
    })
}

/// The status filter values, for the schema.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // only its schema is used: the filter is parsed by hand
pub(crate) enum StatusFilter {
    /// Queued jobs.
    #[serde(rename = "QUEUED")]
    Queued,
    /// Running jobs.
    #[serde(rename = "RUNNING")]
    Running,
    /// Failed jobs.
    #[serde(rename = "FINISHED -- ERROR")]
    FinishedError,
    /// Successful jobs.
    #[serde(rename = "FINISHED -- SUCCESS")]
    FinishedSuccess,
    /// Cancelled jobs.
    #[serde(rename = "FINISHED -- CANCELLED")]
    FinishedCancelled,
    /// Failed jobs.
    #[serde(rename = "ERROR")]
    Error,
    /// Successful jobs.
    #[serde(rename = "SUCCESS")]
    Success,
    /// Cancelled jobs.
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

fn rfc3339(time: Timestamp) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A job in the classic shape: `jid`, `status`, `start`, `end`,
/// `start_time`, `end_time` first, then the rest.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobJson {
    /// The job's id.
    #[schema(format = "uuid")]
    jid: String,
    /// Where the job is in its life.
    status: ClassicStatus,
    /// First integer of the job's inclusive range.
    start: i64,
    /// Last integer of the job's inclusive range.
    end: i64,
    /// When a worker started its latest attempt (RFC 3339, UTC); null until then.
    #[schema(format = DateTime)]
    start_time: Option<String>,
    /// When the job finished (RFC 3339, UTC); null until then.
    #[schema(format = DateTime)]
    end_time: Option<String>,
    /// Which handler runs the job.
    kind: String,
    /// Options of the job's kind; empty when none.
    #[schema(value_type = Object)]
    params: Params,
    /// When the job was accepted (RFC 3339, UTC).
    #[schema(format = DateTime)]
    create_time: String,
    /// How many times a worker has started the job.
    attempts: u32,
    /// Why the job failed or was cancelled; null otherwise.
    error: Option<String>,
    /// How far the running attempt has got, from 0 to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    progress: f64,
    /// How many attempts the job gets before it ends `FINISHED -- ERROR`.
    max_attempts: u32,
    /// How long one attempt may run, in milliseconds.
    timeout_ms: u64,
    /// Every attempt so far, oldest first.
    history: Vec<AttemptJson>,
}

/// How one attempt at a job went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptJson {
    /// Which attempt, from 1; null for a run handed back at shutdown, which
    /// does not count.
    number: Option<u32>,
    /// The worker that ran it.
    worker: String,
    /// When it started (RFC 3339, UTC).
    #[schema(format = DateTime)]
    start_time: Option<String>,
    /// When it ended (RFC 3339, UTC).
    #[schema(format = DateTime)]
    end_time: Option<String>,
    /// How it ended: SUCCESS, FAILED (retried if attempts remained), ERROR,
    /// CANCELLED, RELEASE (handed back at shutdown) or LOST (its worker
    /// stopped renewing the lease).
    outcome: &'static str,
    /// Why it failed; null on success.
    error: Option<String>,
}

impl From<jobs_core::Attempt> for AttemptJson {
    fn from(attempt: jobs_core::Attempt) -> Self {
        Self {
            number: attempt.number,
            worker: attempt.worker,
            start_time: attempt.start_time.map(rfc3339),
            end_time: attempt.end_time.map(rfc3339),
            outcome: jobs_proto::outcome_name(attempt.outcome),
            error: attempt.error,
        }
    }
}

impl From<Job> for JobJson {
    fn from(job: Job) -> Self {
        Self {
            jid: job.jid.to_string(),
            status: job.status.into(),
            start: job.start,
            end: job.end,
            start_time: job.start_time.map(rfc3339),
            end_time: job.end_time.map(rfc3339),
            kind: job.kind,
            params: job.params,
            create_time: rfc3339(job.create_time),
            attempts: job.attempts,
            error: job.error,
            progress: job.progress,
            max_attempts: job.max_attempts,
            timeout_ms: u64::try_from(job.timeout.as_millis()).unwrap_or(u64::MAX),
            history: job.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// The job to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJob {
    /// First integer of the inclusive range; must not exceed `end`.
    #[serde(deserialize_with = "whole_i64")]
    start: i64,
    /// Last integer of the inclusive range.
    #[serde(deserialize_with = "whole_i64")]
    end: i64,
    /// Which handler runs the job; `sum` when absent. An empty string is
    /// refused (400): it names no kind.
    #[serde(default)]
    #[schema(example = "sum")]
    kind: Option<String>,
    /// Options of the kind (`fail` takes `message` and `fail_attempts`);
    /// at most 64 KiB as JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    params: Option<Params>,
    /// How many attempts the job gets (1 to 100); the server's default when
    /// absent.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<u32>,
    /// How long one attempt may run, in milliseconds (up to a day); the
    /// server's default when absent.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    timeout_ms: Option<u64>,
}

impl CreateJob {
    /// The job this body asks for; the error names the field.
    fn parse(self) -> Result<NewJob, ValidationError> {
        let mut new =
            NewJob::parse_optional_kind(self.start, self.end, self.kind.as_deref(), self.params)?;
        if let Some(attempts) = self.max_attempts {
            new = new.with_max_attempts(attempts)?;
        }
        if let Some(millis) = self.timeout_ms {
            // The domain's message is about a duration (`got 0ns`); this
            // client wrote milliseconds, under another name.
            new = new
                .with_timeout(std::time::Duration::from_millis(millis))
                .map_err(|_| {
                    ValidationError::new(
                        "timeout_ms",
                        format!(
                            "must be from 1 to {} milliseconds, a day (got {millis})",
                            MAX_TIMEOUT.as_millis()
                        ),
                    )
                })?;
        }
        Ok(new)
    }
}

/// A 64-bit integer however JSON writes it: `2.0` and `2e3` are whole
/// numbers to JSON Schema and to many encoders, so they are taken too.
fn whole_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    whole(&number).ok_or_else(|| {
        D::Error::custom(format!(
            "{number} is not a whole number from -2^63 to 2^63-1"
        ))
    })
}

/// An optional non-negative integer, written however JSON writes it.
fn whole_opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
{
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => whole(&number)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range"))),
    }
}

fn whole<T: std::str::FromStr>(number: &serde_json::Number) -> Option<T> {
    // Nearly every number sent is a plain integer, which parses as written;
    // only `2.0` or `2e3` need the canonical text first.
    number
        .as_str()
        .parse()
        .ok()
        .or_else(|| integer_text(number).and_then(|text| text.parse().ok()))
}

/// The outcome of a finished job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResultJson {
    /// The job's id.
    #[schema(format = "uuid")]
    jid: String,
    /// What the job's handler returned (a sum is an exact JSON integer of any
    /// size); null unless the job succeeded.
    result: Value,
    /// The job's terminal status.
    status: ClassicStatus,
    /// Why the job failed or was cancelled; null on success.
    error: Option<String>,
}

impl From<JobOutcome> for ResultJson {
    fn from(outcome: JobOutcome) -> Self {
        Self {
            jid: outcome.jid.to_string(),
            result: outcome.result.unwrap_or(Value::Null),
            status: outcome.status.into(),
            error: outcome.error,
        }
    }
}

/// Which page of jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Only jobs with this status.
    #[param(value_type = Option<StatusFilter>)]
    status: Option<String>,
    /// The most jobs to return (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: taken from the previous page's `Link` header.
    #[param(pattern = "^[0-9]{0,19}$")]
    page_token: Option<String>,
}

/// A job's id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct JidParam {
    /// The job's id (a UUID).
    #[param(format = "uuid")]
    jid: String,
}

/// The header that makes `POST /jobs` safe to repeat.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The idempotency key as errors name it: the header a REST client sent.
const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";

/// The problem for a failed create. The domain and the store name the
/// idempotency key by its gRPC field (`idempotency_key`, or
/// `[3].idempotency_key` for a job of a batch); a REST client sent the
/// header, so the problem names that, and the job of an array in words.
fn create_problem(err: impl Into<jobs_core::Error>) -> Problem {
    match err.into() {
        jobs_core::Error::Invalid(invalid) if invalid.field().ends_with("idempotency_key") => {
            let job = invalid
                .field()
                .strip_suffix("idempotency_key")
                .and_then(|item| item.strip_suffix('.'))
                .filter(|item| !item.is_empty());
            let message = match job {
                Some(job) => format!("{} (the key of job {job} of the array)", invalid.message()),
                None => invalid.message().to_owned(),
            };
            problem(ValidationError::new(IDEMPOTENCY_KEY_FIELD, message))
        }
        err => problem(err),
    }
}

fn parse_jid(text: &str) -> Result<JobId, Problem> {
    JobId::parse(text).map_err(problem)
}

/// The body of `POST /jobs`: one job, or an array of 1 to
/// [`MAX_BATCH_JOBS`] jobs.
#[derive(Debug)]
pub(crate) enum CreateBody {
    /// One job: the classic contract.
    One(CreateJob),
    /// A batch, created with one store call.
    Many(Vec<CreateJob>),
}

impl<'de> Deserialize<'de> for CreateBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;

        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = CreateBody;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object (a job) or an array of them")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CreateBody, A::Error> {
                CreateJob::deserialize(MapAccessDeserializer::new(map)).map(CreateBody::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CreateBody, A::Error> {
                let mut jobs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_JOBS));
                // Each element goes through `Object`, as a single job does,
                // so `[[1, 2]]` is refused too.
                while let Some(Object(job)) = seq.next_element::<Object<CreateJob>>()? {
                    jobs.push(job);
                }
                Ok(CreateBody::Many(jobs))
            }
        }

        deserializer.deserialize_any(BodyVisitor)
    }
}

// By hand: utoipa derives no `oneOf` of an object and an array of it with
// the array's bounds.
impl utoipa::PartialSchema for CreateBody {
    fn schema() -> RefOr<Schema> {
        let job = || Ref::from_schema_name(<CreateJob as ToSchema>::name());
        OneOfBuilder::new()
            .item(job())
            .item(
                ArrayBuilder::new()
                    .items(job())
                    .min_items(Some(1))
                    .max_items(Some(MAX_BATCH_JOBS)),
            )
            .description(Some(
                "One job, or an array of 1 to 1000 jobs created together",
            ))
            .into()
    }
}

impl ToSchema for CreateBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            <CreateJob as ToSchema>::name().into_owned(),
            <CreateJob as utoipa::PartialSchema>::schema(),
        ));
        <CreateJob as ToSchema>::schemas(schemas);
    }
}

/// What `POST /jobs` answers: the job, or the array of jobs (untagged,
/// so each is written as itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Created {
    /// The job, for one job.
    One(Box<JobJson>),
    /// The jobs, in the order sent, for an array.
    Many(Vec<JobJson>),
}

/// Create a job, or many.
///
/// Saves and queues the job in one atomic step, and returns it with status
/// `QUEUED`. Nothing is stored when the request is refused.
///
/// An array of jobs (1 to 1000) is created with one store call and answered
/// with the array of jobs, in order, without a `Location`. Every job is
/// checked first: one bad job refuses the whole array, naming it by its
/// index (`[3].end`), and nothing is stored. With an `Idempotency-Key`, job
/// `i` of the array gets the key `{key}#{i}`, so repeating the same array
/// returns the same jobs (200 when none was new); the key used for another
/// array, or for a single job, is refused and nothing is stored.
#[utoipa::path(
    post, path = "/jobs", operation_id = "create_job", tag = TAG_JOBS,
    request_body(content = CreateBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255,
            description = "Makes the request safe to repeat: a repeat with the same key (within \
                `JOBS_IDEMPOTENCY_TTL_SECS`) returns the job first created, with 200; the same key \
                with another job, or another array, is refused. 1 to 255 printable ASCII characters: letters, digits, \
                punctuation and spaces, no tab or other control character (for an array, 251, as job \
                `i` gets the key `{key}#{i}`). Spaces around the value are not part of it."),
    ),
    responses(
        (status = 201, description = "The job, queued; for an array, the array of jobs, in order", body = Created,
            headers(("Location" = String, description = "The job's URL, `/jobs/{jid}` (one job only)"))),
        (status = 200, description = "A repeat with the same Idempotency-Key: the job (or the array of jobs) \
            first created, as it is now; nothing new was stored", body = Created,
            headers(("Location" = String, description = "The job's URL, `/jobs/{jid}` (one job only)"))),
        (status = 400, description = "Malformed JSON, a value the job cannot take, a bad Idempotency-Key or one already used for another job, or a query parameter (this route takes none); the field, header or parameter is named", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not all arrive within `JOBS_HTTP_BODY_TIMEOUT_MS`; the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON, or is encoded (a `Content-Encoding` other than `identity`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape: a wrong type, a missing or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Redis did not confirm the write in time: the job may have been created. Repeat the request with the same Idempotency-Key to be sure it is created once; without one, look for it first", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    _: NoQuery,
    headers: axum::http::HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<Response, Problem> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        // Bytes past ASCII fail here; a control character, in the domain.
        Some(key) => Some(key.to_str().map_err(|_| {
            problem(ValidationError::new(
                IDEMPOTENCY_KEY_FIELD,
                "must be printable ASCII (letters, digits, punctuation and spaces)",
            ))
        })?),
    };
    let caller = headers.get(TRACEPARENT).map(|value| value.as_bytes());
    let parent = jobs_worker::telemetry::trace_parent_to_store(caller);
    match body {
        CreateBody::One(body) => create_one(&state, body, key, parent).await,
        CreateBody::Many(bodies) => create_many(&state, bodies, key, parent).await,
    }
}

/// The classic contract: 201, `Location`, the job.
async fn create_one(
    state: &AppState,
    body: CreateJob,
    key: Option<&str>,
    parent: Option<TraceParent>,
) -> Result<Response, Problem> {
    let mut new = body.parse().map_err(problem)?;
    if let Some(key) = key {
        new = new.with_idempotency_key(key).map_err(create_problem)?;
    }
    if let Some(parent) = parent {
        new = new.with_trace_parent(parent);
    }
    let created = state.store.create(&new).await.map_err(create_problem)?;
    let job = created.job;
    record_jid(&job.jid);
    if !created.replayed {
        state.observer.created(&job.kind);
    }
    tracing::debug!(jid = %job.jid, kind = %job.kind, replayed = created.replayed, "job created");
    let location = HeaderValue::try_from(format!("/jobs/{}", job.jid))
        .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "bad job id"))?;
    // A repeat with the same Idempotency-Key created nothing: 200, not 201.
    let status = if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(Created::One(Box::new(JobJson::from(job)))),
    )
        .into_response())
}

/// An array: every job checked, then one store call; 201 and the jobs.
async fn create_many(
    state: &AppState,
    bodies: Vec<CreateJob>,
    key: Option<&str>,
    parent: Option<TraceParent>,
) -> Result<Response, Problem> {
    // About the whole body, so no field is named.
    jobs_core::check_batch_size(bodies.len())
        .map_err(|err| Problem::new(StatusCode::BAD_REQUEST, err.message()))?;
    let mut batch = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let at = |err: ValidationError| problem(err.within(&format!("[{i}]")));
        let mut new = body.parse().map_err(at)?;
        if let Some(key) = key {
            new = new
                .with_idempotency_key(&format!("{key}#{i}"))
                .map_err(|_| {
                    problem(ValidationError::new(
                        IDEMPOTENCY_KEY_FIELD,
                        format!(
                            "with an array, must be 1 to {} bytes (each job's key is the \
                             header's value and `#` and its index)",
                            MAX_IDEMPOTENCY_KEY_BYTES - 4
                        ),
                    ))
                })?;
        }
        if let Some(parent) = &parent {
            new = new.with_trace_parent(parent.clone());
        }
        batch.push(new);
    }
    let created = match key {
        Some(key) => state.store.create_many_under(key, &batch).await,
        None => state.store.create_many(&batch).await,
    }
    .map_err(create_problem)?;
    let replayed = created.iter().all(|created| created.replayed);
    let mut jobs = Vec::with_capacity(created.len());
    for created in created {
        if !created.replayed {
            state.observer.created(&created.job.kind);
        }
        jobs.push(JobJson::from(created.job));
    }
    tracing::debug!(count = jobs.len(), replayed, "jobs created");
    // A repeat of the same array with the same key created nothing.
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(Created::Many(jobs))).into_response())
}

/// List jobs.
///
/// Newest first, one page at a time; the next page's URL is in the `Link`
/// header (`rel="next"`), absent on the last page.
#[utoipa::path(
    get, path = "/jobs", operation_id = "list_jobs", tag = TAG_JOBS,
    params(ListParams),
    responses(
        (status = 200, description = "The jobs, newest first. A page holds fewer than `limit` jobs when they are large (at most 512 KiB of job data, and always at least one job): only a missing `Link` header marks the last page", body = Vec<JobJson>,
            headers(("Link" = String, description = "`</jobs?…>; rel=\"next\"`: the next page, when there is one"))),
        (status = 400, description = "A bad status, limit or page token, or an unknown parameter (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let status = params.status.as_deref().map(parse_status).transpose()?;
    let limit = page_limit(params.limit.as_deref())?;
    let token = params.page_token.unwrap_or_default();
    let query = ListQuery::new(limit.into(), &token, status).map_err(problem)?;
    let page = state.store.list(&query).await.map_err(problem)?;
    let jobs: Vec<JobJson> = page.jobs.into_iter().map(Into::into).collect();
    let mut headers = HeaderMap::new();
    if let Some(next) = page.next_page_token {
        let filter = params.status.as_deref().map(|status| ("status", status));
        headers.insert(header::LINK, next_link("/jobs", limit, &next, filter)?);
    }
    Ok((headers, axum::Json(jobs)).into_response())
}

/// Get a job.
#[utoipa::path(
    get, path = "/jobs/{jid}", operation_id = "get_job", tag = TAG_JOBS,
    params(JidParam),
    responses(
        (status = 200, description = "The job as it is now", body = JobJson),
        (status = 400, description = "The id is not a UUID, or a query parameter was sent (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: NoQuery,
    Path(param): Path<JidParam>,
) -> Result<axum::Json<JobJson>, Problem> {
    let jid = parse_jid(&param.jid)?;
    let job = state.store.get(&jid).await.map_err(problem)?;
    Ok(axum::Json(job.into()))
}

/// Cancel a job.
///
/// A queued job ends `FINISHED -- CANCELLED` at once; a running one is
/// stopped by its worker shortly after (it is returned still `RUNNING`).
#[utoipa::path(
    delete, path = "/jobs/{jid}", operation_id = "cancel_job", tag = TAG_JOBS,
    params(JidParam),
    responses(
        (status = 200, description = "The job after the request", body = JobJson),
        (status = 400, description = "The id is not a UUID, or a query parameter was sent (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has already finished", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    _: NoQuery,
    Path(param): Path<JidParam>,
) -> Result<axum::Json<JobJson>, Problem> {
    let jid = parse_jid(&param.jid)?;
    record_jid(&jid);
    let job = state.store.cancel(&jid).await.map_err(problem)?;
    state.observer.cancelled(&job.kind, job.status);
    tracing::info!(%jid, status = %job.status, "cancellation requested");
    Ok(axum::Json(job.into()))
}

/// Get a job's result.
///
/// For a job that succeeded, its `result`; for one that failed or was
/// cancelled, its `error`. 409 while it is queued or running.
#[utoipa::path(
    get, path = "/jobs/{jid}/results", operation_id = "get_job_result", tag = TAG_JOBS,
    params(JidParam),
    responses(
        (status = 200, description = "The job's outcome", body = ResultJson),
        (status = 400, description = "The id is not a UUID, or a query parameter was sent (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not finished yet", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The job succeeded, but its result has expired: results are kept JOBS_RESULT_TTL_SECS after their job ends", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn result(
    State(state): State<AppState>,
    _: NoQuery,
    Path(param): Path<JidParam>,
) -> Result<axum::Json<ResultJson>, Problem> {
    let jid = parse_jid(&param.jid)?;
    let outcome = state.store.outcome(&jid).await.map_err(problem)?;
    Ok(axum::Json(outcome.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_take_the_classic_and_the_short_names() {
        assert_eq!(
            parse_status("FINISHED -- SUCCESS").unwrap(),
            JobStatus::Success
        );
        assert_eq!(parse_status("SUCCESS").unwrap(), JobStatus::Success);
        assert_eq!(parse_status("QUEUED").unwrap(), JobStatus::Queued);
        let problem = parse_status("FINISHED").unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("status"));
    }
}
