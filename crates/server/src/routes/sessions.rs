//! `/api/v1/sessions`: sessions, their events and their state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use contextiq_core::{
    CompactionPolicy, Error as CoreError, Event, EventKind, ForkPoint, ForkRequest, NewEvent, NewSession, PageCursor,
    RewindTarget, Role, Scope, Session, SessionFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Authorized, Principal, SessionRead, SessionWrite};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, OptionalApiJson, SessionId, from_value};
use crate::routes::WriteReceipt;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", get(get_session).delete(delete_session))
        .route("/sessions/{id}/events", post(append_events).get(list_events))
        .route("/sessions/{id}/state", patch(patch_state).get(get_state))
        .route("/sessions/{id}/fork", post(fork_session))
        .route("/sessions/{id}/rewind", post(rewind_session))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[schema(schema_with = crate::routes::id_text)]
    pub user_id: String,
    #[schema(schema_with = crate::routes::optional_id_text)]
    pub agent_id: Option<String>,
    /// Flat string-to-string dict; defaults to `{"user_id": <user_id>}`.
    #[schema(schema_with = crate::routes::optional_scope_schema)]
    pub scope: Option<Scope>,
    #[schema(value_type = Option<Object>)]
    pub state: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds until the session expires (up to ten years); or give `expires_at`.
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub ttl_seconds: Option<i64>,
    /// In the future, at most ten years ahead; not with `ttl_seconds`.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the session is compacted without being asked; default: the server's policy
    /// (`COMPACTION_*`).
    pub compaction_policy: Option<CompactionPolicyBody>,
    /// The session this one belongs to (a sub-agent's session under its coordinator's): within
    /// reach, and this session's scope must hold all of the parent's. Deleting the parent
    /// deletes this session too.
    pub parent_session_id: Option<Uuid>,
}

/// Compact every `every_events` new events, or once the events not yet summarised hold
/// `token_threshold` tokens; each time all but the `keep_recent_events` newest are summarised.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactionPolicyBody {
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub every_events: Option<u32>,
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub token_threshold: Option<u64>,
    #[schema(minimum = 0, maximum = 10_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub keep_recent_events: Option<u32>,
}

impl From<CompactionPolicyBody> for CompactionPolicy {
    fn from(body: CompactionPolicyBody) -> CompactionPolicy {
        CompactionPolicy {
            every_events: body.every_events,
            token_threshold: body.token_threshold,
            keep_recent_events: body.keep_recent_events.unwrap_or(0),
        }
    }
}

impl From<CompactionPolicy> for CompactionPolicyBody {
    fn from(policy: CompactionPolicy) -> CompactionPolicyBody {
        CompactionPolicyBody {
            every_events: policy.every_events,
            token_threshold: policy.token_threshold,
            keep_recent_events: Some(policy.keep_recent_events),
        }
    }
}

/// ADK's event actions; only `state_delta` is taken from clients.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionsBody {
    /// Keys set in the session's state with the append, each replacing the key's value whole
    /// (`null` included), atomically with it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub state_delta: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendEventRequest {
    #[schema(schema_with = crate::routes::id_text)]
    pub author: String,
    /// Defaults to `user`.
    pub role: Option<RoleBody>,
    /// Text (a JSON string) or any structured JSON value but null.
    #[schema(schema_with = crate::routes::any_but_null)]
    pub content: Value,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// When the event happened (years 1 to 9999); defaults to the time it is stored.
    pub timestamp: Option<DateTime<Utc>>,
    #[schema(schema_with = crate::routes::optional_id_text)]
    pub invocation_id: Option<String>,
    pub actions: Option<ActionsBody>,
}

/// Several events appended atomically, in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendEventsRequest {
    /// 1 to `MAX_EVENTS_PER_REQUEST` (default 100) events.
    #[schema(min_items = 1, max_items = 100)]
    pub events: Vec<AppendEventRequest>,
}

/// The body of an append: one event, or several in `events`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code, clippy::large_enum_variant)] // Describes the body in the OpenAPI document; `append_events` parses it.
#[serde(untagged)]
pub enum AppendBody {
    One(AppendEventRequest),
    Many(AppendEventsRequest),
}

/// The answer of an append: the event, or the events of a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Appended {
    One(Box<EventBody>),
    Many(EventBatch),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleBody {
    User,
    Assistant,
    Tool,
    System,
}

impl From<RoleBody> for Role {
    fn from(role: RoleBody) -> Role {
        match role {
            RoleBody::User => Role::User,
            RoleBody::Assistant => Role::Assistant,
            RoleBody::Tool => Role::Tool,
            RoleBody::System => Role::System,
        }
    }
}

