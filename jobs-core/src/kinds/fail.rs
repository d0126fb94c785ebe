//! `fail`: fails with a message, for tests of errors and retries.
//!
//! Params: `message` (string, 1 to 1024 characters, not all blank) is the
//! error to report; `fail_attempts` (a non-negative integer) lets only the first N
//! attempts fail, after which the job succeeds. Without `fail_attempts` every
//! attempt fails.

use super::KindSpec;
use crate::{Params, ValidationError};

/// The kind's name.
pub const NAME: &str = "fail";

const MESSAGE: &str = "message";
const FAIL_ATTEMPTS: &str = "fail_attempts";
const MAX_MESSAGE_CHARS: usize = 1024;
const DEFAULT_MESSAGE: &str = "failed on purpose (kind \"fail\")";

pub(super) const SPEC: KindSpec = KindSpec {
    name: NAME,
    summary: "fails with params.message; params.fail_attempts lets only the first N attempts fail",
    check,
};

/// A `fail` job's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailParams {
    /// The error each failing attempt reports.
    pub message: String,
    /// How many attempts fail before one succeeds; `None` for all of them.
    pub fail_attempts: Option<u64>,
}

impl FailParams {
    /// Reads and checks the options.
    pub fn parse(params: &Params) -> Result<Self, ValidationError> {
        super::only_known(NAME, params, &[MESSAGE, FAIL_ATTEMPTS])?;
        let message = match params.get(MESSAGE) {
            None => DEFAULT_MESSAGE.to_owned(),
            // The message becomes the job's error, which must say something.
            Some(serde_json::Value::String(text)) if text.trim().is_empty() => {
                return Err(ValidationError::new(
                    "params.message",
                    "must not be empty or blank: it is the error the job reports",
                ));
            }
            Some(serde_json::Value::String(text)) if text.chars().count() <= MAX_MESSAGE_CHARS => {
                text.clone()
            }
            Some(serde_json::Value::String(_)) => {
                return Err(ValidationError::new(
                    "params.message",
                    format!("at most {MAX_MESSAGE_CHARS} characters"),
                ));
            }
            Some(_) => return Err(ValidationError::new("params.message", "must be a string")),
        };
        let fail_attempts = match params.get(FAIL_ATTEMPTS) {
            None => None,
            Some(value) => Some(value.as_u64().ok_or_else(|| {
                ValidationError::new("params.fail_attempts", "must be a non-negative integer")
            })?),
        };
        Ok(Self {
            message,
            fail_attempts,
        })
    }

    /// Whether attempt number `attempt` (from 1) fails.
    pub fn fails(&self, attempt: u32) -> bool {
        self.fail_attempts
            .is_none_or(|failing| u64::from(attempt) <= failing)
    }
}

fn check(_start: i64, _end: i64, params: &Params) -> Result<(), ValidationError> {
    FailParams::parse(params).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> Params {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn reads_its_options() {
        let p = FailParams::parse(&params(
            serde_json::json!({"message": "boom", "fail_attempts": 2}),
        ))
        .unwrap();
        assert_eq!(p.message, "boom");
        assert!(p.fails(1) && p.fails(2) && !p.fails(3));
        assert!(FailParams::parse(&Params::new()).unwrap().fails(99));
    }

    #[test]
    fn rejects_bad_options_by_name() {
        let err = FailParams::parse(&params(serde_json::json!({"message": 3}))).unwrap_err();
        assert_eq!(err.field(), "params.message");
        let err = FailParams::parse(&params(serde_json::json!({"fail_attempts": -1}))).unwrap_err();
        assert_eq!(err.field(), "params.fail_attempts");
        let err = FailParams::parse(&params(serde_json::json!({"colour": "red"}))).unwrap_err();
        assert_eq!(err.field(), "params.colour");
    }

    #[test]
    fn refuses_a_message_that_says_nothing() {
        for blank in ["", " ", "\t\n "] {
            let err =
                FailParams::parse(&params(serde_json::json!({"message": blank}))).unwrap_err();
            assert_eq!(err.field(), "params.message", "{blank:?}");
        }
        let job =
            crate::NewJob::parse(1, 1, NAME, Some(params(serde_json::json!({"message": ""}))));
        assert_eq!(job.unwrap_err().field(), "params.message");
    }
}
