//! Extractors whose rejections are problem+json responses that name the
//! field, in place of axum's plain-text ones.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{
        DeserializeOwned, DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
        value::MapAccessDeserializer,
    },
};

use super::Problem;

/// A JSON request body. 415 unless the content type is JSON and the body
/// is not encoded; 413 over the route's body limit; 408 when it has not
/// all arrived within the [`BodyTimeout`]; 400 for malformed JSON; 422 for
/// JSON of the wrong shape (a wrong type, a missing or unknown field),
/// naming the field.
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

/// How long a request body may take to arrive once its headers are in (a
/// request extension). Without it, a client announcing 100 bytes and
/// sending 10 would hold its connection for good.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) std::time::Duration);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = json_body(request, state).await?;
        off_runtime(body.len(), move || parse(&body))
            .await
            .map(Json)
    }
}

/// The bytes of a JSON request body, refused as [`Json`] refuses one
/// before parsing it.
pub(crate) async fn json_body<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<Bytes, Problem> {
    if !is_json(request.headers()) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, sent with Content-Type: application/json",
        ));
    }
    check_identity(request.headers())?;
    let timeout = request
        .extensions()
        .get::<BodyTimeout>()
        .map(|timeout| timeout.0);
    let read = Bytes::from_request(request, state);
    let read = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, read).await.map_err(|_| {
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not all arrive within {} ms \
                     (JOBS_HTTP_BODY_TIMEOUT_MS)",
                    timeout.as_millis()
                ),
            )
        })?,
        None => read.await,
    };
    read.map_err(|rejection| {
        let status = rejection.status();
        let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this route accepts \
             (JOBS_HTTP_BODY_LIMIT for /jobs, JOBS_HTTP_DATA_BODY_LIMIT for /data)"
                .to_owned()
        } else {
            rejection.body_text()
        };
        Problem::new(status, detail)
    })
}

/// The largest body parsed on the runtime's own thread. Every single job
/// is far below it, and the hop to the blocking pool would cost it more
/// than its parse; a dataset parsed there would stall every other request
/// on the thread for as long as it takes.
const INLINE_PARSE_MAX: usize = 64 * 1024;

/// Runs `work`, the parsing or checking of a body of `size` bytes, on the
/// blocking pool when the body is over [`INLINE_PARSE_MAX`], else here.
pub(crate) async fn off_runtime<R: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<R, Problem> + Send + 'static,
) -> Result<R, Problem> {
    if size <= INLINE_PARSE_MAX {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        // A panic goes on as it would have in place.
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )),
        },
    }
}

/// Refuses an encoded body (415, naming the header): the server decodes
/// none, and read as it is, a gzipped body would be "malformed JSON" and a
/// plain one labelled gzip taken as if the label were not there.
fn check_identity(headers: &HeaderMap) -> Result<(), Problem> {
    let values = headers.get_all(header::CONTENT_ENCODING);
    let identity = values.iter().all(|value| {
        value.to_str().is_ok_and(|codings| {
            codings
                .split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    });
    if identity {
        return Ok(());
    }
    let sent: Vec<_> = values
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()))
        .collect();
    Err(Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Encoding: {:?} is not supported: send the body unencoded (without \
             Content-Encoding, or with `identity`)",
            sent.join(", ")
        ),
    )
    .with_field("Content-Encoding"))
}

/// Parses a JSON body, naming the field where serde stopped.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    parse_seed(body, PhantomData::<T>)
}

/// Parses a JSON array of at most `max` elements; `too_many` is the
/// problem when it holds more. Parsing stops at element `max + 1` (read
/// but not kept): the rest of the body is not read, and no more than `max`
/// elements are ever held.
pub(crate) fn parse_array<T: DeserializeOwned>(
    body: &[u8],
    max: usize,
    too_many: impl FnOnce() -> Problem,
) -> Result<Vec<T>, Problem> {
    let mut over = false;
    let parsed = parse_seed(
        body,
        AtMost {
            max,
            over: &mut over,
            element: PhantomData,
        },
    );
    if over { Err(too_many()) } else { parsed }
}

/// Parses a JSON body with `seed`, naming the field where serde stopped.
fn parse_seed<'de, S: DeserializeSeed<'de>>(body: &'de [u8], seed: S) -> Result<S::Value, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let value = seed
        .deserialize(serde_path_to_error::Deserializer::new(
            &mut deserializer,
            &mut track,
        ))
        .map_err(|err| {
            let path = track.path().to_string();
            json_problem(err, (path != ".").then_some(path))
        })?;
    // Trailing text after the value.
    deserializer.end().map_err(|err| json_problem(err, None))?;
    Ok(value)
}

/// A JSON array of at most `max` elements; `over` is set when it holds
/// more, and parsing stops there with an error.
struct AtMost<'a, T> {
    max: usize,
    over: &'a mut bool,
    element: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for AtMost<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtMost<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.max {
            match seq.next_element()? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_none() {
            return Ok(items);
        }
        *self.over = true;
        Err(A::Error::custom(format!(
            "more than {} elements in the array",
            self.max
        )))
    }
}

fn json_problem(err: serde_json::Error, path: Option<String>) -> Problem {
    use serde_json::error::Category;
    match (err.classify(), path) {
        (Category::Data, Some(path)) => {
            // A field missing from an object inside the body, such as a job
            // of an array: the path names the object, the message the field.
            // (An unknown field is in the path already.)
            let message = err.to_string();
            let path = match named_field(&message) {
                Some(field) if message.starts_with("missing field") => format!("{path}.{field}"),
                _ => path,
            };
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{path}: {err}"))
                .with_field(path)
        }
        (Category::Data, None) => {
            let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string());
            // serde names a missing or unknown field only in its message.
            match named_field(&err.to_string()) {
                Some(field) => problem.with_field(field),
                None => problem,
            }
        }
        (Category::Syntax | Category::Eof | Category::Io, _) => {
            Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {err}"))
        }
    }
}

