//! Sessions and their events, over `SessionService`.
//!
//! What a native session has no field for (the id the client chose, `displayName`, `labels`)
//! is kept in the session's metadata under [`AGENT_ENGINE`]; what an event has no field for
//! (Google's `content`, `actions`, `eventMetadata`, error fields and the client's `rawEvent`)
//! in the event's metadata under the same key, so a client reads back exactly what it sent.
//! The native `content` of an event is its text (the parts' text joined), which memory
//! generation reads, or the structured content when it has no text.

use contextiq_core::engine::id_for_name;
use contextiq_core::session::SessionPatch;
use contextiq_core::{Event, EventKind, NewEvent, NewSession, PageCursor, Permission, Role, Session, SessionFilter};
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use super::filter::snake_case;
use super::filter::{self, Filter};
use super::names::{EnginePath, check_id};
use super::operations::{Operation, done};
use super::wire::{self, EventMessage, SessionMessage};
use super::{Call, filtered_page, invalid, invalid_query, required};
use crate::error::ApiError;
use crate::routes::sessions::{decode_page_cursor, encode_page_cursor};
use crate::state::AppState;

/// The metadata key of what the Agent Engine surface keeps that the native record has no
/// field for.
pub const AGENT_ENGINE: &str = "agent_engine";

/// The `agent_id` of the sessions that buffer the events of an ingestion stream
/// (`memories:ingestEvents`): they are listed natively, but are no session of the agent's.
pub const INGEST_STREAM_AGENT: &str = "contextiq:ingest-stream";

/// The record id of a session id as the client wrote it.
pub fn session_uuid(call: &Call, id: &str) -> Uuid {
    id_for_name(&call.access.org_id, "session", id)
}

/// The id a client knows a session by: the one it chose, else the record's.
pub fn session_name(session: &Session) -> String {
    session
        .metadata
        .get(AGENT_ENGINE)
        .and_then(|extras| extras.get("session_id"))
        .and_then(Value::as_str)
        .map_or_else(|| session.id.to_string(), str::to_owned)
}

pub fn render_session(engine: &EnginePath, session: &Session) -> Value {
    let extras = session.metadata.get(AGENT_ENGINE);
    let mut resource = json!({
        "name": engine.session(&session_name(session)),
        "createTime": wire::timestamp(session.created_at),
        "updateTime": wire::timestamp(session.updated_at),
        "userId": session.user_id,
        "sessionState": session.state,
    });
    if let Some(display_name) = extras.and_then(|extras| extras.get("display_name")) {
        resource["displayName"] = display_name.clone();
    }
    if let Some(labels) = extras.and_then(|extras| extras.get("labels")) {
        resource["labels"] = labels.clone();
    }
    if let Some(expires_at) = session.expires_at {
        resource["expireTime"] = json!(wire::timestamp(expires_at));
    }
    resource
}

pub async fn create(state: &AppState, call: &mut Call) -> Result<Value, ApiError> {
    call.require(Permission::SessionWrite)?;
    let session_id = call.query.take("sessionId", "session_id")?;
    call.finish_query()?;
    if let Some(id) = &session_id {
        check_id("sessionId", id)?;
    }
    let message: SessionMessage = call.json()?;
    let user_id = message.user_id.ok_or_else(|| required("userId"))?;
    let mut extras = Map::new();
    if let Some(id) = &session_id {
        extras.insert("session_id".to_owned(), json!(id));
    }
    if let Some(display_name) = message.display_name {
        extras.insert("display_name".to_owned(), json!(display_name));
    }
    if let Some(labels) = message.labels {
        extras.insert("labels".to_owned(), json!(labels));
    }
    let new = NewSession {
        id: session_id.as_deref().map(|id| session_uuid(call, id)),
        user_id,
        agent_id: None,
        scope: None,
        state: message.session_state,
        metadata: (!extras.is_empty()).then(|| Map::from_iter([(AGENT_ENGINE.to_owned(), Value::Object(extras))])),
        ttl_seconds: message.ttl,
        expires_at: message.expire_time,
        compaction_policy: None,
        parent_session_id: None,
    };
    let session = state.sessions.create(&call.access, new, call.now).await?;
    let name = session_name(&session);
    Ok(done(&call.engine.session(&name), Operation::Create, render_session(&call.engine, &session)))
}

pub async fn get(state: &AppState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::SessionRead)?;
    call.finish_query()?;
    let session = state.sessions.get(&call.access, session_uuid(&call, id), false, call.now).await?;
    Ok(render_session(&call.engine, &session))
}

