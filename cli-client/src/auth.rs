//! The bearer token: `--token` / `JOBS_API_TOKEN`, sent as
//! `authorization: Bearer <token>` on every call by a tonic interceptor, so
//! no command has to remember it.

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
};

/// Adds the `authorization` header to every request when a token is set.
#[derive(Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

/// A token that cannot travel in a header (a control or non-ASCII character).
#[derive(Debug, thiserror::Error)]
#[error("--token / JOBS_API_TOKEN holds a character a header cannot carry (only visible ASCII)")]
pub(crate) struct BadToken;

impl BearerToken {
    /// The header for `token`; none for no token or an empty one (the server
    /// too treats an empty token as none).
    pub(crate) fn new(token: Option<&str>) -> Result<Self, BadToken> {
        let Some(token) = token.filter(|token| !token.is_empty()) else {
            return Ok(Self::none());
        };
        let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| BadToken)?;
        // Keeps the token out of HTTP/2 header compression tables.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// No token: calls carry no `authorization` header.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// The `authorization` header's value, `Bearer <token>`, for a client
    /// other than gRPC (the REST gateway takes the same header).
    pub(crate) fn header(&self) -> Option<&str> {
        self.0.as_ref().and_then(|value| value.to_str().ok())
    }

    /// Whether a token is sent, for the message when the server refuses.
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

// By hand, so that `{:?}` never prints the token.
impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.is_set() { "<redacted>" } else { "none" };
        f.debug_tuple("BearerToken").field(&shown).finish()
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_header_and_never_in_debug() {
        let mut token = BearerToken::new(Some("s3cret")).unwrap();
        let request = token.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert!(!format!("{token:?}").contains("s3cret"));

        for none in [None, Some("")] {
            let mut token = BearerToken::new(none).unwrap();
            assert!(!token.is_set());
            let request = token.call(Request::new(())).unwrap();
            assert!(request.metadata().get("authorization").is_none());
        }
        assert!(BearerToken::new(Some("new\nline")).is_err());
    }
}