impl From<Role> for RoleBody {
    fn from(role: Role) -> RoleBody {
        match role {
            Role::User => RoleBody::User,
            Role::Assistant => RoleBody::Assistant,
            Role::Tool => RoleBody::Tool,
            Role::System => RoleBody::System,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub id: Uuid,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub scope: Scope,
    #[schema(value_type = Object)]
    pub state: Map<String, Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// How many events the session holds.
    pub event_count: i64,
    /// Tokens of all its events, each counted on append with the server's tokenizer.
    pub token_count: i64,
    pub compaction: CompactionStatusBody,
    /// The session it belongs to, if any.
    pub parent_session_id: Option<Uuid>,
    /// The session and event it was forked from, if it was.
    pub forked_from: Option<ForkOriginBody>,
    /// The first events in append order (at most 1,000); absent in lists and with
    /// `include_events=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventBody>>,
    /// When `events` holds only the first of the session's events: the `cursor` to page the
    /// rest from `GET /sessions/{id}/events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_next_cursor: Option<String>,
}

/// Where a fork branched off: its events up to `seq` are copies of that session's.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForkOriginBody {
    pub session_id: Uuid,
    pub seq: i64,
}

/// How far the session's compactions reach.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompactionStatusBody {
    /// The session's own policy; null: the server's.
    pub policy: Option<CompactionPolicyBody>,
    /// The last `seq` a compaction summarised (0: none yet).
    pub through_seq: i64,
    /// Message events after `through_seq`, and their tokens.
    pub uncompacted_events: i64,
    pub uncompacted_tokens: i64,
}

