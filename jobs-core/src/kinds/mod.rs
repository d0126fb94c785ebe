//! The job kinds the service accepts, and each kind's parameter checks.
//!
//! The API validates a submission here without running anything; the worker
//! holds the implementations (its `handlers` module), one per kind listed
//! below. Adding a kind: a file here with its [`KindSpec`], its entry in
//! [`KINDS`], and its handler file in the worker.

pub mod fail;
pub mod sleep;
pub mod sum;

use crate::{Params, ValidationError};

/// The kind a submission gets when it names none.
pub const DEFAULT: &str = sum::NAME;

/// Every kind the service accepts.
pub const KINDS: &[KindSpec] = &[sum::SPEC, sleep::SPEC, fail::SPEC];

/// What the service knows about a kind before running it.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    name: &'static str,
    summary: &'static str,
    check: fn(i64, i64, &Params) -> Result<(), ValidationError>,
}

impl KindSpec {
    /// The kind's name, as clients write it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One line on what the kind does.
    pub fn summary(&self) -> &'static str {
        self.summary
    }

    /// Checks a submission's range and params for this kind.
    pub fn check(&self, start: i64, end: i64, params: &Params) -> Result<(), ValidationError> {
        (self.check)(start, end, params)
    }
}

/// The spec of the kind called `name`.
pub fn find(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|spec| spec.name == name)
}

/// The names of every kind.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|spec| spec.name)
}

/// Rejects any parameter not in `known`: a typo should fail loudly at
/// submission, not be ignored by the worker.
fn only_known(kind: &str, params: &Params, known: &[&str]) -> Result<(), ValidationError> {
    match params.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) if known.is_empty() => Err(ValidationError::new(
            format!("params.{key}"),
            format!("kind {kind:?} takes no params"),
        )),
        Some(key) => Err(ValidationError::new(
            format!("params.{key}"),
            format!(
                "unknown parameter for kind {kind:?}; it takes: {}",
                known.join(", ")
            ),
        )),
    }
}
