//! The one place where store errors become gRPC statuses and HTTP problem
//! responses. Both are read off one classification, so a client hears the
//! same thing over either; internal causes go to the log, once, there.

use axum::http::StatusCode;
use jobs_core::{Error, ValidationError};
use tonic::Status;

use crate::rest::Problem;

/// What a client is told about an error, whichever protocol it speaks.
enum Class<'a> {
    /// Bad input: the client's to fix.
    Invalid(&'a ValidationError),
    /// No such job or record.
    NotFound,
    /// It was there, and is no longer kept (an expired result).
    Gone,
    /// Not possible in the job's present state.
    Precondition,
    /// Redis cannot serve now; the message says why in the client's terms.
    Unavailable(&'static str),
    /// A write whose answer was lost: it may have been made. Not "try
    /// again", which would make a second job.
    Unconfirmed,
    /// A fault of the server's: the details are in the log only.
    Internal,
}

/// Classifies `err`, logging the causes a client is not shown.
fn classify(err: &Error) -> Class<'_> {
    match err {
        Error::Invalid(invalid) => Class::Invalid(invalid),
        Error::NotFound(_) | Error::RecordNotFound(_) => Class::NotFound,
        Error::ResultExpired(_) => Class::Gone,
        Error::NotReady { .. } | Error::AlreadyFinished { .. } => Class::Precondition,
        Error::Unavailable(cause) => {
            tracing::warn!(%cause, "Redis unavailable");
            Class::Unavailable(UNAVAILABLE)
        }
        Error::Unconfirmed(cause) => {
            tracing::warn!(%cause, "Redis did not confirm a write");
            Class::Unconfirmed
        }
        Error::UnsupportedRedis { .. } => {
            tracing::error!(error = %err, "the job store cannot be used");
            Class::Unavailable(UNSUPPORTED)
        }
        Error::Redis(_) | Error::Corrupt(_) | Error::Config(_) => {
            tracing::error!(error = %err, "internal error");
            Class::Internal
        }
    }
}

/// The status a client should see for `err`.
pub(crate) fn status(err: impl Into<Error>) -> Status {
    let err = err.into();
    match classify(&err) {
        Class::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
        // gRPC has no "gone": the message says the result expired.
        Class::NotFound | Class::Gone => Status::not_found(err.to_string()),
        Class::Precondition => Status::failed_precondition(err.to_string()),
        Class::Unavailable(message) => Status::unavailable(message),
        // gRPC's code for "may have completed even so".
        Class::Unconfirmed => Status::deadline_exceeded(UNCONFIRMED),
        Class::Internal => Status::internal(INTERNAL),
    }
}

/// The problem+json response a REST client should see for `err`.
pub(crate) fn problem(err: impl Into<Error>) -> Problem {
    let err = err.into();
    match classify(&err) {
        Class::Invalid(invalid) => {
            Problem::new(StatusCode::BAD_REQUEST, invalid.to_string()).with_field(invalid.field())
        }
        Class::NotFound => Problem::new(StatusCode::NOT_FOUND, err.to_string()),
        Class::Gone => Problem::new(StatusCode::GONE, err.to_string()),
        Class::Precondition => Problem::new(StatusCode::CONFLICT, err.to_string()),
        Class::Unavailable(message) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, message),
        // Redis is the upstream that did not answer in time.
        Class::Unconfirmed => Problem::new(StatusCode::GATEWAY_TIMEOUT, UNCONFIRMED),
        Class::Internal => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL),
    }
}

const UNAVAILABLE: &str = "the job store (Redis) is unavailable; try again shortly";
const UNCONFIRMED: &str = "the job store (Redis) did not confirm the write in time: it may \
     have been made. Retry with the same idempotency key to be sure it is made once; without \
     one, look for it before trying again";
const UNSUPPORTED: &str =
    "the job store (Redis) is a version this server does not support; the server log names it";
const INTERNAL: &str = "internal error; the server log has the details";