pub async fn list(state: &AppState, call: &mut Call) -> Result<Value, ApiError> {
    call.require(Permission::SessionRead)?;
    let max = state.sessions.limits().max_sessions_page;
    let page_size = call.query.page_size(max.min(100), max)?;
    let filter = parse_filter(call.query.take("filter", "filter")?)?;
    let cursor = call.query.take("pageToken", "page_token")?.filter(|token| !token.is_empty());
    let cursor = cursor.map(|token| {
        decode_page_cursor(&token).map_err(|_| invalid_query("pageToken", "is not a token this list gave"))
    });
    let cursor = cursor.transpose()?;
    call.finish_query()?;
    let user_id = filter.as_ref().and_then(Filter::user_id).map(str::to_owned);
    let (call, filter) = (&*call, &filter);
    let (sessions, next) = filtered_page(page_size, cursor, |cursor| {
        let user_id = user_id.clone();
        async move {
            let native = SessionFilter {
                scope: None,
                parent_session_id: None,
                user_id,
                agent_id: None,
                limit: page_size,
                cursor,
            };
            let page = state.sessions.list(&call.access, native, call.now).await?;
            let matches = page
                .sessions
                .iter()
                .filter(|session| session.agent_id.as_deref() != Some(INGEST_STREAM_AGENT))
                .map(|session| {
                    (
                        render_session(&call.engine, session),
                        PageCursor { created_at: session.created_at, id: session.id },
                    )
                })
                .filter(|(resource, _)| {
                    filter.as_ref().is_none_or(|filter| filter.matches(&snake_case_fields(resource)))
                })
                .collect();
            Ok((matches, page.next_cursor))
        }
    })
    .await?;
    let mut answer = json!({"sessions": sessions});
    if let Some(next) = next {
        answer["nextPageToken"] = json!(encode_page_cursor(next));
    }
    Ok(answer)
}

pub async fn patch(state: &AppState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::SessionWrite)?;
    let mask = call.query.take("updateMask", "update_mask")?;
    call.finish_query()?;
    let message: SessionMessage = call.json()?;
    let uuid = session_uuid(&call, id);
    let current = state.sessions.get(&call.access, uuid, false, call.now).await?;
    let fields = update_fields(mask.as_deref(), &message)?;
    let mut state_patch = Map::new();
    let mut extras = current.metadata.get(AGENT_ENGINE).and_then(Value::as_object).cloned().unwrap_or_default();
    for field in &fields {
        match field.as_str() {
            "session_state" => {
                let wanted = message.session_state.clone().unwrap_or_default();
                state_patch = replacement_patch(&current.state, &wanted);
            }
            "display_name" => match &message.display_name {
                Some(name) => drop(extras.insert("display_name".to_owned(), json!(name))),
                None => drop(extras.remove("display_name")),
            },
            "labels" => match &message.labels {
                Some(labels) => drop(extras.insert("labels".to_owned(), json!(labels))),
                None => drop(extras.remove("labels")),
            },
            "user_id" => {
                if message.user_id.as_deref() != Some(current.user_id.as_str()) {
                    return Err(invalid("userId", "a session's user cannot change"));
                }
            }
            other => return Err(invalid_query("updateMask", &format!("{other} cannot be updated"))),
        }
    }
    // What the metadata must become, as the patch that makes it so: a map replaced whole
    // (labels), not merged into.
    let mut wanted = current.metadata.clone();
    match extras.is_empty() {
        true => drop(wanted.remove(AGENT_ENGINE)),
        false => drop(wanted.insert(AGENT_ENGINE.to_owned(), Value::Object(extras))),
    }
    let metadata = Value::Object(replacement_patch(&current.metadata, &wanted));
    let patch = SessionPatch { state: Value::Object(state_patch), metadata };
    let session = state.sessions.patch(&call.access, uuid, patch, call.now).await?;
    Ok(render_session(&call.engine, &session))
}

/// The fields an update sets: those its mask names, or without a mask every field it carries.
fn update_fields(mask: Option<&str>, message: &SessionMessage) -> Result<Vec<String>, ApiError> {
    let Some(mask) = mask.filter(|mask| !mask.trim().is_empty()) else {
        let given = [
            ("session_state", message.session_state.is_some()),
            ("display_name", message.display_name.is_some()),
            ("labels", message.labels.is_some()),
            ("user_id", message.user_id.is_some()),
            ("ttl", message.ttl.is_some()),
            ("expire_time", message.expire_time.is_some()),
        ];
        return Ok(given.into_iter().filter(|(_, given)| *given).map(|(field, _)| field.to_owned()).collect());
    };
    Ok(mask.split(',').map(|field| snake_case(field.trim())).collect())
}

