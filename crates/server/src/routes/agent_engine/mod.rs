//! The Agent Engine surface: Google's Vertex AI Agent Engine Sessions + Memory Bank API under
//! `/v1beta1/`, as Google's own clients (ADK's `VertexAiSessionService` and
//! `VertexAiMemoryBankService`, the `agentplatform` and `vertexai` SDKs) send it. A second
//! protocol over the same services: a session or memory made here is the record `/api/v1`
//! reads, and a generation here is a generation job.
//!
//! One route takes every path under `/v1beta1/` (Google's custom methods, `sessions/{s}:appendEvent`,
//! cannot be route templates); `names` says what the path names, and `dispatch` sends it to
//! the handler of that target and method. Errors are problems like everywhere, rendered as
//! Google's error body by the `observe` middleware (`errors`).

pub mod errors;
mod filter;
mod memories;
pub mod names;
pub mod openapi;
mod operations;
mod sessions;
mod wire;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contextiq_core::{Access, Error as CoreError, Permission};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{Principal, require};
use crate::error::ApiError;
use crate::state::AppState;
use names::{EnginePath, MemoriesMethod, Target};

pub const PATH_PREFIX: &str = "/v1beta1/";

/// The route of this surface.
pub fn router(sessions: bool, memories: bool) -> axum::Router<AppState> {
    let served = Served { sessions, memories };
    axum::Router::new().route(
        "/v1beta1/{*path}",
        axum::routing::any(move |state: State<AppState>, request: Request| handle(state, served, request)),
    )
}

/// Which halves of the surface this role serves.
#[derive(Debug, Clone, Copy)]
struct Served {
    sessions: bool,
    memories: bool,
}

/// One request, parsed: its engine and target, query, body, and who asks.
pub(crate) struct Call {
    pub method: Method,
    pub engine: EnginePath,
    pub principal: Principal,
    /// The principal's access, confined to the engine.
    pub access: Access,
    pub query: Query,
    body: Bytes,
    headers: HeaderMap,
    pub now: DateTime<Utc>,
}

impl Call {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        require(&self.principal, permission)
    }

    /// The body as message `T`; an empty body is an empty message.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return crate::extract::parse_json(b"{}");
        }
        let content_type = self.headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if essence != "application/json" {
            return Err(ApiError::UnsupportedMediaType);
        }
        crate::extract::parse_json(&self.body)
    }

    /// Refuses the query parameters no handler took.
    pub fn finish_query(&mut self) -> Result<(), ApiError> {
        Query { pairs: std::mem::take(&mut self.query.pairs) }.finish()
    }

    pub fn actor(&self) -> String {
        self.principal.actor()
    }
}

/// The query of a request: each parameter at most once, and every one a handler does not take
/// refused by [`Query::finish`].
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

/// Parameters any request may carry: Google's system parameters for the response format.
const SYSTEM_PARAMETERS: &[&str] = &["alt", "$alt", "prettyPrint", "$prettyPrint"];

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
        Query { pairs }
    }

    /// The value of `name` (or its snake_case spelling), if given once.
    pub fn take(&mut self, name: &str, snake: &str) -> Result<Option<String>, ApiError> {
        let mut values = Vec::new();
        self.pairs.retain(|(key, value)| {
            let matched = key == name || key == snake;
            if matched {
                values.push(value.clone());
            }
            !matched
        });
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(invalid_query(name, "given more than once")),
        }
    }

    pub fn page_size(&mut self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.take("pageSize", "page_size")? {
            None => Ok(default),
            Some(text) => match text.parse::<i64>() {
                Ok(0) => Ok(default),
                Ok(size) if size > 0 => Ok(size.min(i64::from(max)) as u32),
                _ => Err(invalid_query("pageSize", "must be a positive integer")),
            },
        }
    }

    /// Refuses any parameter left.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.pairs.into_iter().find(|(key, _)| !SYSTEM_PARAMETERS.contains(&key.as_str())) {
            Some((key, _)) => Err(invalid_query(&key, "is not a parameter of this method")),
            None => Ok(()),
        }
    }
}

/// A page of at most `page_size` matches out of a store read in pages of its own (`read`: the
/// matches of the store's page after a position, each with its own position, and the position
/// after that page, if any). A filter the store cannot apply may leave store pages empty, so
/// it reads on until one match more than the page holds shows that another page follows, or
/// the store's pages end; only then does the page get the position of its last match to
/// continue from. Google's pager fails on an empty page that came with a token.
pub(crate) async fn filtered_page<T, C, F, Fut>(
    page_size: u32,
    mut position: Option<C>,
    mut read: F,
) -> Result<(Vec<T>, Option<C>), ApiError>
where
    C: Clone,
    F: FnMut(Option<C>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<(T, C)>, Option<C>), ApiError>>,
{
    let mut matched: Vec<(T, C)> = Vec::new();
    loop {
        let (matches, next) = read(position.clone()).await?;
        matched.extend(matches);
        match next {
            Some(next) if matched.len() <= page_size as usize => position = Some(next),
            _ => break,
        }
    }
    let more = matched.len() > page_size as usize;
    matched.truncate(page_size as usize);
    let next = matched.last().map(|(_, position)| position.clone()).filter(|_| more);
    Ok((matched.into_iter().map(|(item, _)| item).collect(), next))
}

