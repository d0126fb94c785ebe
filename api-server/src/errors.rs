//! The one place where store errors become gRPC statuses and HTTP problem
//! responses, with the same arms in both. Clients get a message that names
//! the problem; internal causes go to the log.

use axum::http::StatusCode;
use jobs_core::Error;
use tonic::Status;

use crate::rest::Problem;

/// The status a client should see for `err`.
pub(crate) fn status(err: impl Into<Error>) -> Status {
    let err = err.into();
    match &err {
        Error::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
        Error::NotFound(_) | Error::RecordNotFound(_) => Status::not_found(err.to_string()),
        Error::NotReady { .. } | Error::AlreadyFinished { .. } => {
            Status::failed_precondition(err.to_string())
        }
        Error::Unavailable(cause) => {
            tracing::warn!(%cause, "Redis unavailable");
            Status::unavailable(UNAVAILABLE)
        }
        Error::UnsupportedRedis { .. } => {
            tracing::error!(error = %err, "the job store cannot be used");
            Status::unavailable(UNSUPPORTED)
        }
        Error::Redis(_) | Error::Corrupt(_) | Error::Config(_) => {
            tracing::error!(error = %err, "internal error");
            Status::internal(INTERNAL)
        }
    }
}

/// The problem+json response a REST client should see for `err`.
pub(crate) fn problem(err: impl Into<Error>) -> Problem {
    let err = err.into();
    match &err {
        Error::Invalid(invalid) => {
            Problem::new(StatusCode::BAD_REQUEST, invalid.to_string()).with_field(invalid.field())
        }
        Error::NotFound(_) | Error::RecordNotFound(_) => {
            Problem::new(StatusCode::NOT_FOUND, err.to_string())
        }
        Error::NotReady { .. } | Error::AlreadyFinished { .. } => {
            Problem::new(StatusCode::CONFLICT, err.to_string())
        }
        Error::Unavailable(cause) => {
            tracing::warn!(%cause, "Redis unavailable");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        }
        Error::UnsupportedRedis { .. } => {
            tracing::error!(error = %err, "the job store cannot be used");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, UNSUPPORTED)
        }
        Error::Redis(_) | Error::Corrupt(_) | Error::Config(_) => {
            tracing::error!(error = %err, "internal error");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
        }
    }
}

const UNAVAILABLE: &str = "the job store (Redis) is unavailable; try again shortly";
const UNSUPPORTED: &str =
    "the job store (Redis) is a version this server does not support; the server log names it";
const INTERNAL: &str = "internal error; the server log has the details";
