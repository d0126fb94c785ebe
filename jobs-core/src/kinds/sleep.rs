//! `sleep`: waits `end - start` milliseconds, reporting progress.

use super::KindSpec;
use crate::{Params, ValidationError};

/// The kind's name.
pub const NAME: &str = "sleep";

/// The longest sleep accepted: one hour.
pub const MAX_MILLIS: i64 = 3_600_000;

pub(super) const SPEC: KindSpec = KindSpec {
    name: NAME,
    summary: "waits end - start milliseconds, reporting progress",
    check,
};

fn check(start: i64, end: i64, params: &Params) -> Result<(), ValidationError> {
    super::only_known(NAME, params, &[])?;
    let millis = i128::from(end) - i128::from(start);
    if millis > i128::from(MAX_MILLIS) {
        return Err(ValidationError::new(
            "end",
            format!(
                "a sleep job lasts end - start = {millis} ms; at most {MAX_MILLIS} ms is accepted"
            ),
        ));
    }
    Ok(())
}

/// How long a sleep job from `start` to `end` waits, once validated.
pub fn duration(start: i64, end: i64) -> std::time::Duration {
    let millis = end.saturating_sub(start).clamp(0, MAX_MILLIS);
    std::time::Duration::from_millis(millis.unsigned_abs())
}
