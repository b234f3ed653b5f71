//! Extractors that turn every kind of bad input into an [`ApiError`], so rejections share the
//! problem+json format.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contextiq_core::Error as CoreError;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::BodyLimit;

/// A JSON object body. Content type must be JSON (`application/json` or
/// `application/*+json`); syntax errors are 400, anything but an object and type errors are
/// 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T>
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok())) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BodyLimit::from_ref(state).0 }
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON object body that may be left out: an empty body without a content type is
/// `T::default()`; anything else is read as [`ApiJson`] reads it.
pub struct OptionalApiJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalApiJson<T>
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BodyLimit::from_ref(state).0 }
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        if content_type.is_none() && bytes.is_empty() {
            return Ok(OptionalApiJson(T::default()));
        }
        if !is_json(content_type.as_ref().and_then(|value| value.to_str().ok())) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // No body, said in JSON: nothing, or `null`.
        if matches!(bytes.trim_ascii(), b"" | b"null") {
            return Ok(OptionalApiJson(T::default()));
        }
        parse_json(&bytes).map(OptionalApiJson)
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return false };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON object into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde lets structs deserialise from arrays too; every body of this API is an object.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::InvalidBody { field: "body".to_owned(), detail: "must be a JSON object".to_owned() },
            Err(err) => ApiError::MalformedJson(err.to_string()),
        });
    }
    if has_nul_escape(bytes) {
        let field = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|value| nul_path(&value))
            .unwrap_or_else(|| "body".to_owned());
        return Err(nul_in_body(field));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| body_error(&err))?;
    deserializer.end().map_err(|err| ApiError::MalformedJson(err.to_string()))?;
    Ok(value)
}

/// Converts an already parsed JSON value into `T`, naming the offending field on failure.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| body_error(&err))
}

/// Whether a JSON text holds a `\u0000` escape, the only way JSON can carry a NUL character.
/// NUL is refused everywhere: PostgreSQL can store it neither in text nor in JSONB, and every
/// backend must accept the same input.
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut position = 0;
    while position < bytes.len() {
        if bytes[position] == b'\\' {
            if bytes.get(position + 1) == Some(&b'u') && bytes.get(position + 2..position + 6) == Some(b"0000") {
                return true;
            }
            // Skips the escaped character, so an escaped backslash cannot start an escape.
            position += 2;
        } else {
            position += 1;
        }
    }
    false
}

fn nul_in_body(field: String) -> ApiError {
    ApiError::InvalidBody { field, detail: "strings must not contain NUL (\\u0000) characters".to_owned() }
}

/// The path (`state.notes[2]`) of the first string or key holding a NUL, as validation errors
/// name fields; `None` at the top level.
fn nul_path(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Object(object) => object.iter().find_map(|(key, value)| {
            if key.contains('\0') {
                return Some(key.clone());
            }
            if matches!(value, Value::String(text) if text.contains('\0')) {
                return Some(key.clone());
            }
            nul_path(value).map(|inner| match inner.starts_with('[') {
                true => format!("{key}{inner}"),
                false => format!("{key}.{inner}"),
            })
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| match item {
            Value::String(text) if text.contains('\0') => Some(format!("[{index}]")),
            item => nul_path(item).map(|inner| match inner.starts_with('[') {
                true => format!("[{index}]{inner}"),
                false => format!("[{index}].{inner}"),
            }),
        }),
        _ => None,
    }
}

fn body_error(err: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = err.inner();
    if !inner.is_data() {
        return ApiError::MalformedJson(inner.to_string());
    }
    let path = err.path().to_string();
    let message = without_position(inner);
    // serde reports a missing field at its parent; name the field itself.
    let field = match missing_field(&message) {
        Some(missing) if path == "." => missing.to_owned(),
        Some(missing) => format!("{path}.{missing}"),
        None if path == "." => "body".to_owned(),
        None => path,
    };
    ApiError::InvalidBody { field, detail: message }
}

/// The message of a serde_json error without the position serde_json appends to it (" at line
/// L column C", from its own `line()` and `column()`): useful for syntax errors, noise for data
/// errors.
fn without_position(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => message,
    }
}

