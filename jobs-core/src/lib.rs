//! The core of Jobs: the domain types and the one place that knows Redis.
//!
//! The API server and the worker both call this crate; neither writes a Redis
//! command of its own. Nothing here knows gRPC or HTTP.
//!
//! # Layout
//!
//! - [`job`](Job): the job, its id and status, and [`NewJob`], a validated
//!   submission (parse, don't validate: a `NewJob` is valid by construction).
//! - [`kinds`]: the set of job kinds and their parameter checks, so the API
//!   validates a job without running anything.
//! - [`Store`]: the client side of Redis: create, read, list, cancel, watch.
//!   Its module documents every key and its type.
//! - [`Queue`]: the worker side: claim jobs, report progress, record outcomes.
//! - `scripts/*.lua`: every state change is one of these atomic scripts.
//! - [`Dataset`]: the dataset of JSON records (bulk load, list, search,
//!   clear). Its module documents its keys.
//! - [`RedisConfig`]: how every binary finds Redis and its key prefix.
//! - [`TraceParent`]: the W3C trace context a job carries from its
//!   submitter to its worker.

mod config;
mod data;
mod error;
mod job;
pub mod kinds;
mod number;
mod queue;
mod record;
mod scripts;
mod store;
mod trace;
mod watch;

pub use config::{JobDefaults, RedisConfig, Retention};
pub use data::{
    DataPage, DataQuery, Dataset, LOAD_BATCH, MAX_LOAD_RECORDS, MAX_RECORD_ID_CHARS, NewRecords,
    Record, RecordId, json_type_name,
};
pub use error::{Error, ValidationError};
pub use job::{
    Attempt, AttemptOutcome, Job, JobId, JobStatus, MAX_ATTEMPTS, MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_PARAMS_BYTES, MAX_TIMEOUT, NewJob, Params, Timestamp,
};
pub use number::integer_text;
pub use queue::{
    Claimed, Finished, Lease, LeaseAck, Outcome, Queue, QueueSettings, Recorded, Recovered,
};
pub use store::{
    CANCEL_REASON, Created, DEFAULT_PAGE_SIZE, JobOutcome, JobPage, ListQuery, MAX_BATCH_JOBS,
    MAX_PAGE_BYTES, MAX_PAGE_SIZE, QueueStats, Store, check_batch_size,
};
pub use trace::{InvalidTraceParent, TraceParent};

/// Result of a fallible jobs-core operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
