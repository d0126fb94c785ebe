//! Operations routes: liveness, readiness, metrics and the OpenAPI document.

use axum::{
    Extension,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, OpenApiJson, Problem, TAG_OPS, extract::NoQuery};
use crate::errors::problem;

/// The server's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` for liveness, `ready` for readiness.
    #[schema(example = "ok")]
    status: &'static str,
}

/// The 400 of every operations route: like every other route, they refuse
/// a query parameter rather than ignore it, probes included.
const QUERY_REFUSED: &str = "A query parameter was sent: this route takes none";

/// Liveness: the process answers. Does not touch Redis.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = TAG_OPS,
    responses(
        (status = 200, description = "The server is alive", body = Health),
        (status = 400, description = QUERY_REFUSED, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn healthz(_: NoQuery) -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness: Redis answers a PING.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = TAG_OPS,
    responses(
        (status = 200, description = "Redis answers: the server can take requests", body = Health),
        (status = 400, description = QUERY_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn readyz(
    State(state): State<AppState>,
    _: NoQuery,
) -> Result<axum::Json<Health>, Problem> {
    state.store.ping().await.map_err(problem)?;
    Ok(axum::Json(Health { status: "ready" }))
}

/// Metrics, for Prometheus: requests by route and RPC, jobs created and
/// finished, and the queue's depth read from Redis now. No token needed.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = TAG_OPS,
    responses(
        (status = 200, description = "Every series, in the OpenMetrics text form of the Prometheus exposition format", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 400, description = QUERY_REFUSED, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>, _: NoQuery) -> Response {
    match state.observer.render().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(jobs_worker::metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be rendered",
        )
        .into_response(),
    }
}

/// This document: OpenAPI 3.1, generated from the code.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = TAG_OPS,
    responses(
        (status = 200, description = "The OpenAPI document of every route", body = Object),
        (status = 400, description = QUERY_REFUSED, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn openapi(_: NoQuery, Extension(document): Extension<OpenApiJson>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.0,
    )
        .into_response()
}
