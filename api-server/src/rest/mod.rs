//! The REST gateway: the classic `/jobs` HTTP contract, the dataset under
//! `/data`, and operations routes, served by axum beside the gRPC server.
//! It translates HTTP/JSON into the same store calls the gRPC handlers make;
//! no job logic lives here.
//!
//! # Layout
//!
//! - `jobs`, `data`, `ops`: the handlers, each with its OpenAPI description
//!   (utoipa), so `/openapi.json` is generated from the code it describes.
//! - `extract`: JSON, query and path extractors whose rejections are
//!   problem+json responses naming the field.
//! - `problem`: the RFC 9457 error body. Store errors become problems in
//!   `crate::errors`, beside their gRPC statuses.

mod data;
mod extract;
mod jobs;
mod ops;
mod problem;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode},
};
use jobs_core::{Dataset, MAX_PAGE_SIZE, Store};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) use problem::Problem;

const TAG_JOBS: &str = "jobs";
const TAG_DATA: &str = "data";
const TAG_OPS: &str = "operations";

/// What every handler needs. Cheap to clone (one reference count), as axum
/// clones it for every request.
#[derive(Debug, Clone)]
pub(crate) struct AppState(std::sync::Arc<Services>);

/// The services behind the gateway.
#[derive(Debug)]
pub(crate) struct Services {
    pub(crate) store: Store,
    pub(crate) dataset: Dataset,
    pub(crate) observer: crate::observe::Observer,
}

impl AppState {
    pub(crate) fn new(services: Services) -> Self {
        Self(std::sync::Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The largest request bodies, in bytes, and how long one may take to
/// arrive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// For `/jobs`.
    pub(crate) jobs: usize,
    /// For `/data`, which takes whole datasets.
    pub(crate) data: usize,
    /// For any body, from when its headers are in.
    pub(crate) timeout: std::time::Duration,
}

/// The OpenAPI document, serialised once at startup.
#[derive(Debug, Clone)]
struct OpenApiJson(Bytes);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Jobs",
        description = "A job service: submit long-running work, get an id back at once, \
            and fetch the result when it is done; plus a dataset of JSON records that jobs \
            can analyse. Errors are `application/problem+json` (RFC 9457) and name the field \
            at fault. The same operations are served over gRPC (`jobs.v1.JobService`, \
            `jobs.v1.DataService`).",
        license(name = "MIT", identifier = "MIT"),
    ),
    components(schemas(jobs::StatusFilter)),
    tags(
        (name = "jobs", description = "Submit, inspect, list and cancel jobs"),
        (name = "data", description = "The dataset: load, list, search, read and clear records"),
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI document.
fn api(limits: BodyLimits) -> OpenApiRouter<AppState> {
    let jobs = OpenApiRouter::new()
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::get, jobs::cancel))
        .routes(routes!(jobs::result))
        .layer(DefaultBodyLimit::max(limits.jobs));
    let data = OpenApiRouter::new()
        .routes(routes!(data::load, data::list, data::clear))
        .routes(routes!(data::get))
        .layer(DefaultBodyLimit::max(limits.data));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::metrics));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(jobs)
        .merge(data)
        .merge(ops)
}

/// The gateway's router, ready to serve.
pub(crate) fn router(
    state: AppState,
    limits: BodyLimits,
    auth: crate::auth::BearerToken,
) -> anyhow::Result<Router> {
    let (router, mut document) = api(limits).split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if auth.is_required() {
        require_bearer(&mut document);
    }
    let document = OpenApiJson(Bytes::from(document.to_json()?));
    let observer = state.observer.clone();
    Ok(router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(document))
        .layer(Extension(extract::BodyTimeout(limits.timeout)))
        .layer(axum::middleware::from_fn(move |request, next| {
            let auth = auth.clone();
            require_token(auth, request, next)
        }))
        // Outermost, so refused and unmatched requests are counted too.
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::observe::observe_http(observer.clone(), request, next)
        }))
        .with_state(state))
}

/// The routes that need no token even when one is configured: the probes
/// and `/metrics`. Scrapers often cannot send a token, and the metrics hold
/// counts, never job data; keep the port private if even those must not
/// leak.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Documents the bearer token a configured server asks for: the scheme, and
/// on every operation but those of [`OPEN_PATHS`] the requirement and its
/// 401. Only then, so the document of an open server promises no 401.
fn require_bearer(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Type,
        header::HeaderBuilder,
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
    };
    const SCHEME: &str = "bearer";
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    let refused = ResponseBuilder::new()
        .description(
            "The bearer token is missing or wrong (`Authorization: Bearer <JOBS_API_TOKEN>`)",
        )
        .content(
            problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(
                    "`Bearer`, with `error=\"invalid_token\"` when a token was sent",
                ))
                .build(),
        )
        .build();
    for (path, item) in &mut document.paths.paths {
        if OPEN_PATHS.contains(&path.as_str()) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
            operation
                .responses
                .responses
                .insert("401".to_owned(), RefOr::T(refused.clone()));
        }
    }
}

/// With a token configured, every route but [`OPEN_PATHS`] needs
/// `authorization: Bearer <token>`.
async fn require_token(
    auth: crate::auth::BearerToken,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let probe = OPEN_PATHS.contains(&request.uri().path());
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(axum::http::HeaderValue::as_bytes);
    if probe || auth.accepts(header) {
        return next.run(request).await;
    }
    // A 401 names the scheme it asks for (RFC 9110 §11.6.1); the error
    // code only when credentials came, wrong (RFC 6750 §3).
    let challenge = if header.is_some() {
        r#"Bearer error="invalid_token""#
    } else {
        "Bearer"
    };
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (send `Authorization: Bearer <JOBS_API_TOKEN>`)",
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
    )
}

/// A `limit` query parameter: 1 to [`MAX_PAGE_SIZE`], 100 when absent.
fn page_limit(text: Option<&str>) -> Result<u16, Problem> {
    let Some(text) = text else {
        return Ok(100);
    };
    text.parse::<u16>()
        .ok()
        .filter(|limit| (1..=MAX_PAGE_SIZE).contains(&usize::from(*limit)))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("limit: {text:?} is not a whole number from 1 to {MAX_PAGE_SIZE}"),
            )
            .with_field("limit")
        })
}

/// A `Link` header to the next page: `<{path}?{pairs}>; rel="next"`.
/// The next page of `path`: its limit and token, plus the filter that made
/// this page, if any.
fn next_link(
    path: &str,
    limit: u16,
    token: &str,
    filter: Option<(&str, &str)>,
) -> Result<HeaderValue, Problem> {
    let limit = limit.to_string();
    let mut pairs = vec![("limit", limit.as_str()), ("page_token", token)];
    pairs.extend(filter);
    let query = serde_urlencoded::to_string(&pairs)
        .map_err(|err| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    HeaderValue::try_from(format!("<{path}?{query}>; rel=\"next\""))
        .map_err(|err| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}

/// The OpenAPI document, for tests and tools.
#[cfg(test)]
pub(crate) fn openapi_document() -> utoipa::openapi::OpenApi {
    api(BodyLimits {
        jobs: 1,
        data: 1,
        timeout: std::time::Duration::from_secs(1),
    })
    .into_openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route() {
        let document = openapi_document();
        let paths: Vec<_> = document.paths.paths.keys().map(String::as_str).collect();
        for path in [
            "/jobs",
            "/jobs/{jid}",
            "/jobs/{jid}/results",
            "/data",
            "/data/{id}",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/metrics",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "x", "1.5"] {
            assert_eq!(
                page_limit(Some(bad)).unwrap_err().field.as_deref(),
                Some("limit")
            );
        }
    }
}