/// The field in a serde message such as "missing field `start`".
fn named_field(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("field `")?;
    let (field, _) = rest.split_once('`')?;
    Some(field.to_owned())
}

/// True for `application/json` and `application/*+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(Ok(content_type)) = headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// A value that must be written as a JSON object. serde's derived structs
/// also accept an array of their fields in order, which no client of a JSON
/// API means to send.
#[derive(Debug)]
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// For a route that takes no query parameters: any parameter is a 400
/// naming it, as on the routes that take some, rather than being ignored
/// (`DELETE /data?search=ada` must not clear the whole dataset).
#[derive(Debug)]
pub(crate) struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.uri.query() {
            // Every request to these routes passes here: no parse for none.
            None | Some("") => Ok(NoQuery),
            Some(query) => parse_query(query).map(|NoParams {}| NoQuery),
        }
    }
}

/// No parameters: what [`NoQuery`] parses, so that any is unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// Query parameters; a query that does not parse is a 400. With
/// `#[serde(deny_unknown_fields)]` on `T`, an unknown parameter is a 400
/// naming it and the ones the route takes, so a typo (`stauts=ERROR`) is
/// not quietly ignored.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    serde_urlencoded::from_str(query).map_err(|err| {
        let message = err.to_string();
        let problem = match message.strip_prefix("unknown field ") {
            // serde's words are about fields; a client sent parameters.
            Some(rest) => {
                let rest = match rest.strip_suffix(", there are no fields") {
                    Some(name) => format!("{name}: this route takes none"),
                    None => rest.to_owned(),
                };
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {rest}"),
                )
            }
            None => Problem::new(
                StatusCode::BAD_REQUEST,
                format!("bad query string: {message}"),
            ),
        };
        match named_field(&message) {
            Some(field) => problem.with_field(field),
            None => problem,
        }
    })
}

/// Path parameters; a path that does not parse is a 400.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| Problem::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        start: i64,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u8,
    }

    #[test]
    fn json_errors_are_classified_and_name_the_field() {
        let problem = parse::<Body>(br#"{"start": "x"}"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.field.as_deref(), Some("start"));
        let problem = parse::<Body>(br#"{"start": 1, "inner": {"n": 300}}"#).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("inner.n"));
        let problem = parse::<Body>(br#"{"start": 1"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        let problem = parse::<Body>(br#"{"start": 1} x"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        let problem = parse::<Body>(br#"{"strat": 1}"#).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("strat"));
        let problem = parse::<Object<Body>>(b"[1, null]").unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem = parse::<Object<Body>>(br#"{"start": "x"}"#).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("start"));
        let problem = parse::<Vec<Body>>(br#"[{"start": 1}, {"strat": 1}]"#).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("[1].strat"));
        let problem = parse::<Vec<Body>>(br#"[{"start": 1}, {"inner": null}]"#).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("[1].start"));
        let problem = parse::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.field.as_deref(), Some("start"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        status: Option<String>,
        limit: Option<String>,
    }

    #[test]
    fn unknown_and_repeated_query_parameters_are_named() {
        let params: Params = parse_query("status=QUEUED&limit=2").unwrap();
        assert_eq!(params.limit.as_deref(), Some("2"));
        let problem = parse_query::<Params>("stauts=ERROR").unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem.field.as_deref(), Some("stauts"));
        assert_eq!(
            problem.detail,
            "unknown query parameter `stauts`, expected `status` or `limit`"
        );
        let problem = parse_query::<Params>("limit=1&limit=2").unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("limit"));
        assert!(problem.detail.contains("duplicate"), "{}", problem.detail);
    }

    #[test]
    fn a_route_without_parameters_names_the_one_sent() {
        let NoParams {} = parse_query("").unwrap();
        let problem = parse_query::<NoParams>("verbose").unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem.field.as_deref(), Some("verbose"));
        assert_eq!(
            problem.detail,
            "unknown query parameter `verbose`: this route takes none"
        );
    }

    #[test]
    fn an_array_is_refused_at_the_first_element_too_many() {
        let too_many = || Problem::new(StatusCode::BAD_REQUEST, "too many").with_field("records");
        let within: Vec<u8> = parse_array(b"[1, 2]", 2, too_many).unwrap();
        assert_eq!(within, [1, 2]);
        let empty: Vec<u8> = parse_array(b"[]", 2, too_many).unwrap();
        assert!(empty.is_empty());
        // What follows the element too many is not read.
        let problem = parse_array::<u8>(b"[1, 2, 3, not JSON", 2, too_many).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("records"));
        // Other errors are those of any body.
        let problem = parse_array::<u8>(br#"[1, "x"]"#, 2, too_many).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.field.as_deref(), Some("[1]"));
        let problem = parse_array::<u8>(b"{}", 2, too_many).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem = parse_array::<u8>(b"[1] x", 2, too_many).unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem.field, None);
    }

    #[test]
    fn only_identity_content_encodings_are_taken() {
        let mut headers = HeaderMap::new();
        assert!(check_identity(&headers).is_ok());
        for (value, taken) in [
            ("identity", true),
            ("IDENTITY", true),
            ("identity, identity", true),
            ("gzip", false),
            ("identity, gzip", false),
            ("x-custom", false),
        ] {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            let checked = check_identity(&headers);
            assert_eq!(checked.is_ok(), taken, "{value}");
            if let Err(problem) = checked {
                assert_eq!(problem.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
                assert_eq!(problem.field.as_deref(), Some("Content-Encoding"));
                assert!(problem.detail.contains(value), "{}", problem.detail);
            }
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), json, "{value}");
        }
    }
}
