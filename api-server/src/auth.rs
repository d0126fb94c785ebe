//! Optional bearer-token authentication for gRPC calls.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

/// Checks `authorization: Bearer <token>` when a token is configured. The
/// scheme is matched ignoring case (RFC 9110 §11.1), the token exactly.
#[derive(Debug, Clone)]
pub(crate) struct BearerToken {
    expected: Option<Arc<[u8]>>,
}

impl BearerToken {
    pub(crate) fn new(token: Option<String>) -> Self {
        Self {
            expected: token
                .filter(|token| !token.is_empty())
                .map(|token| token.into_bytes().into()),
        }
    }

    /// Whether calls must carry a token.
    pub(crate) fn is_required(&self) -> bool {
        self.expected.is_some()
    }

    /// True when `header` (the whole `authorization` value) is accepted.
    pub(crate) fn accepts(&self, header: Option<&[u8]>) -> bool {
        match (&self.expected, header) {
            (None, _) => true,
            (Some(expected), Some(given)) => {
                bearer_credentials(given).is_some_and(|token| constant_time_eq(expected, token))
            }
            (Some(_), None) => false,
        }
    }
}

/// The credentials of a `Bearer` authorization value: what follows the
/// scheme (any case) and the spaces after it.
fn bearer_credentials(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = header.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|&byte| byte != b' ')?;
    Some(&rest[start..])
}

impl Interceptor for BearerToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        if self.accepts(header) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong bearer token (send `authorization: Bearer <JOBS_API_TOKEN>`)",
            ))
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal how
/// much of a guess was right. (The length is not secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let open = BearerToken::new(None);
        assert!(open.accepts(None));
        let guarded = BearerToken::new(Some("s3cret".into()));
        assert!(guarded.accepts(Some(b"Bearer s3cret")));
        assert!(!guarded.accepts(None));
        assert!(!guarded.accepts(Some(b"Bearer s3cres")));
        assert!(!guarded.accepts(Some(b"Bearer s3cret ")));
        assert!(!guarded.accepts(Some(b"s3cret")));
        assert!(!guarded.accepts(Some(b"Bearer")));
        assert!(!guarded.accepts(Some(b"Bearer ")));
        assert!(!guarded.accepts(Some(b"Bearers3cret")));
        assert!(!guarded.accepts(Some(b"Basic s3cret")));
    }

    #[test]
    fn the_scheme_ignores_case_and_the_token_does_not() {
        let guarded = BearerToken::new(Some("s3cret".into()));
        for header in ["bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"] {
            assert!(guarded.accepts(Some(header.as_bytes())), "{header}");
        }
        assert!(!guarded.accepts(Some(b"bearer S3CRET")));
    }
}
