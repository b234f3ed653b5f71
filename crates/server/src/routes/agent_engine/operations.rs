//! Long-running operations. Work that is finished when the answer goes out (creating,
//! updating, deleting, rolling back, purging) answers `done: true` with its result inline, so
//! Google's clients never poll it; polling one anyway answers the same. Generation is a real
//! pending operation: a generation job, `done` once the job finished, its result the memories
//! it created, updated and deleted. `memories:ingestEvents` buffers a stream's events in a
//! session of its own and queues a generation job when the stream's trigger fires.
//!
//! Operation ids say what they are: `create-`, `update-`, `delete-`, `rollback-` and a nonce
//! for the finished kinds (under the session or memory they touched), `purge-<count>-<nonce>`,
//! `ingest-<nonce>` and `generate-<job id>` under the engine.

use std::collections::HashSet;

use chrono::Duration;
use contextiq_core::engine::id_for_name;
use contextiq_core::generation::{
    DirectFact, GenerateRequest, GenerationConfig, InlineEvent, Job, JobStatus, MetadataMerge, Source, TopicSpec,
    derived_event_id,
};
use contextiq_core::memory::scope_key;
use contextiq_core::{Error as CoreError, NewEvent, NewSession, Permission, Resource, Role, Scope};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::memories::{memory_name, memory_uuid, native_metadata, render as render_memory};
use super::names::{self, EnginePath};
use super::sessions::{AGENT_ENGINE, INGEST_STREAM_AGENT, native_content, session_uuid};
use super::wire::{DirectEvent, GenerateMessage, IngestMessage};
use super::{Call, invalid, required};
use crate::error::ApiError;
use crate::state::{AppState, MemoryState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Rollback,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Rollback => "rollback",
        }
    }

    fn parse(id: &str) -> Option<Operation> {
        let (kind, nonce) = id.split_once('-')?;
        Uuid::parse_str(nonce).ok()?;
        [Operation::Create, Operation::Update, Operation::Delete, Operation::Rollback]
            .into_iter()
            .find(|operation| operation.as_str() == kind)
    }
}

fn nonce() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A finished operation on `resource` (a session's or memory's full name).
pub fn done(resource: &str, operation: Operation, response: Value) -> Value {
    json!({"name": format!("{resource}/operations/{}-{}", operation.as_str(), nonce()), "done": true, "response": response})
}

/// A finished purge that matched `count` memories.
pub fn purged(engine: &EnginePath, count: u64) -> Value {
    json!({
        "name": engine.operation(&format!("purge-{count}-{}", nonce())),
        "done": true,
        "response": {"purgeCount": count.to_string()},
    })
}

/// A generation job as its operation.
async fn job_operation(engine: &EnginePath, memory: &MemoryState, call: &Call, job: &Job) -> Value {
    let name = engine.operation(&format!("generate-{}", job.id));
    match job.status {
        JobStatus::Pending | JobStatus::Running => json!({"name": name, "done": false}),
        JobStatus::Failed => json!({
            "name": name,
            "done": true,
            // google.rpc.Code 13: INTERNAL.
            "error": {"code": 13, "message": job.error.clone().unwrap_or_else(|| "the generation job failed".to_owned())},
        }),
        JobStatus::Completed => {
            let outcome = &job.outcome;
            let mut generated = Vec::new();
            for (ids, action) in [
                (&outcome.memories_added, "CREATED"),
                (&outcome.memories_updated, "UPDATED"),
                (&outcome.memories_deleted, "DELETED"),
            ] {
                for id in ids {
                    let name = match memory.memories.get(&call.access, *id, call.now).await {
                        Ok(found) => memory_name(&found),
                        Err(_) => id.to_string(),
                    };
                    generated.push(json!({"memory": {"name": engine.memory(&name)}, "action": action}));
                }
            }
            json!({"name": name, "done": true, "response": {"generatedMemories": generated}})
        }
    }
}