/// The merge patch (RFC 7396) that turns `current` into `wanted` (values that are nulls within
/// objects cannot be expressed and are dropped).
pub fn replacement_patch(current: &Map<String, Value>, wanted: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in current.keys() {
        if !wanted.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, value) in wanted {
        match (current.get(key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                let inner = replacement_patch(old, new);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Some(old), new) if old == new => {}
            (_, new) => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    patch
}

pub async fn delete(state: &AppState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::SessionWrite)?;
    call.finish_query()?;
    state.sessions.delete(&call.access, session_uuid(&call, id), call.now).await?;
    Ok(done(&call.engine.session(id), Operation::Delete, json!({})))
}

pub async fn append_event(state: &AppState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::SessionWrite)?;
    call.finish_query()?;
    let message: EventMessage = call.json()?;
    let mut event = new_event(message)?;
    let session_id = session_uuid(&call, id);
    // ADK's rewind (`Runner.rewind_async`) arrives as an event whose raw form names the
    // invocation it goes back before: stored as a rewind, so context assembly and compaction
    // leave the rewound events out as ADK does.
    if let Some(invocation_id) = rewind_target(&event)
        && let Some(rewind) = state.sessions.rewind_before(&call.access, session_id, &invocation_id, call.now).await?
    {
        event.kind = EventKind::Rewind(rewind);
    }
    state.sessions.append(&call.access, session_id, vec![event], call.now).await?;
    Ok(json!({}))
}

/// The invocation an ADK rewind event goes back before, from its `rawEvent` (ADK's own dump,
/// camelCase) or its `actions`.
fn rewind_target(event: &NewEvent) -> Option<String> {
    let extras = event.metadata.get(AGENT_ENGINE)?;
    let named = |actions: Option<&Value>| {
        let actions = actions?;
        let id = actions.get("rewindBeforeInvocationId").or_else(|| actions.get("rewind_before_invocation_id"))?;
        id.as_str().filter(|id| !id.is_empty()).map(str::to_owned)
    };
    named(extras.get("rawEvent").and_then(|raw| raw.get("actions"))).or_else(|| named(extras.get("actions")))
}

/// A SessionEvent as the native event it is stored as.
fn new_event(message: EventMessage) -> Result<NewEvent, ApiError> {
    let state_delta = match message
        .actions
        .as_ref()
        .and_then(|actions| actions.get("state_delta").or_else(|| actions.get("stateDelta")))
    {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(delta)) => delta.clone(),
        Some(_) => return Err(invalid("actions.state_delta", "must be an object")),
    };
    let (role, content) = native_content(message.author.as_deref(), message.content.as_ref());
    let mut extras = Map::new();
    for (key, value) in [
        ("content", message.content.map(Value::Object)),
        ("actions", message.actions.map(Value::Object)),
        ("eventMetadata", message.event_metadata.map(Value::Object)),
        ("errorCode", message.error_code.map(Value::String)),
        ("errorMessage", message.error_message.map(Value::String)),
        ("rawEvent", message.raw_event.map(Value::Object)),
    ] {
        if let Some(value) = value {
            extras.insert(key.to_owned(), value);
        }
    }
    Ok(NewEvent {
        author: message.author.filter(|author| !author.is_empty()).unwrap_or_else(|| "user".to_owned()),
        role,
        content,
        metadata: Map::from_iter([(AGENT_ENGINE.to_owned(), Value::Object(extras))]),
        timestamp: message.timestamp,
        invocation_id: message.invocation_id.filter(|id| !id.is_empty()),
        state_delta,
        token_count: 0,
        kind: contextiq_core::EventKind::Message,
    })
}

/// The role and native content of Google's `content`: its text parts joined, which memory
/// generation reads; a function's response is a tool's turn.
pub fn native_content(author: Option<&str>, content: Option<&Map<String, Value>>) -> (Role, Value) {
    let parts = content.and_then(|content| content.get("parts")).and_then(Value::as_array);
    let has = |key: &str, camel: &str| {
        parts.is_some_and(|parts| parts.iter().any(|part| part.get(key).or_else(|| part.get(camel)).is_some()))
    };
    let role = match content.and_then(|content| content.get("role")).and_then(Value::as_str) {
        _ if has("function_response", "functionResponse") => Role::Tool,
        Some("user") => Role::User,
        Some("model") => Role::Assistant,
        Some("system") => Role::System,
        _ if author == Some("user") => Role::User,
        _ => Role::Assistant,
    };
    let texts: Vec<&str> =
        parts.into_iter().flatten().filter_map(|part| part.get("text").and_then(Value::as_str)).collect();
    let content = match (texts.is_empty(), content) {
        (false, _) => Value::String(texts.join("\n")),
        (true, Some(content)) => Value::Object(content.clone()),
        (true, None) => Value::String(String::new()),
    };
    (role, content)
}