pub(crate) fn invalid_query(field: &str, detail: &str) -> ApiError {
    ApiError::InvalidQuery { field: Some(field.to_owned()), detail: format!("{field}: {detail}") }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Domain(CoreError::validation(field, message))
}

pub(crate) fn required(field: &str) -> ApiError {
    invalid(field, "is required")
}

async fn handle(State(state): State<AppState>, served: Served, request: Request) -> Response {
    match call(&state, served, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn call(state: &AppState, served: Served, request: Request) -> Result<Value, ApiError> {
    let path = request.uri().path().to_owned();
    let relative = path.strip_prefix(PATH_PREFIX).unwrap_or_default();
    let Some((engine, target)) = names::parse(relative)? else { return Err(ApiError::RouteNotFound(path)) };
    let serves = match target.service() {
        names::Service::Sessions => served.sessions,
        names::Service::Memory => served.memories,
    };
    if !serves {
        return Err(ApiError::RouteNotFound(path));
    }
    let principal = request.extensions().get::<Principal>().cloned().ok_or(ApiError::MissingCredentials)?;
    let query = Query::parse(request.uri().query());
    let method = request.method().clone();
    let (parts, body) = request.into_parts();
    let limit = state.body_limit.0;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let mut call = Call {
        method,
        access: principal.access.in_engine(&engine.engine),
        engine,
        principal,
        query,
        body,
        headers: parts.headers,
        now: state.clock.now(),
    };
    let not_allowed = || Err(ApiError::MethodNotAllowed);
    let memory = || state.memory.as_ref().ok_or_else(|| ApiError::RouteNotFound(path.clone()));
    match (&call.method, target) {
        (&Method::GET, Target::Engine) => {
            call.require(Permission::SessionRead).or_else(|_| call.require(Permission::MemoryRead))?;
            call.query.finish()?;
            Ok(serde_json::json!({"name": call.engine.name(), "displayName": call.engine.engine.as_str()}))
        }
        (&Method::POST, Target::Sessions) => sessions::create(state, &mut call).await,
        (&Method::GET, Target::Sessions) => sessions::list(state, &mut call).await,
        (&Method::GET, Target::Session(id)) => sessions::get(state, call, &id).await,
        (&Method::PATCH, Target::Session(id)) => sessions::patch(state, call, &id).await,
        (&Method::DELETE, Target::Session(id)) => sessions::delete(state, call, &id).await,
        (&Method::POST, Target::AppendEvent(id)) => sessions::append_event(state, call, &id).await,
        (&Method::GET, Target::Events(id)) => sessions::list_events(state, call, &id).await,
        (&Method::GET, Target::SessionOperation(id, operation)) => {
            operations::get_session_operation(state, call, &id, &operation).await
        }
        (&Method::POST, Target::Memories) => memories::create(memory()?, call).await,
        (&Method::GET, Target::Memories) => memories::list(memory()?, call).await,
        (&Method::GET, Target::Memory(id)) => memories::get(memory()?, call, &id).await,
        (&Method::PATCH, Target::Memory(id)) => memories::patch(memory()?, call, &id).await,
        (&Method::DELETE, Target::Memory(id)) => memories::delete(memory()?, call, &id).await,
        (&Method::POST, Target::Rollback(id)) => memories::rollback(memory()?, call, &id).await,
        (&Method::GET, Target::Revisions(id)) => memories::list_revisions(memory()?, call, &id).await,
        (&Method::GET, Target::Revision(id, revision)) => memories::get_revision(memory()?, call, &id, &revision).await,
        (&Method::GET, Target::MemoryOperation(id, operation)) => {
            operations::get_memory_operation(memory()?, call, &id, &operation).await
        }
        (&Method::GET, Target::Operation(operation)) => operations::get_operation(memory()?, call, &operation).await,
        (&Method::POST, Target::MemoriesMethod(method)) => match method {
            MemoriesMethod::Retrieve => memories::retrieve(memory()?, call).await,
            MemoriesMethod::Purge => memories::purge(memory()?, call).await,
            MemoriesMethod::Generate => operations::generate(state, memory()?, call).await,
            MemoriesMethod::IngestEvents => operations::ingest_events(state, memory()?, call).await,
            MemoriesMethod::RetrieveProfiles => memories::retrieve_profiles(memory()?, call).await,
        },
        _ => not_allowed(),
    }
}
