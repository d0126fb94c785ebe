//! Optional bearer-token authentication for gRPC calls.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

/// Checks `authorization: Bearer <token>` when a token is configured.
#[derive(Debug, Clone)]
pub(crate) struct BearerToken {
    expected: Option<Arc<[u8]>>,
}

impl BearerToken {
    pub(crate) fn new(token: Option<String>) -> Self {
        Self {
            expected: token
                .filter(|token| !token.is_empty())
                .map(|token| format!("Bearer {token}").into_bytes().into()),
        }
    }

    /// True when `header` (the whole `authorization` value) is accepted.
    pub(crate) fn accepts(&self, header: Option<&[u8]>) -> bool {
        match (&self.expected, header) {
            (None, _) => true,
            (Some(expected), Some(given)) => constant_time_eq(expected, given),
            (Some(_), None) => false,
        }
    }
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
    }
}