/// The field a "missing field" error names. serde raises it through `de::Error::missing_field`,
/// which serde_json turns into this message and nothing else: the message is the only record.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// An optional integer field of a body, written `63` or `63.0`: JSON has one number type, and
/// JSON Schema's `integer` (what the document declares) admits both.
pub fn integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    let integral = match number.as_i64() {
        Some(value) => Some(value),
        // Exactly representable and in range: the cast cannot saturate.
        None => number.as_f64().filter(|value| value.fract() == 0.0 && value.abs() < 9.0e15).map(|value| value as i64),
    };
    integral
        .and_then(|value| T::try_from(value).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected an integer in range")))
}

/// Query parameters; a value of the wrong type is a 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        if query.to_ascii_lowercase().contains("%00") {
            let detail = "parameters must not contain NUL characters".to_owned();
            return Err(ApiError::InvalidQuery { field: None, detail });
        }
        // As axum's `Query` parses, with the path of the offending parameter kept apart.
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|err| {
            // The detail names the parameter (`limit: invalid digit ...`) when its path is known.
            let known = !err.path().iter().all(|segment| matches!(segment, serde_path_to_error::Segment::Unknown));
            let path = err.path().to_string();
            let field = (known && !path.contains(' ')).then_some(path);
            ApiError::InvalidQuery { field, detail: err.to_string() }
        })
    }
}

/// The query parameters each operation of the OpenAPI document declares, by method and route
/// template: what a route accepts is written once, in its `#[utoipa::path]` annotation, and
/// [`refuse_unknown_query`] refuses everything else, on every route, whether or not its
/// handler reads a query.
#[derive(Debug, Default)]
pub struct QueryAllowlist {
    operations: HashMap<(Method, String), BTreeSet<String>>,
    /// Templates that take any query (the API documentation, the gateway's pass-through,
    /// whose services check what they receive).
    lenient: BTreeSet<String>,
}

impl QueryAllowlist {
    /// The allowlist of every operation of `openapi`; `lenient` templates accept any query.
    /// A route template the document does not describe accepts none.
    pub fn from_openapi(openapi: &OpenApi, lenient: &[&str]) -> QueryAllowlist {
        let mut operations = HashMap::new();
        for (template, item) in &openapi.paths.paths {
            let shared = query_names(item.parameters.iter().flatten());
            let methods = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::OPTIONS, &item.options),
                (Method::HEAD, &item.head),
                (Method::PATCH, &item.patch),
                (Method::TRACE, &item.trace),
            ];
            for (method, operation) in methods {
                let Some(operation) = operation else { continue };
                let mut names = shared.clone();
                names.extend(query_names(operation.parameters.iter().flatten()));
                operations.insert((method, template.clone()), names);
            }
        }
        QueryAllowlist { operations, lenient: lenient.iter().map(|template| (*template).to_owned()).collect() }
    }

    /// Refuses the first query parameter of `uri` that the operation does not declare.
    pub fn check(&self, method: &Method, template: &str, uri: &Uri) -> Result<(), ApiError> {
        if uri.query().is_none_or(str::is_empty) || self.lenient.contains(template) {
            return Ok(());
        }
        // axum answers HEAD with the GET handler.
        let method = if *method == Method::HEAD { &Method::GET } else { method };
        let allowed = match self.operations.get(&(method.clone(), template.to_owned())) {
            Some(allowed) => allowed,
            // A documented route asked with another method: axum answers 405.
            None if self.operations.keys().any(|(_, known)| known == template) => return Ok(()),
            None => &NO_PARAMETERS,
        };
        // Names are compared decoded (`lim%69t` is `limit`); what fails to parse is left to
        // the handler's `ApiQuery`.
        let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else { return Ok(()) };
        let Some((name, _)) = pairs.iter().find(|(name, _)| !allowed.contains(name)) else { return Ok(()) };
        let takes = match allowed.is_empty() {
            true => "this route takes no query parameters".to_owned(),
            false => format!("this route takes {}", allowed.iter().map(String::as_str).collect::<Vec<_>>().join(", ")),
        };
        Err(ApiError::InvalidQuery {
            field: Some(name.clone()),
            detail: format!("{name}: unknown query parameter; {takes}"),
        })
    }
}

static NO_PARAMETERS: BTreeSet<String> = BTreeSet::new();

fn query_names<'a>(parameters: impl Iterator<Item = &'a RefOr<Parameter>>) -> BTreeSet<String> {
    parameters
        .filter_map(|parameter| match parameter {
            RefOr::T(parameter) if parameter.parameter_in == ParameterIn::Query => Some(parameter.name.clone()),
            _ => None,
        })
        .collect()
}

