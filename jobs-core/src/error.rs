//! One error type for the crate; the server maps it to gRPC and HTTP in one place.

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
    /// The job has already finished, so it cannot be cancelled.
    #[error("job {jid} has already finished as {status}")]
    AlreadyFinished {
        /// The job asked about.
        jid: JobId,
        /// Its terminal status.
        status: JobStatus,
    },
    /// Redis cannot be reached (refused, timed out, or the connection dropped).
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
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
    /// True when the operation may succeed if tried again later (Redis down).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// The same error again, for each of several callers one failure
    /// answers (the creates of a group).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Unavailable(err) => Error::Unavailable(err.clone()),
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
        {
            Error::Unavailable(err)
        } else {
            Error::Redis(err)
        }
    }
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
