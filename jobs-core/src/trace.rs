//! The W3C trace context a job carries from the call that submitted it to
//! the worker that runs it, so the worker's spans join the caller's trace.
//!
//! Only the `traceparent` header travels (version `00`): it names the trace
//! and the caller's span. It is stored as text in the job hash; this crate
//! knows nothing of OpenTelemetry, only the header's shape.

use std::{fmt, str::FromStr};

/// A valid W3C `traceparent`: `00-{trace id}-{parent id}-{flags}`, lower-case
/// hex, neither id all zeros. Built only by [`TraceParent::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceParent(String);

/// A `traceparent` that is not one: the W3C rule is to ignore it and start a
/// new trace, so callers usually drop it rather than refuse the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>): {0:?}")]
pub struct InvalidTraceParent(String);

impl TraceParent {
    /// Checks a `traceparent` header value. Versions after `00` may append
    /// fields; as the spec asks, their first four fields are read as `00`'s.
    pub fn parse(text: &str) -> Result<Self, InvalidTraceParent> {
        let invalid = || InvalidTraceParent(text.chars().take(80).collect());
        let text = text.trim();
        let mut parts = text.split('-');
        let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let hex = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zeros = |part: &str| part.bytes().all(|b| b == b'0');
        let known_shape = match version {
            "00" => parts.next().is_none(),
            "ff" => false,
            _ => true,
        };
        if !known_shape
            || !hex(version, 2)
            || !hex(trace_id, 32)
            || !hex(parent_id, 16)
            || !hex(flags, 2)
            || zeros(trace_id)
            || zeros(parent_id)
        {
            return Err(invalid());
        }
        Ok(Self(format!("00-{trace_id}-{parent_id}-{flags}")))
    }

    /// The header value, version `00`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace's id: 32 hex digits.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The id of the span that submitted the job: 16 hex digits.
    pub fn parent_id(&self) -> &str {
        &self.0[36..52]
    }

    /// True when the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.0[53..55], 16).is_ok_and(|flags| flags & 1 == 1)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_gives_its_parts() {
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parent.as_str(), GOOD);
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id(), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert!(
            !TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .sampled()
        );
    }

    #[test]
    fn later_versions_are_read_as_version_00() {
        let parent =
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .unwrap();
        assert_eq!(parent.as_str(), GOOD);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?}");
        }
    }
}