/// A new session: the shape of `GET /sessions/{id}`, with its events, none yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSession {
    #[serde(flatten)]
    pub session: SessionBody,
    /// Always the empty list.
    #[schema(max_items = 0)]
    pub events: Vec<EventBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventBody {
    pub id: Uuid,
    pub session_id: Uuid,
    /// Position in the session, from 1: the total order of its events.
    pub seq: i64,
    pub author: String,
    pub role: RoleBody,
    #[schema(schema_with = crate::routes::any_but_null)]
    pub content: Value,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub timestamp: DateTime<Utc>,
    pub invocation_id: Option<String>,
    /// Tokens of its content, counted on append with the server's tokenizer.
    pub token_count: u32,
    /// message; compaction: a summary (the content) the server wrote of `compaction`'s range;
    /// rewind: the session went back to how it was after `rewind.to_seq`.
    #[schema(value_type = String, example = "message")]
    pub kind: EventKindBody,
    /// For a compaction event: what it summarises.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction: Option<crate::routes::jobs::CompactionBody>,
    /// For a rewind event: where it went back to. The events after `to_seq` and before this
    /// one are out of the conversation; `actions.state_delta` is the state change (null: a key
    /// removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewind: Option<RewindBody>,
    pub actions: ActionsBody,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKindBody {
    Message,
    Compaction,
    Rewind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RewindBody {
    pub to_seq: i64,
    /// The invocation of event `to_seq + 1`, if it has one (ADK's `rewind_before_invocation_id`).
    pub before_invocation_id: Option<String>,
}

/// The events of a batch append, in their order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventBatch {
    pub events: Vec<EventBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventBody>,
    /// Pass as `cursor` for the next page; null when no more events followed at read time.
    pub next_cursor: Option<String>,
}

impl From<Session> for SessionBody {
    fn from(session: Session) -> SessionBody {
        SessionBody {
            id: session.id,
            user_id: session.user_id,
            agent_id: session.agent_id,
            scope: session.scope,
            state: session.state,
            metadata: session.metadata,
            created_at: session.created_at,
            updated_at: session.updated_at,
            expires_at: session.expires_at,
            event_count: session.event_count,
            token_count: session.token_count,
            compaction: CompactionStatusBody {
                policy: session.compaction.policy.map(CompactionPolicyBody::from),
                through_seq: session.compaction.through_seq,
                uncompacted_events: session.compaction.uncompacted_events,
                uncompacted_tokens: session.compaction.uncompacted_tokens,
            },
            parent_session_id: session.parent_session_id,
            forked_from: session
                .forked_from
                .map(|origin| ForkOriginBody { session_id: origin.session_id, seq: origin.seq }),
            events_next_cursor: session
                .events
                .as_ref()
                .and_then(|events| events.last())
                .filter(|last| last.seq < session.event_count)
                .map(|last| encode_events_cursor(last.seq)),
            events: session.events.map(|events| events.into_iter().map(EventBody::from).collect()),
        }
    }
}

impl From<Event> for EventBody {
    fn from(event: Event) -> EventBody {
        EventBody {
            id: event.id,
            session_id: event.session_id,
            seq: event.seq,
            author: event.author,
            role: event.role.into(),
            content: event.content,
            metadata: event.metadata,
            timestamp: event.timestamp,
            invocation_id: event.invocation_id,
            token_count: event.token_count,
            kind: match event.kind {
                EventKind::Message => EventKindBody::Message,
                EventKind::Compaction(_) => EventKindBody::Compaction,
                EventKind::Rewind(_) => EventKindBody::Rewind,
            },
            rewind: match &event.kind {
                EventKind::Rewind(rewind) => Some(RewindBody {
                    to_seq: rewind.to_seq,
                    before_invocation_id: rewind.before_invocation_id.clone(),
                }),
                _ => None,
            },
            compaction: match event.kind {
                EventKind::Compaction(compaction) => Some(compaction.into()),
                EventKind::Message | EventKind::Rewind(_) => None,
            },
            actions: ActionsBody { state_delta: event.state_delta },
        }
    }
}

impl From<AppendEventRequest> for NewEvent {
    fn from(request: AppendEventRequest) -> NewEvent {
        NewEvent {
            author: request.author,
            role: request.role.map_or(Role::User, Role::from),
            content: request.content,
            metadata: request.metadata.unwrap_or_default(),
            timestamp: request.timestamp,
            invocation_id: request.invocation_id,
            state_delta: request.actions.map(|actions| actions.state_delta).unwrap_or_default(),
            token_count: 0,
            kind: EventKind::Message,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetSessionQuery {
    /// Include the events (default true).
    pub include_events: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSessionsQuery {
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    /// Only the children of this session.
    pub parent_session_id: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const DEFAULT_SESSIONS_PAGE: u32 = 20;
const DEFAULT_EVENTS_PAGE: u32 = 100;

#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = CreateSessionRequest,
    responses((status = 201, body = CreatedSession), (status = 400, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn create_session(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let new = NewSession {
        id: None,
        user_id: request.user_id,
        agent_id: request.agent_id,
        scope: request.scope,
        state: request.state,
        metadata: request.metadata,
        ttl_seconds: request.ttl_seconds,
        expires_at: request.expires_at,
        compaction_policy: request.compaction_policy.map(CompactionPolicy::from),
        parent_session_id: request.parent_session_id,
    };
    let session = state.sessions.create(&principal.access, new, state.clock.now()).await?;
    let created =
        CreatedSession { session: SessionBody { events: None, ..SessionBody::from(session) }, events: Vec::new() };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path), GetSessionQuery),
    responses((status = 200, body = SessionBody), (status = 404, body = Problem)))]
pub async fn get_session(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionRead>,
    SessionId(id): SessionId,
    ApiQuery(query): ApiQuery<GetSessionQuery>,
) -> Result<Json<SessionBody>, ApiError> {
    let include_events = query.include_events.unwrap_or(true);
    let session = state.sessions.get(&principal.access, id, include_events, state.clock.now()).await?;
    Ok(Json(session.into()))
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(ListSessionsQuery),
    responses((status = 200, body = SessionList), (status = 422, body = Problem)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionRead>,
    ApiQuery(query): ApiQuery<ListSessionsQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let filter = SessionFilter {
        scope: None,
        parent_session_id: query.parent_session_id,
        user_id: query.user_id,
        agent_id: query.agent_id,
        limit: query.limit.unwrap_or(DEFAULT_SESSIONS_PAGE),
        cursor: query.cursor.as_deref().map(decode_page_cursor).transpose()?,
    };
    let page = state.sessions.list(&principal.access, filter, state.clock.now()).await?;
    Ok(Json(SessionList {
        sessions: page.sessions.into_iter().map(SessionBody::from).collect(),
        next_cursor: page.next_cursor.map(encode_page_cursor),
    }))
}

/// Appends one event (`{author, content, ...}`) or several atomically (`{events: [...]}`).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/events", tag = "sessions", params(("id" = Uuid, Path)),
    request_body(content = AppendBody, description = "One event, or `{\"events\": [...]}` for several"),
    responses((status = 201, description = "The stored event, or `{\"events\": [...]}` for a batch", body = Appended),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn append_events(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let is_batch = body.as_object().is_some_and(|object| object.contains_key("events"));
    let requests = if is_batch {
        from_value::<AppendEventsRequest>(body)?.events
    } else {
        vec![from_value::<AppendEventRequest>(body)?]
    };
    let events = requests.into_iter().map(NewEvent::from).collect();
    let mut stored =
        state.sessions.append(&principal.access, id, events, state.clock.now()).await.map_err(|err| match err {
            // The service names fields by their place in a batch; a single event has no batch.
            CoreError::Validation { field, message } if !is_batch => CoreError::Validation {
                field: field.strip_prefix("events[0].").map_or(field.clone(), str::to_owned),
                message,
            },
            err => err,
        })?;
    let appended = if is_batch {
        Appended::Many(EventBatch { events: stored.into_iter().map(EventBody::from).collect() })
    } else {
        let event = stored.pop().ok_or_else(|| ApiError::Internal("the store returned no event".to_owned()))?;
        Appended::One(Box::new(EventBody::from(event)))
    };
    Ok((StatusCode::CREATED, Json(appended)))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions", params(("id" = Uuid, Path), ListEventsQuery),
    responses((status = 200, body = EventList), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list_events(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionRead>,
    SessionId(id): SessionId,
    ApiQuery(query): ApiQuery<ListEventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let after_seq = query.cursor.as_deref().map(decode_events_cursor).transpose()?.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS_PAGE);
    let page = state.sessions.events(&principal.access, id, after_seq, limit, state.clock.now()).await?;
    Ok(Json(EventList {
        events: page.events.into_iter().map(EventBody::from).collect(),
        next_cursor: page.next_after_seq.map(encode_events_cursor),
    }))
}

/// The session a state patch left, to a credential that may read sessions; a receipt otherwise.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SessionAnswer {
    Session(Box<SessionBody>),
    Receipt(WriteReceipt),
}

impl SessionAnswer {
    fn to(principal: &Principal, session: Session) -> SessionAnswer {
        match principal.may(contextiq_core::Permission::SessionRead) {
            true => SessionAnswer::Session(Box::new(session.into())),
            false => SessionAnswer::Receipt(WriteReceipt { id: session.id, updated_at: session.updated_at }),
        }
    }
}

/// Applies a JSON Merge Patch (RFC 7396) to the state: `null` deletes a key, objects merge;
/// an empty patch changes nothing. A credential without SESSION_READ gets a receipt, not the
/// session.
#[utoipa::path(patch, path = "/api/v1/sessions/{id}/state", tag = "sessions", params(("id" = Uuid, Path)),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = SessionAnswer), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_state(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<SessionAnswer>, ApiError> {
    let session = state.sessions.patch_state(&principal.access, id, patch, state.clock.now()).await?;
    Ok(Json(SessionAnswer::to(&principal, session)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetStateQuery {
    /// The state as it was after this event (and the state patches before the next one); 0:
    /// as the session was created; default: now.
    #[param(minimum = 0)]
    pub at_seq: Option<i64>,
}

/// A session's state at one point of its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateAt {
    pub session_id: Uuid,
    /// The event it is the state after.
    pub at_seq: i64,
    #[schema(value_type = Object)]
    pub state: Map<String, Value>,
}

/// The session's state now, or as it was at any earlier event, rebuilt from the state each
/// event set and each state patch (sessions created before the state log existed know only
/// their current state).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/state", tag = "sessions", params(("id" = Uuid, Path), GetStateQuery),
    responses((status = 200, body = StateAt), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn get_state(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionRead>,
    SessionId(id): SessionId,
    ApiQuery(query): ApiQuery<GetStateQuery>,
) -> Result<Json<StateAt>, ApiError> {
    let (session_state, at_seq) =
        state.sessions.state_at(&principal.access, id, query.at_seq, state.clock.now()).await?;
    Ok(Json(StateAt { session_id: id, at_seq, state: session_state }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkSessionRequest {
    /// Fork after this event (0: before the first); not with `invocation_id`. Default: after
    /// the newest event.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub at_seq: Option<i64>,
    /// Fork after the last event of this invocation; not with `at_seq`.
    #[schema(schema_with = crate::routes::optional_id_text)]
    pub invocation_id: Option<String>,
    /// The fork's id; default: a new one.
    pub session_id: Option<Uuid>,
    /// The fork's metadata; default: the source's.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds until the fork expires; or give `expires_at`; default: the server's TTL.
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new session with this one's history up to a point and the state as it was there: the
/// same user, agent, scope, parent and compaction policy, `forked_from` naming the source. The
/// events are copied inside the database; the source is unchanged.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/fork", tag = "sessions", params(("id" = Uuid, Path)),
    request_body(content = Option<ForkSessionRequest>, description = "Optional"),
    responses((status = 201, body = SessionAnswer), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn fork_session(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
    OptionalApiJson(request): OptionalApiJson<ForkSessionRequest>,
) -> Result<(StatusCode, Json<SessionAnswer>), ApiError> {
    let at = match (request.at_seq, request.invocation_id) {
        (Some(_), Some(_)) => {
            return Err(CoreError::validation("invocation_id", "give either at_seq or invocation_id, not both").into());
        }
        (Some(seq), None) => ForkPoint::Seq(seq),
        (None, Some(invocation_id)) => ForkPoint::Invocation(invocation_id),
        (None, None) => ForkPoint::Latest,
    };
    let fork = ForkRequest {
        at,
        id: request.session_id,
        metadata: request.metadata,
        ttl_seconds: request.ttl_seconds,
        expires_at: request.expires_at,
    };
    let forked = state.sessions.fork(&principal.access, id, fork, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(SessionAnswer::to(&principal, forked))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindSessionRequest {
    /// Go back to how the session was after this event (0: as it was created); not with
    /// `before_invocation_id`.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub to_seq: Option<i64>,
    /// Go back to before the first event of this invocation (ADK's rewind); not with `to_seq`.
    #[schema(schema_with = crate::routes::optional_id_text)]
    pub before_invocation_id: Option<String>,
}

/// Takes the session back to an earlier point, as ADK's rewind does: appends a `rewind` event
/// that restores the state of that point and takes the events between out of the
/// conversation (context assembly and compaction skip them). Nothing is deleted: the events
/// stay listed, and a later rewind can go back to any of them.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/rewind", tag = "sessions", params(("id" = Uuid, Path)),
    request_body = RewindSessionRequest,
    responses((status = 201, description = "The session after the rewind (a receipt without SESSION_READ)",
            body = SessionAnswer),
        (status = 400, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn rewind_session(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
    ApiJson(request): ApiJson<RewindSessionRequest>,
) -> Result<(StatusCode, Json<SessionAnswer>), ApiError> {
    let target = match (request.to_seq, request.before_invocation_id) {
        (Some(seq), None) => RewindTarget::Seq(seq),
        (None, Some(invocation_id)) => RewindTarget::BeforeInvocation(invocation_id),
        _ => return Err(CoreError::validation("to_seq", "give exactly one of to_seq and before_invocation_id").into()),
    };
    let (_, session) = state.sessions.rewind(&principal.access, id, target, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(SessionAnswer::to(&principal, session))))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted, with its events and its descendants (children, their children, ...)"),
        (status = 404, body = Problem)))]
pub async fn delete_session(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
) -> Result<StatusCode, ApiError> {
    state.sessions.delete(&principal.access, id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Cursors are opaque to clients: a version tag and the position, base64url-encoded.

pub(crate) fn encode_page_cursor(cursor: PageCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("s1:{}:{}", cursor.created_at.timestamp_micros(), cursor.id))
}

pub(crate) fn decode_page_cursor(text: &str) -> Result<PageCursor, ApiError> {
    let decoded = decode_cursor(text)?;
    let mut parts = decoded.strip_prefix("s1:").ok_or_else(invalid_cursor)?.splitn(2, ':');
    let micros: i64 = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid_cursor)?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid_cursor)?;
    let id = parts.next().and_then(|part| Uuid::parse_str(part).ok()).ok_or_else(invalid_cursor)?;
    Ok(PageCursor { created_at, id })
}

fn encode_events_cursor(after_seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("e1:{after_seq}"))
}

fn decode_events_cursor(text: &str) -> Result<i64, ApiError> {
    let decoded = decode_cursor(text)?;
    decoded
        .strip_prefix("e1:")
        .and_then(|seq| seq.parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .ok_or_else(invalid_cursor)
}

fn decode_cursor(text: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid_cursor())?;
    String::from_utf8(bytes).map_err(|_| invalid_cursor())
}

fn invalid_cursor() -> ApiError {
    ApiError::InvalidQuery {
        field: Some("cursor".to_owned()),
        detail: "cursor: not a cursor this API returned".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = PageCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_page_cursor(&encode_page_cursor(cursor)).unwrap(), cursor);
        assert_eq!(decode_events_cursor(&encode_events_cursor(42)).unwrap(), 42);
        for garbage in ["", "!!", "czE6", "ZTE6LTE", &encode_events_cursor(1)] {
            assert!(decode_page_cursor(garbage).is_err(), "{garbage}");
        }
        assert!(decode_events_cursor(&encode_page_cursor(cursor)).is_err());
    }
}
