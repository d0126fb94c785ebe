//! `/data`: the dataset. Each handler parses the request into domain values
//! and makes the same dataset call as its gRPC twin.

use std::borrow::Cow;

use axum::{
    extract::{FromRequest, Request, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use jobs_core::{
    DataQuery, MAX_LOAD_RECORDS, MAX_RECORD_ID_CHARS, NewRecords, Record, RecordId, ValidationError,
};
use serde::{Deserialize, Serialize};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        RefOr, Type,
        schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema},
    },
};

use super::{
    AppState, Problem, TAG_DATA,
    extract::{self, NoQuery, Path, Query},
    next_link, page_limit,
};
use crate::errors::problem;

/// Record ids must not hold control characters.
const ID_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]+$";

/// A dataset record: a JSON object whose `id` is its id.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct RecordJson(Record);

impl PartialSchema for RecordJson {
    fn schema() -> RefOr<Schema> {
        let id_string = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_RECORD_ID_CHARS))
            .pattern(Some(ID_PATTERN));
        let id = OneOfBuilder::new()
            .item(id_string)
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some(
                "The record's id: a string, or an integer (stored as its decimal text). \
                 A record without one gets a random UUID.",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A record: any JSON object. Its `id` field is its id, unique in a load.",
            ))
            .property("id", id)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for RecordJson {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Record")
    }
}

/// The outcome of a load.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoadJson {
    /// How many records were stored.
    loaded: usize,
    /// Every record's id, in the order of the request; generated ids
    /// appear here.
    ids: Vec<String>,
}

/// The outcome of a clear.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletedJson {
    /// How many records were removed.
    deleted: u64,
}

/// Which page of records to list, and what to search for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Only records with a string value (at any depth) that contains this
    /// text, ignoring case.
    search: Option<String>,
    /// The most records to return (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: taken from the previous page's `Link` header.
    #[param(pattern = "^[0-9]{0,19}$")]
    page_token: Option<String>,
}

/// A record's id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct IdParam {
    /// The record's id.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]+$"
    )]
    id: String,
}

/// The body of `POST /data`, parsed and checked: a JSON array of at most
/// [`MAX_LOAD_RECORDS`] records. A large one is parsed and checked on the
/// blocking pool, and an array over the limit is refused at the first
/// record too many, not once all of it is held.
#[derive(Debug)]
pub(crate) struct Load(NewRecords);

impl<S: Send + Sync> FromRequest<S> for Load {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = extract::json_body(request, state).await?;
        extract::off_runtime(body.len(), move || {
            let records = extract::parse_array(&body, MAX_LOAD_RECORDS, || {
                problem(ValidationError::new(
                    "records",
                    format!(
                        "more than {MAX_LOAD_RECORDS} records in one load; at most \
                         {MAX_LOAD_RECORDS} are accepted"
                    ),
                ))
            })?;
            NewRecords::parse(records).map(Load).map_err(problem)
        })
        .await
    }
}

/// Load records.
///
/// Takes a JSON array of objects. The load is checked whole first: one bad
/// record rejects it, naming the record's index (`records[7].id`), and
/// nothing is written. Otherwise every record is stored in one atomic
/// step; a record whose id is already stored replaces it.
#[utoipa::path(
    post, path = "/data", operation_id = "load_data", tag = TAG_DATA,
    request_body(content = Vec<RecordJson>, content_type = "application/json"),
    responses(
        (status = 200, description = "The records were stored", body = LoadJson),
        (status = 400, description = "Malformed JSON, a bad record (its index is named), more than 1,000,000 records, or a query parameter (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not all arrive within `JOBS_HTTP_BODY_TIMEOUT_MS`; the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON, or is encoded (a `Content-Encoding` other than `identity`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body is not a JSON array", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Redis did not confirm the write in time: the records may have been stored. Loaded again, a record with an id replaces itself; one without gets another id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn load(
    State(state): State<AppState>,
    _: NoQuery,
    Load(load): Load,
) -> Result<axum::Json<LoadJson>, Problem> {
    let ids = state.dataset.load(&load).await.map_err(problem)?;
    Ok(axum::Json(LoadJson {
        loaded: ids.len(),
        ids: ids.into_iter().map(|id| id.to_string()).collect(),
    }))
}

/// List or search records.
///
/// In load order, one page at a time; the next page's URL is in the `Link`
/// header (`rel="next"`), absent on the last page.
#[utoipa::path(
    get, path = "/data", operation_id = "list_data", tag = TAG_DATA,
    params(ListParams),
    responses(
        (status = 200, description = "The records, in load order", body = Vec<RecordJson>,
            headers(("Link" = String, description = "`</data?…>; rel=\"next\"`: the next page, when there is one"))),
        (status = 400, description = "A bad limit or page token, or an unknown parameter (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let limit = page_limit(params.limit.as_deref())?;
    let token = params.page_token.unwrap_or_default();
    let search = params.search.unwrap_or_default();
    let query = DataQuery::new(limit.into(), &token, &search).map_err(problem)?;
    let page = state.dataset.list(&query).await.map_err(problem)?;
    let records: Vec<RecordJson> = page.records.into_iter().map(RecordJson).collect();
    let mut headers = HeaderMap::new();
    if let Some(next) = page.next_page_token {
        let filter = (!search.is_empty()).then_some(("search", search.as_str()));
        headers.insert(header::LINK, next_link("/data", limit, &next, filter)?);
    }
    Ok((headers, axum::Json(records)).into_response())
}

/// Get a record.
#[utoipa::path(
    get, path = "/data/{id}", operation_id = "get_data", tag = TAG_DATA,
    params(IdParam),
    responses(
        (status = 200, description = "The record", body = RecordJson),
        (status = 400, description = "The id cannot be a record id, or a query parameter was sent (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No record has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: NoQuery,
    Path(param): Path<IdParam>,
) -> Result<axum::Json<RecordJson>, Problem> {
    let id = RecordId::parse(&param.id).map_err(problem)?;
    let record = state.dataset.get(&id).await.map_err(problem)?;
    Ok(axum::Json(RecordJson(record)))
}

/// Clear the dataset.
#[utoipa::path(
    delete, path = "/data", operation_id = "delete_data", tag = TAG_DATA,
    responses(
        (status = 200, description = "Every record was removed", body = DeletedJson),
        (status = 400, description = "A query parameter was sent: this route takes none, and clears nothing then", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Redis did not confirm the clear in time: it may have been made. Clearing again is safe", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn clear(
    State(state): State<AppState>,
    _: NoQuery,
) -> Result<axum::Json<DeletedJson>, Problem> {
    let deleted = state.dataset.clear().await.map_err(problem)?;
    tracing::info!(deleted, "dataset cleared");
    Ok(axum::Json(DeletedJson { deleted }))
}