/// The middleware of [`QueryAllowlist`]: a query parameter the matched route does not declare
/// is a 422 naming it. Requests that matched no route pass on to the 404.
pub async fn refuse_unknown_query(
    State(allowlist): State<Arc<QueryAllowlist>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(template) = request.extensions().get::<MatchedPath>()
        && let Err(err) = allowlist.check(request.method(), template.as_str(), request.uri())
    {
        return err.into_response();
    }
    next.run(request).await
}

/// The `{id}` of a session route. Anything that is not a UUID cannot name a session: 404.
pub struct SessionId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, CoreError::session_not_found).await.map(SessionId)
    }
}

/// The `{id}` of a memory route.
pub struct MemoryId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for MemoryId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, CoreError::memory_not_found).await.map(MemoryId)
    }
}

/// The `{id}` of a job route.
pub struct JobId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, || CoreError::NotFound { resource: contextiq_core::Resource::Job }).await.map(JobId)
    }
}

/// The `{id}` of an API key route.
pub struct KeyId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for KeyId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, CoreError::key_not_found).await.map(KeyId)
    }
}

async fn path_id<S: Send + Sync>(parts: &mut Parts, state: &S, not_found: fn() -> CoreError) -> Result<Uuid, ApiError> {
    let Path(raw) =
        Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::Domain(not_found()))?;
    Uuid::parse_str(&raw).map_err(|_| ApiError::Domain(not_found()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(br#"{"a": "x\u0000y"}"#));
        assert!(!has_nul_escape(br#"{"a": "x\\u0000y"}"#), "an escaped backslash, then text");
        assert!(!has_nul_escape(br#"{"a": "\u00e9"}"#));
        assert!(matches!(parse_json::<serde_json::Value>(br#"{"a": "\u0000"}"#), Err(ApiError::InvalidBody { .. })));
        for (body, field) in [
            (r#"{"user_id": "a\u0000b"}"#, "user_id"),
            (r#"{"state": {"notes": ["ok", "x\u0000"]}}"#, "state.notes[1]"),
            (r#"{"events": [{"content": {"k\u0000": 1}}]}"#, "events[0].content.k\u{0}"),
            (r#""\u0000""#, "body"),
        ] {
            match parse_json::<serde_json::Value>(body.as_bytes()) {
                Err(ApiError::InvalidBody { field: found, .. }) => assert_eq!(found, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn integers_may_be_written_as_integral_floats() {
        #[derive(Debug, serde::Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "integer")]
            top_k: Option<u32>,
        }
        for (body, expect) in [
            (r#"{}"#, Some(None)),
            (r#"{"top_k": null}"#, Some(None)),
            (r#"{"top_k": 63}"#, Some(Some(63))),
            (r#"{"top_k": 63.0}"#, Some(Some(63))),
            (r#"{"top_k": 6.3e1}"#, Some(Some(63))),
            (r#"{"top_k": 63.5}"#, None),
            (r#"{"top_k": -1}"#, None),
            (r#"{"top_k": 1e300}"#, None),
            (r#"{"top_k": 4294967296}"#, None),
            (r#"{"top_k": "63"}"#, None),
        ] {
            let parsed = parse_json::<Body>(body.as_bytes());
            match expect {
                Some(value) => assert_eq!(parsed.expect(body).top_k, value, "{body}"),
                None => assert!(
                    matches!(parsed, Err(ApiError::InvalidBody { ref field, .. }) if field == "top_k"),
                    "{body}"
                ),
            }
        }
    }

    #[test]
    fn recognises_json_content_types() {
        for (content_type, expect) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("application/merge-patch+json"), true),
            (Some("text/plain"), false),
            (Some("application/jsonx"), false),
            (None, false),
        ] {
            assert_eq!(is_json(content_type), expect, "{content_type:?}");
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            author: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            events: Vec<Inner>,
        }
        let check = |body: &str, expect_field: &str| match parse_json::<Outer>(body.as_bytes()) {
            Err(ApiError::InvalidBody { field, .. }) => assert_eq!(field, expect_field, "{body}"),
            other => panic!("{body}: expected a field error, got {other:?}"),
        };
        check(r#"{}"#, "events");
        check(r#"{"events": [{}]}"#, "events[0].author");
        check(r#"{"events": [{"author": 1}]}"#, "events[0].author");
        check(r#"{"events": [{"author": "a", "x": 1}]}"#, "events[0].x");
        assert!(matches!(parse_json::<Outer>(b"{"), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_json::<Outer>(br#"{"events": []} x"#), Err(ApiError::MalformedJson(_))));
    }
}
