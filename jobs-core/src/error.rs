//! One error type for the crate; the server maps it to gRPC and HTTP in one place.

use redis::{ErrorKind, ServerErrorKind};

use crate::{JobId, JobStatus, RecordId};

/// What can go wrong in a jobs-core operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not valid; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// No dataset record has this id.
    #[error("record {:?} not found", .0.as_str())]
    RecordNotFound(RecordId),
    /// The job has not finished, so it has no result yet.
    #[error("job {jid} is {status}: its result is not ready yet")]
    NotReady {
        /// The job asked about.
        jid: JobId,
        /// Its current, non-terminal status.
        status: JobStatus,
    },
    /// The job succeeded, but its result is no longer kept: results expire
    /// before their jobs when the result TTL is the shorter.
    #[error(
        "the result of job {0} has expired: a result is kept for JOBS_RESULT_TTL_SECS \
         (the workers' --result-ttl-secs; 7 days by default) after its job ends"
    )]
    ResultExpired(JobId),
    /// The job has already finished, so it cannot be cancelled.
    #[error("job {jid} has already finished as {status}")]
    AlreadyFinished {
        /// The job asked about.
        jid: JobId,
        /// Its terminal status.
        status: JobStatus,
    },
    /// Redis cannot serve now: it cannot be reached (refused, timed out, or
    /// the connection dropped), or it answered that it cannot serve yet
    /// (still loading its data, failing over, out of memory).
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// A write was sent to Redis but its answer was lost (it timed out, or
    /// the connection dropped): it may or may not have been made. Retrying
    /// it is safe only where it is idempotent (an idempotency key).
    #[error("Redis did not confirm the write, which may have been made: {0}")]
    Unconfirmed(#[source] redis::RedisError),
    /// Redis answered with an error.
    #[error("Redis command failed: {0}")]
    Redis(#[source] redis::RedisError),
    /// Redis holds data this version cannot read.
    #[error("unreadable data in Redis: {0}")]
    Corrupt(String),
    /// The configuration cannot work (a malformed Redis URL, say).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Redis server is older than the scripts need.
    #[error(
        "Redis {found} is not supported: Jobs needs Redis {}.{} or newer",
        crate::store::MIN_REDIS_VERSION.0,
        crate::store::MIN_REDIS_VERSION.1
    )]
    UnsupportedRedis {
        /// The version the server reports (`redis_version` in `INFO`).
        found: String,
    },
}

impl Error {
    /// True when the operation may succeed if tried again later (Redis down,
    /// or not serving yet).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// Whether the failed command may have run in Redis: true when its
    /// answer was lost (a timeout, a dropped connection) or unreadable;
    /// false when Redis was never reached or answered with an error (which
    /// a script raises before its first write, or, part-way, keeping the
    /// writes it made).
    pub fn may_have_run(&self) -> bool {
        match self {
            Error::Unavailable(err) | Error::Redis(err) => answer_lost(err),
            Error::Unconfirmed(_) | Error::Corrupt(_) => true,
            _ => false,
        }
    }

    /// This error, for a write that is not idempotent: an unavailable Redis
    /// that may have run it becomes [`Error::Unconfirmed`], so that its
    /// caller is not told to simply try again.
    pub(crate) fn of_write(self) -> Self {
        match self {
            Error::Unavailable(err) if answer_lost(&err) => Error::Unconfirmed(err),
            other => other,
        }
    }

    /// The same error again, for each of several callers one failure
    /// answers (the creates of a group).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Unavailable(err) => Error::Unavailable(err.clone()),
            Error::Unconfirmed(err) => Error::Unconfirmed(err.clone()),
            Error::Redis(err) => Error::Redis(err.clone()),
            Error::UnsupportedRedis { found } => Error::UnsupportedRedis {
                found: found.clone(),
            },
            other => Error::Corrupt(other.to_string()),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_unrecoverable_error()
            || is_passing_state(&err)
        {
            Error::Unavailable(err)
        } else {
            Error::Redis(err)
        }
    }
}

/// Whether a command that failed with `err` may have reached Redis, its
/// answer lost on the way back: neither refused at connect nor answered with
/// an error.
fn answer_lost(err: &redis::RedisError) -> bool {
    !(err.is_connection_refusal()
        || matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension))
}

/// Whether Redis answered that it cannot serve the command yet, a state that
/// passes by itself: loading its data after a restart (LOADING), a failover
/// under way (TRYAGAIN, MASTERDOWN, CLUSTERDOWN, READONLY: a primary turned
/// replica), or out of memory until keys expire or the limit is raised
/// (OOM, which redis-rs knows only by its code). A transaction Redis
/// discarded (EXECABORT) is in that state when every command it refused
/// was refused for one: out of memory, Redis refuses every command queued
/// in a transaction.
fn is_passing_state(err: &redis::RedisError) -> bool {
    if err.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) {
        return err.clone().into_server_errors().is_some_and(|refused| {
            !refused.is_empty()
                && refused
                    .iter()
                    .all(|(_, err)| is_passing_code(err.kind(), err.code()))
        });
    }
    let kind = match err.kind() {
        ErrorKind::Server(kind) => Some(kind),
        _ => None,
    };
    err.code().is_some_and(|code| is_passing_code(kind, code))
}

/// Whether a server error of this kind (if redis-rs knows it) and code is
/// a passing state (see [`is_passing_state`]).
fn is_passing_code(kind: Option<ServerErrorKind>, code: &str) -> bool {
    matches!(
        kind,
        Some(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly
        )
    ) || code == "OOM"
}

/// A request that is not valid, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    field: String,
    message: String,
}

impl ValidationError {
    /// An error about `field` (a path such as `params.message`).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error about a field inside `parent`: `end` within `jobs[3]`
    /// is `jobs[3].end`, and `[3].end` within `jobs` is `jobs[3].end`, so an
    /// error from one item of a batch names where it is.
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// The field at fault.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(kind: ServerErrorKind) -> redis::RedisError {
        redis::RedisError::from((ErrorKind::Server(kind), "from the server"))
    }

    #[test]
    fn a_redis_that_cannot_serve_yet_is_unavailable() {
        for kind in [
            ServerErrorKind::BusyLoading,
            ServerErrorKind::TryAgain,
            ServerErrorKind::MasterDown,
            ServerErrorKind::ClusterDown,
            ServerErrorKind::ReadOnly,
        ] {
            let err = Error::from(server_error(kind));
            assert!(err.is_unavailable(), "{kind:?}: {err:?}");
            assert!(!err.may_have_run(), "{kind:?}");
        }
        let oom = redis::make_extension_error("OOM".to_owned(), Some("no memory".to_owned()));
        assert!(Error::from(oom).is_unavailable());
    }

    #[test]
    fn a_command_redis_refuses_for_good_is_a_failed_command() {
        for kind in [ServerErrorKind::ResponseError, ServerErrorKind::NoPerm] {
            let err = Error::from(server_error(kind));
            assert!(matches!(err, Error::Redis(_)), "{kind:?}: {err:?}");
            assert!(!err.may_have_run(), "{kind:?}");
        }
        let timeout = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer",
        ));
        assert!(Error::from(timeout).may_have_run());
    }

    #[test]
    fn an_error_within_a_batch_names_the_item() {
        let err = ValidationError::new("end", "too small").within("[3]");
        assert_eq!(err.field(), "[3].end");
        let err = err.within("jobs");
        assert_eq!(err.field(), "jobs[3].end");
        assert_eq!(err.to_string(), "jobs[3].end: too small");
        assert_eq!(ValidationError::new("", "x").within("[0]").field(), "[0]");
    }
}
