//! Operations routes: liveness, readiness and the OpenAPI document.

use axum::{
    Extension,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, OpenApiJson, Problem, TAG_OPS};
use crate::errors::problem;

/// The server's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` for liveness, `ready` for readiness.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process answers. Does not touch Redis.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = TAG_OPS,
    responses((status = 200, description = "The server is alive", body = Health))
)]
pub(crate) async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness: Redis answers a PING.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = TAG_OPS,
    responses(
        (status = 200, description = "Redis answers: the server can take requests", body = Health),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, Problem> {
    state.store.ping().await.map_err(problem)?;
    Ok(axum::Json(Health { status: "ready" }))
}

/// This document: OpenAPI 3.1, generated from the code.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = TAG_OPS,
    responses((status = 200, description = "The OpenAPI document of every route", body = Object))
)]
pub(crate) async fn openapi(Extension(document): Extension<OpenApiJson>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.0,
    )
        .into_response()
}