pub async fn get_session_operation(
    state: &AppState,
    mut call: Call,
    id: &str,
    operation: &str,
) -> Result<Value, ApiError> {
    call.require(Permission::SessionRead)?;
    call.finish_query()?;
    let kind = Operation::parse(operation).ok_or_else(operation_not_found)?;
    let name = format!("{}/operations/{operation}", call.engine.session(id));
    let response = match (kind, state.sessions.get(&call.access, session_uuid(&call, id), false, call.now).await) {
        (Operation::Delete, _) => json!({}),
        (_, Ok(session)) => super::sessions::render_session(&call.engine, &session),
        (_, Err(err)) => return Err(err.into()),
    };
    Ok(json!({"name": name, "done": true, "response": response}))
}

pub async fn get_memory_operation(
    memory: &MemoryState,
    mut call: Call,
    id: &str,
    operation: &str,
) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let kind = Operation::parse(operation).ok_or_else(operation_not_found)?;
    let name = format!("{}/operations/{operation}", call.engine.memory(id));
    let response = match (kind, memory.memories.get(&call.access, memory_uuid(&call, id), call.now).await) {
        (Operation::Delete, _) => json!({}),
        (_, Ok(found)) => render_memory(&call.engine, &found),
        (_, Err(err)) => return Err(err.into()),
    };
    Ok(json!({"name": name, "done": true, "response": response}))
}

pub async fn get_operation(memory: &MemoryState, mut call: Call, operation: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let name = call.engine.operation(operation);
    let not_found = operation_not_found;
    let (kind, rest) = operation.split_once('-').ok_or_else(not_found)?;
    match kind {
        "generate" => {
            let id = Uuid::parse_str(rest).map_err(|_| not_found())?;
            let job = memory.generation.get(&call.access, id).await.map_err(|err| match err {
                CoreError::NotFound { .. } => not_found(),
                other => other.into(),
            })?;
            Ok(job_operation(&call.engine, memory, &call, &job).await)
        }
        "purge" => {
            let (count, nonce) = rest.split_once('-').ok_or_else(not_found)?;
            let count: u64 = count.parse().map_err(|_| not_found())?;
            Uuid::parse_str(nonce).map_err(|_| not_found())?;
            Ok(json!({"name": name, "done": true, "response": {"purgeCount": count.to_string()}}))
        }
        "ingest" => {
            Uuid::parse_str(rest).map_err(|_| not_found())?;
            Ok(json!({"name": name, "done": true, "response": {}}))
        }
        _ => Err(not_found()),
    }
}

fn operation_not_found() -> ApiError {
    ApiError::Domain(CoreError::NotFound { resource: Resource::Operation })
}

/// Google's `metadataMergeStrategy`; unset is MERGE.
fn metadata_merge(strategy: Option<&str>) -> Result<MetadataMerge, ApiError> {
    match strategy {
        None | Some("METADATA_MERGE_STRATEGY_UNSPECIFIED" | "MERGE") => Ok(MetadataMerge::Merge),
        Some("OVERWRITE") => Ok(MetadataMerge::Overwrite),
        Some("REQUIRE_EXACT_MATCH") => Ok(MetadataMerge::RequireExactMatch),
        Some(other) => {
            Err(invalid("metadataMergeStrategy", format!("{other:?} is none of MERGE, OVERWRITE, REQUIRE_EXACT_MATCH")))
        }
    }
}

/// The topics a generation may file facts under.
fn allowed_topics(message: &GenerateMessage) -> Result<Vec<TopicSpec>, ApiError> {
    let topics = message.allowed_topics.as_deref().unwrap_or_default();
    topics
        .iter()
        .enumerate()
        .map(|(index, topic)| {
            Ok(TopicSpec { name: topic.name(&format!("allowedTopics[{index}]"))?, description: None })
        })
        .collect()
}