fn render_event(engine: &EnginePath, session: &str, event: &Event) -> Value {
    let extras = event.metadata.get(AGENT_ENGINE).and_then(Value::as_object);
    let mut resource = json!({
        "name": engine.event(session, &event.id.to_string()),
        "author": event.author,
        "invocationId": event.invocation_id.clone().unwrap_or_default(),
        "timestamp": wire::timestamp(event.timestamp),
    });
    match extras {
        Some(extras) => {
            for (key, value) in extras {
                resource[key.as_str()] = value.clone();
            }
        }
        // A native event: its content as Google's, text in one part.
        None => {
            let role = match event.role {
                Role::User | Role::Tool => "user",
                Role::Assistant | Role::System => "model",
            };
            let text = match &event.content {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            resource["content"] = json!({"role": role, "parts": [{"text": text}]});
        }
    }
    if let (None, EventKind::Rewind(rewind)) = (extras, &event.kind) {
        // A rewind made through the native API, in the raw form ADK reads its own from.
        let mut actions = json!({"stateDelta": event.state_delta});
        if let Some(invocation_id) = &rewind.before_invocation_id {
            actions["rewindBeforeInvocationId"] = json!(invocation_id);
        }
        resource["rawEvent"] = json!({
            "author": event.author,
            "invocationId": resource["invocationId"].clone(),
            "actions": actions,
        });
    }
    if let EventKind::Compaction(compaction) = &event.kind {
        // Where ADK's VertexAiSessionService reads a compaction from (it writes them there
        // too): its contents builder then shows the summary in place of the events of the range.
        let seconds = |at: chrono::DateTime<chrono::Utc>| at.timestamp_micros() as f64 / 1e6;
        resource["eventMetadata"] = json!({"customMetadata": {"_compaction": {
            "start_timestamp": seconds(compaction.start_time),
            "end_timestamp": seconds(compaction.end_time),
            "compacted_content": resource["content"].clone(),
        }}});
    }
    resource
}

pub async fn list_events(state: &AppState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::SessionRead)?;
    let max = state.sessions.limits().max_events_page;
    let page_size = call.query.page_size(max.min(100), max)?;
    let filter = parse_filter(call.query.take("filter", "filter")?)?;
    let after_seq = match call.query.take("pageToken", "page_token")?.filter(|token| !token.is_empty()) {
        None => 0,
        Some(token) => token
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| invalid_query("pageToken", "is not a token this list gave"))?,
    };
    call.finish_query()?;
    let uuid = session_uuid(&call, id);
    let (call, filter) = (&call, &filter);
    let (events, next) = filtered_page(page_size, Some(after_seq), |after_seq| async move {
        let after_seq = after_seq.unwrap_or(0);
        let page = state.sessions.events(&call.access, uuid, after_seq, max, call.now).await?;
        let matches = page
            .events
            .iter()
            .map(|event| (render_event(&call.engine, id, event), event.seq))
            .filter(|(resource, _)| filter.as_ref().is_none_or(|filter| filter.matches(&snake_case_fields(resource))))
            .collect();
        Ok((matches, page.next_after_seq))
    })
    .await?;
    let mut answer = json!({"sessionEvents": events});
    if let Some(next) = next {
        answer["nextPageToken"] = json!(next.to_string());
    }
    Ok(answer)
}

fn parse_filter(text: Option<String>) -> Result<Option<Filter>, ApiError> {
    match text.filter(|text| !text.trim().is_empty()) {
        None => Ok(None),
        Some(text) => filter::parse(&text).map(Some).map_err(|reason| invalid_query("filter", &reason)),
    }
}

/// A resource with its top-level field names in snake_case, as filters name them.
pub fn snake_case_fields(resource: &Value) -> Value {
    match resource {
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(key, value)| (snake_case(key), value.clone())).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_patch_turns_the_state_into_the_wanted_one() {
        let current = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1]}).as_object().cloned().unwrap();
        let wanted = json!({"b": {"x": 1, "z": 3}, "c": [2], "d": "new"}).as_object().cloned().unwrap();
        let patch = replacement_patch(&current, &wanted);
        let mut state = Value::Object(current);
        contextiq_core::merge_patch::apply(&mut state, &Value::Object(patch));
        assert_eq!(state, Value::Object(wanted));
    }

    #[test]
    fn google_content_becomes_text_and_a_role() {
        let content = json!({"role": "user", "parts": [{"text": "I live in Lisbon"}, {"text": "and like tea"}]});
        let (role, native) = native_content(Some("user"), content.as_object());
        assert_eq!((role, native), (Role::User, json!("I live in Lisbon\nand like tea")));
        let call = json!({"role": "model", "parts": [{"function_call": {"name": "f", "args": {}}}]});
        assert_eq!(native_content(Some("agent"), call.as_object()), (Role::Assistant, call.clone()));
        let response = json!({"role": "user", "parts": [{"function_response": {"name": "f", "response": {}}}]});
        assert_eq!(native_content(Some("user"), response.as_object()).0, Role::Tool);
    }
}
