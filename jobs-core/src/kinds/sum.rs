//! `sum`: the sum of the integers start..=end, exact for every range.

use super::KindSpec;
use crate::{Params, ValidationError};

/// The kind's name.
pub const NAME: &str = "sum";

pub(super) const SPEC: KindSpec = KindSpec {
    name: NAME,
    summary: "adds the integers start..=end, exactly",
    check,
};

fn check(_start: i64, _end: i64, params: &Params) -> Result<(), ValidationError> {
    super::only_known(NAME, params, &[])
}

/// The sum of start..=end (with `start <= end`), exact for every pair of
/// `i64`: its magnitude stays below 2^126, well inside `i128`.
pub fn sum(start: i64, end: i64) -> i128 {
    let (a, b) = (i128::from(start), i128::from(end));
    let count = b - a + 1;
    let ends = a + b;
    // count and a + b differ in parity, so exactly one of them halves exactly;
    // halving first keeps the product in range.
    if count % 2 == 0 {
        (count / 2) * ends
    } else {
        count * (ends / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::sum;

    #[test]
    fn matches_a_plain_loop_on_small_ranges() {
        for start in -20..20 {
            for end in start..25 {
                assert_eq!(sum(start, end), (start..=end).map(i128::from).sum::<i128>());
            }
        }
    }

    #[test]
    fn is_exact_at_the_extremes() {
        assert_eq!(sum(i64::MIN, i64::MAX), i128::from(i64::MIN));
        assert_eq!(sum(i64::MAX, i64::MAX), i128::from(i64::MAX));
        assert_eq!(sum(i64::MIN, i64::MIN), i128::from(i64::MIN));
        let n = i128::from(i64::MAX);
        assert_eq!(sum(0, i64::MAX), n * (n + 1) / 2);
        assert_eq!(sum(i64::MIN, 0), -(n + 1) * (n + 2) / 2);
    }
}