/// Google's events as inline events of a job: their text, their role; events without text
/// (a function call, say) say nothing a fact could come from.
fn inline_events(call: &Call, events: &[DirectEvent], field: &str) -> Result<Vec<InlineEvent>, ApiError> {
    let mut inline = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let content = event.content.as_ref().ok_or_else(|| required(&format!("{field}[{position}].content")))?;
        let (role, native) = native_content(None, Some(content));
        let Value::String(text) = native else { continue };
        if text.trim().is_empty() {
            continue;
        }
        let author = match role {
            Role::User => "user",
            _ => "model",
        };
        let id = match &event.event_id {
            Some(event_id) => id_for_name(&call.access.org_id, "event", event_id),
            None => derived_event_id(position, author, &text),
        };
        inline.push(InlineEvent { id, author: author.to_owned(), role, content: text, said_at: event.event_time });
    }
    Ok(inline)
}

pub async fn generate(state: &AppState, memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    call.finish_query()?;
    let message: GenerateMessage = call.json()?;
    let n_sources = [
        message.vertex_session_source.is_some(),
        message.direct_contents_source.is_some(),
        message.direct_memories_source.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if n_sources != 1 {
        return Err(invalid(
            "source",
            "give exactly one of vertexSessionSource, directContentsSource and directMemoriesSource",
        ));
    }
    let config = GenerationConfig {
        topics: allowed_topics(&message)?,
        disable_consolidation: message.disable_consolidation.unwrap_or(false),
        metadata: native_metadata(&message.metadata.clone().unwrap_or_default())?,
        metadata_merge: metadata_merge(message.metadata_merge_strategy.as_deref())?,
        ..GenerationConfig::default()
    };
    let source = if let Some(session) = &message.vertex_session_source {
        call.require(Permission::SessionRead)?;
        let id = names::session_of(&session.session, &call.engine)?;
        let session_id = session_uuid(&call, &id);
        let (from_seq, to_seq) = match (session.start_time, session.end_time) {
            (None, None) => (None, None),
            (start, end) => match seq_range(state, &call, session_id, start, end).await? {
                Some(range) => (Some(range.0), Some(range.1)),
                // Nothing said in that time: nothing to remember.
                None => {
                    return Ok(
                        json!({"name": call.engine.operation(&format!("ingest-{}", nonce())), "done": true, "response": {"generatedMemories": []}}),
                    );
                }
            },
        };
        Source::Session { session_id, from_seq, to_seq }
    } else if let Some(contents) = &message.direct_contents_source {
        let events = inline_events(&call, &contents.events, "directContentsSource.events")?;
        if events.is_empty() {
            return Err(invalid("directContentsSource.events", "must hold at least one event with text"));
        }
        Source::Events { events }
    } else {
        let direct =
            message.direct_memories_source.as_ref().map(|source| source.direct_memories.as_slice()).unwrap_or_default();
        let mut facts = Vec::new();
        for (index, fact) in direct.iter().enumerate() {
            let topic = match fact.topics.as_deref().and_then(<[_]>::first) {
                Some(topic) => Some(topic.name(&format!("directMemoriesSource.directMemories[{index}].topics[0]"))?),
                None => None,
            };
            facts.push(DirectFact { fact: fact.fact.clone(), topic, confidence: None });
        }
        Source::Memories { facts }
    };
    let request = GenerateRequest {
        source,
        scope: message.scope.clone(),
        config,
        trace_context: crate::trace_context::current_context_map(),
        run_after: None,
    };
    let job =
        memory.generation.submit(&call.access, &call.actor(), request, call.now).await.map_err(generation_field)?;
    memory.job_queue_wake.notify_one();
    Ok(job_operation(&call.engine, memory, &call, &job).await)
}

/// The native request's field names, as this request named them.
fn generation_field(err: CoreError) -> ApiError {
    match err {
        CoreError::Validation { field, message } => {
            let field = match field.as_str() {
                "events" => "directContentsSource.events".to_owned(),
                "memories" => "directMemoriesSource.directMemories".to_owned(),
                other => other.replace("memories[", "directMemoriesSource.directMemories["),
            };
            ApiError::Domain(CoreError::Validation { field, message })
        }
        other => other.into(),
    }
}

/// The first and last `seq` of the session's events in `[start, end)`, if any.
async fn seq_range(
    state: &AppState,
    call: &Call,
    session_id: Uuid,
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Option<(i64, i64)>, ApiError> {
    let page_size = state.sessions.limits().max_events_page;
    let (mut after_seq, mut range) = (0, None::<(i64, i64)>);
    loop {
        let page = state.sessions.events(&call.access, session_id, after_seq, page_size, call.now).await?;
        for event in &page.events {
            let inside =
                start.is_none_or(|start| event.timestamp >= start) && end.is_none_or(|end| event.timestamp < end);
            if inside {
                range = Some(range.map_or((event.seq, event.seq), |(first, _)| (first, event.seq)));
            }
        }
        match page.next_after_seq {
            Some(next) => after_seq = next,
            None => return Ok(range),
        }
    }
}

/// The session that buffers the events of one stream of one scope.
fn stream_session(call: &Call, scope: &Scope, stream_id: &str) -> Uuid {
    id_for_name(&call.access.org_id, "ingest-stream", &format!("{}\u{0}{stream_id}", scope_key(scope)))
}

pub async fn ingest_events(state: &AppState, memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    call.finish_query()?;
    let message: IngestMessage = call.json()?;
    let scope = message.scope.clone().ok_or_else(|| required("scope"))?;
    if message.stream_id.chars().count() > names::MAX_ID_CHARS {
        return Err(invalid("streamId", format!("at most {} characters", names::MAX_ID_CHARS)));
    }
    // No rule: the stream is flushed at once (what ADK's `add_session_to_memory` relies on).
    let rule = message.generation_trigger_config.map(|config| config.generation_rule).filter(|rule| !rule.is_empty());
    if let Some(rule) = &rule {
        for (field, value) in [
            ("generationTriggerConfig.generationRule.idleDuration", rule.idle_duration),
            ("generationTriggerConfig.generationRule.fixedInterval", rule.fixed_interval),
            ("generationTriggerConfig.generationRule.eventCount", rule.event_count),
        ] {
            if value.is_some_and(|value| !(0..=contextiq_core::limits::MAX_TTL_SECONDS).contains(&value)) {
                return Err(invalid(field, "must not be negative"));
            }
        }
        if rule.idle_duration.is_some() && rule.fixed_interval.is_some() {
            return Err(invalid(
                "generationTriggerConfig.generationRule",
                "give idleDuration or fixedInterval, not both",
            ));
        }
    }
    let config = GenerationConfig {
        metadata: native_metadata(&message.metadata.clone().unwrap_or_default())?,
        metadata_merge: metadata_merge(message.metadata_merge_strategy.as_deref())?,
        ..GenerationConfig::default()
    };
    let session_id = stream_session(&call, &scope, &message.stream_id);
    // An event sent again (ADK sends a session's every event each time) is ingested once.
    let mut seen = ingested_event_ids(state, &call, session_id).await?;
    let events = message.direct_contents_source.as_ref().map(|source| source.events.as_slice()).unwrap_or_default();
    let mut new_events = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let content =
            event.content.as_ref().ok_or_else(|| required(&format!("directContentsSource.events[{index}].content")))?;
        if let Some(event_id) = &event.event_id
            && !seen.insert(event_id.clone())
        {
            continue;
        }
        let (role, native) = native_content(None, Some(content));
        let mut extras = Map::from_iter([("content".to_owned(), Value::Object(content.clone()))]);
        if let Some(event_id) = &event.event_id {
            extras.insert("eventId".to_owned(), json!(event_id));
        }
        new_events.push(NewEvent {
            author: if role == Role::User { "user" } else { "model" }.to_owned(),
            role,
            content: native,
            metadata: Map::from_iter([(AGENT_ENGINE.to_owned(), Value::Object(extras))]),
            timestamp: event.event_time,
            invocation_id: None,
            state_delta: Map::new(),
            token_count: 0,
            kind: contextiq_core::EventKind::Message,
        });
    }
    let last_seq = match new_events.is_empty() {
        false => Some(append_to_stream(state, &call, &scope, &message.stream_id, session_id, new_events).await?),
        true => match state.sessions.get(&call.access, session_id, false, call.now).await {
            Ok(stream) => Some(stream.event_count),
            Err(CoreError::NotFound { resource: Resource::Session }) => None,
            Err(err) => return Err(err.into()),
        },
    };
    let processed = match last_seq {
        Some(_) => {
            memory
                .generation
                .job_store()
                .generation_watermark(&call.access.org_id, session_id, &scope_key(&scope))
                .await?
        }
        None => 0,
    };
    let waiting = last_seq.unwrap_or(0) - processed;
    // When the waiting events are to become memories: at once on a flush, without a rule, or
    // once enough are waiting; after the idle time or the interval otherwise. Jobs of one scope
    // run in order and each reads every event of the stream not yet processed, so a later job
    // finds nothing left by an earlier one and changes nothing.
    let run_after = match &rule {
        _ if waiting <= 0 => None,
        None => Some(call.now),
        Some(_) if message.force_flush => Some(call.now),
        Some(rule) if rule.event_count.is_some_and(|count| waiting >= count.max(1)) => Some(call.now),
        Some(rule) => rule.idle_duration.or(rule.fixed_interval).map(|delay| call.now + Duration::seconds(delay)),
    };
    let Some(run_after) = run_after else {
        return Ok(
            json!({"name": call.engine.operation(&format!("ingest-{}", nonce())), "done": true, "response": {}}),
        );
    };
    let request = GenerateRequest {
        source: Source::Session { session_id, from_seq: None, to_seq: None },
        scope: Some(scope),
        config,
        trace_context: crate::trace_context::current_context_map(),
        run_after: Some(run_after),
    };
    let job = memory.generation.submit(&call.access, &call.actor(), request, call.now).await?;
    memory.job_queue_wake.notify_one();
    Ok(job_operation(&call.engine, memory, &call, &job).await)
}

/// The event ids a stream has taken in so far.
async fn ingested_event_ids(state: &AppState, call: &Call, session_id: Uuid) -> Result<HashSet<String>, ApiError> {
    let mut ids = HashSet::new();
    let page_size = state.sessions.limits().max_events_page;
    let mut after_seq = 0;
    loop {
        let page = match state.sessions.events(&call.access, session_id, after_seq, page_size, call.now).await {
            Ok(page) => page,
            Err(CoreError::NotFound { resource: Resource::Session }) => return Ok(ids),
            Err(err) => return Err(err.into()),
        };
        for event in &page.events {
            let id = event.metadata.get(AGENT_ENGINE).and_then(|extras| extras.get("eventId")).and_then(Value::as_str);
            ids.extend(id.map(str::to_owned));
        }
        match page.next_after_seq {
            Some(next) => after_seq = next,
            None => return Ok(ids),
        }
    }
}

/// Appends events to a stream's session, creating it on the stream's first events; the `seq`
/// of the last one.
async fn append_to_stream(
    state: &AppState,
    call: &Call,
    scope: &Scope,
    stream_id: &str,
    session_id: Uuid,
    events: Vec<NewEvent>,
) -> Result<i64, ApiError> {
    match state.sessions.append(&call.access, session_id, events.clone(), call.now).await {
        Ok(appended) => return Ok(appended.last().map_or(0, |event| event.seq)),
        Err(CoreError::NotFound { resource: Resource::Session }) => {}
        Err(err) => return Err(err.into()),
    }
    let new = NewSession {
        id: Some(session_id),
        user_id: scope.get("user_id").cloned().unwrap_or_else(|| "ingest".to_owned()),
        agent_id: Some(INGEST_STREAM_AGENT.to_owned()),
        scope: Some(scope.clone()),
        state: None,
        metadata: Some(Map::from_iter([(AGENT_ENGINE.to_owned(), json!({"stream_id": stream_id}))])),
        ttl_seconds: None,
        expires_at: None,
        compaction_policy: None,
        parent_session_id: None,
    };
    match state.sessions.create(&call.access, new, call.now).await {
        // Another request of the stream created it meanwhile.
        Ok(_) | Err(CoreError::AlreadyExists { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let appended = state.sessions.append(&call.access, session_id, events, call.now).await?;
    Ok(appended.last().map_or(0, |event| event.seq))
}
