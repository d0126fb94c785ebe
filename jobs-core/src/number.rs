//! Whole numbers in JSON, however they are written.
//!
//! JSON Schema (and so OpenAPI) counts `2.0` and `2e3` as integers, and so
//! do many JSON encoders; the workspace keeps every number's text
//! (`arbitrary_precision`), so the check is done on the text, exactly.

use serde_json::Number;

/// The most digits an integer may have here; more is not a job's range or
/// a record's id, and refusing it bounds the work (`1e999999999`).
const MAX_DIGITS: usize = 400;

/// The canonical decimal text of `number` when it is a whole number
/// (`-0`, `2.0`, `2e3` and `20e-1` all qualify), or `None`.
pub fn integer_text(number: &Number) -> Option<String> {
    let text = number.to_string();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !(whole.chars().chain(fraction.chars())).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    // Where the decimal point falls in `digits` once the exponent applies.
    let point = i64::try_from(whole.len()).ok()?.checked_add(exponent)?;
    let (integer, rest) = if point <= 0 {
        ("", digits.as_str())
    } else {
        let point = usize::try_from(point).ok()?;
        if point > MAX_DIGITS + digits.len() {
            return None;
        }
        digits.split_at(point.min(digits.len()))
    };
    if rest.chars().any(|c| c != '0') {
        return None;
    }
    let zeros = usize::try_from(point)
        .unwrap_or(0)
        .saturating_sub(digits.len());
    let mut integer = format!("{integer}{}", "0".repeat(zeros));
    let significant = integer.trim_start_matches('0').len();
    if significant > MAX_DIGITS {
        return None;
    }
    integer.drain(..integer.len() - significant);
    Some(match (integer.is_empty(), negative) {
        (true, _) => "0".to_owned(),
        (false, true) => format!("-{integer}"),
        (false, false) => integer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Option<String> {
        let number: Number = serde_json::from_str(text).unwrap();
        integer_text(&number)
    }

    #[test]
    fn whole_numbers_in_any_notation_become_canonical_integers() {
        for (text, expected) in [
            ("7", "7"),
            ("-7", "-7"),
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("2.0", "2"),
            ("-2309.000", "-2309"),
            ("2e3", "2000"),
            ("2E+3", "2000"),
            ("20e-1", "2"),
            ("1.5e1", "15"),
            ("0e5", "0"),
            ("0.0e-5", "0"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("9223372036854775807.0", "9223372036854775807"),
        ] {
            assert_eq!(whole(text).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn fractions_and_absurd_exponents_are_not_whole() {
        for text in ["1.5", "2e-1", "0.1", "-1e-9", "1e999999999", "1e-999999999"] {
            assert_eq!(whole(text), None, "{text}");
        }
    }
}
