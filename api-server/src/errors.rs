//! The one place where store errors become gRPC statuses. Clients get a
//! message that names the problem; internal causes go to the log.

use jobs_core::Error;
use tonic::Status;

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
            Status::unavailable("the job store (Redis) is unavailable; try again shortly")
        }
        Error::Redis(_) | Error::Corrupt(_) | Error::Config(_) => {
            tracing::error!(error = %err, "internal error");
            Status::internal("internal error; the server log has the details")
        }
    }
}
