//! Memories, their revisions, retrieval and purges, over `MemoryService`.
//!
//! A native memory has one topic and plain JSON metadata; Google's has a list of topics and
//! typed metadata values. The first topic is the native topic; metadata values map one to one
//! (a string, a number, a bool; a timestamp becomes its RFC 3339 string); what the native
//! record has no field for (the id the client chose, `displayName`, `description`, the other
//! topics) is kept in the metadata under `agent_engine`, which Google's metadata never shows.

use std::collections::BTreeMap;

use contextiq_core::engine::id_for_name;
use contextiq_core::memory::{MemoryPatch, NewMemory};
use contextiq_core::{Memory, MemoryFilter, MemoryQuery, PageCursor, Permission, Revision, RevisionAction};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::filter::{self, Filter};
use super::names::{EnginePath, check_id};
use super::operations::{Operation, done, purged};
use super::sessions::{AGENT_ENGINE, snake_case, snake_case_fields};
use super::wire::{
    self, FilterGroup, MemoryMessage, MetadataValue, PurgeMessage, RetrieveMessage, RollbackMessage, TopicMessage,
};
use super::{Call, filtered_page, invalid, invalid_query, required};
use crate::error::ApiError;
use crate::routes::sessions::{decode_page_cursor, encode_page_cursor};
use crate::state::MemoryState;

/// Google's default and largest `top_k` of a similarity search.
const DEFAULT_TOP_K: i64 = 3;
const MAX_TOP_K: i64 = 100;
const MAX_PAGE: u32 = 100;

pub fn memory_uuid(call: &Call, id: &str) -> Uuid {
    id_for_name(&call.access.org_id, "memory", id)
}

/// The id a client knows a memory by: the one it chose, else the record's.
pub fn memory_name(memory: &Memory) -> String {
    extras(memory)
        .and_then(|extras| extras.get("memory_id"))
        .and_then(Value::as_str)
        .map_or_else(|| memory.id.to_string(), str::to_owned)
}

fn extras(memory: &Memory) -> Option<&Map<String, Value>> {
    memory.metadata.get(AGENT_ENGINE).and_then(Value::as_object)
}

pub fn render(engine: &EnginePath, memory: &Memory) -> Value {
    let extras = extras(memory);
    let topics: Vec<TopicMessage> = match extras.and_then(|extras| extras.get("topics")).and_then(Value::as_array) {
        Some(names) => names.iter().filter_map(Value::as_str).map(TopicMessage::of).collect(),
        None => memory.topic.iter().map(|topic| TopicMessage::of(topic)).collect(),
    };
    let metadata: Map<String, Value> = memory
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != AGENT_ENGINE)
        .map(|(key, value)| (key.clone(), wire::metadata_value(value)))
        .collect();
    let mut resource = json!({
        "name": engine.memory(&memory_name(memory)),
        "fact": memory.fact,
        "scope": memory.scope,
        "createTime": wire::timestamp(memory.created_at),
        "updateTime": wire::timestamp(memory.updated_at),
        "topics": topics,
        "metadata": metadata,
        "memoryType": "NATURAL_LANGUAGE_COLLECTION",
    });
    for (key, field) in [("display_name", "displayName"), ("description", "description")] {
        if let Some(value) = extras.and_then(|extras| extras.get(key)) {
            resource[field] = value.clone();
        }
    }
    if let Some(expires_at) = memory.expires_at {
        resource["expireTime"] = json!(wire::timestamp(expires_at));
    }
    resource
}

/// Google's typed metadata as the native memory's plain metadata.
pub(super) fn native_metadata(metadata: &BTreeMap<String, MetadataValue>) -> Result<Map<String, Value>, ApiError> {
    let mut native = Map::new();
    for (key, value) in metadata {
        if key == AGENT_ENGINE {
            return Err(invalid(&format!("metadata.{key}"), "this key is reserved"));
        }
        native.insert(key.clone(), value.to_json(&format!("metadata.{key}"))?);
    }
    Ok(native)
}

fn topic_names(topics: &[TopicMessage], field: &str) -> Result<Vec<String>, ApiError> {
    topics.iter().enumerate().map(|(index, topic)| Ok(topic.name(&format!("{field}[{index}]"))?)).collect()
}

pub async fn create(memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    let memory_id = call.query.take("memoryId", "memory_id")?;
    call.finish_query()?;
    if let Some(id) = &memory_id {
        check_id("memoryId", id)?;
    }
    let message: MemoryMessage = call.json()?;
    let fact = message.fact.ok_or_else(|| required("fact"))?;
    let scope = message.scope.ok_or_else(|| required("scope"))?;
    let topics = topic_names(message.topics.as_deref().unwrap_or_default(), "topics")?;
    let mut metadata = native_metadata(&message.metadata.unwrap_or_default())?;
    let mut extras = Map::new();
    if let Some(id) = &memory_id {
        extras.insert("memory_id".to_owned(), json!(id));
    }
    if let Some(display_name) = message.display_name {
        extras.insert("display_name".to_owned(), json!(display_name));
    }
    if let Some(description) = message.description {
        extras.insert("description".to_owned(), json!(description));
    }
    if topics.len() > 1 {
        extras.insert("topics".to_owned(), json!(topics));
    }
    if !extras.is_empty() {
        metadata.insert(AGENT_ENGINE.to_owned(), Value::Object(extras));
    }
    let new = NewMemory {
        id: memory_id.as_deref().map(|id| memory_uuid(&call, id)),
        scope,
        fact,
        topic: topics.first().cloned(),
        confidence: None,
        source_session_id: None,
        source_event_ids: Vec::new(),
        metadata,
        ttl_seconds: message.ttl,
        expires_at: message.expire_time,
        said_at: None,
    };
    let created = memory.memories.create(&call.access, &call.actor(), new, call.now).await?;
    let resource = render(&call.engine, &created);
    Ok(done(&call.engine.memory(&memory_name(&created)), Operation::Create, resource))
}

pub async fn get(memory: &MemoryState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let found = memory.memories.get(&call.access, memory_uuid(&call, id), call.now).await?;
    Ok(render(&call.engine, &found))
}

pub async fn list(memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    let page_size = call.query.page_size(MAX_PAGE, MAX_PAGE)?;
    let filter = parse_filter("filter", call.query.take("filter", "filter")?)?;
    let order = parse_order_by(call.query.take("orderBy", "order_by")?.as_deref())?;
    let token = call.query.take("pageToken", "page_token")?.filter(|token| !token.is_empty());
    call.finish_query()?;
    let bad_token = || invalid_query("pageToken", "is not a token this list gave");
    let keep = |resource: &Value, found: &Memory| {
        filter.as_ref().is_none_or(|filter| filter.matches(&filterable(resource, found)))
    };
    if order == NEWEST_FIRST {
        let cursor = token.map(|token| decode_page_cursor(&token).map_err(|_| bad_token())).transpose()?;
        let (keep, call) = (&keep, &call);
        let (memories, next) = filtered_page(page_size, cursor, |cursor| async move {
            let page =
                memory.memories.list_all(&call.access, &MemoryFilter::default(), cursor, page_size, call.now).await?;
            let matches = page
                .memories
                .iter()
                .filter_map(|found| {
                    let resource = render(&call.engine, found);
                    keep(&resource, found)
                        .then_some((resource, PageCursor { created_at: found.created_at, id: found.id }))
                })
                .collect();
            Ok((matches, page.next_cursor))
        })
        .await?;
        let mut answer = json!({"memories": memories});
        if let Some(next) = next {
            answer["nextPageToken"] = json!(encode_page_cursor(next));
        }
        return Ok(answer);
    }
    // Another order: every match sorted, then paged by position.
    let offset = match token {
        None => 0,
        Some(token) => token.strip_prefix('o').and_then(|offset| offset.parse::<usize>().ok()).ok_or_else(bad_token)?,
    };
    let mut matched = Vec::new();
    let mut cursor = None;
    loop {
        let page = memory.memories.list_all(&call.access, &MemoryFilter::default(), cursor, MAX_PAGE, call.now).await?;
        matched.extend(page.memories.into_iter().filter(|found| keep(&render(&call.engine, found), found)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    matched.sort_by(|a, b| {
        order.iter().fold(std::cmp::Ordering::Equal, |ordering, (field, descending)| {
            let (left, right) = match field {
                OrderField::CreateTime => (a.created_at, b.created_at),
                OrderField::UpdateTime => (a.updated_at, b.updated_at),
            };
            ordering.then(if *descending { right.cmp(&left) } else { left.cmp(&right) })
        })
    });
    let memories: Vec<Value> =
        matched.iter().skip(offset).take(page_size as usize).map(|found| render(&call.engine, found)).collect();
    let mut answer = json!({"memories": memories});
    if offset + (page_size as usize) < matched.len() {
        answer["nextPageToken"] = json!(format!("o{}", offset + page_size as usize));
    }
    Ok(answer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderField {
    CreateTime,
    UpdateTime,
}

/// Newest first: the stores' order, and Google's default.
const NEWEST_FIRST: &[(OrderField, bool)] = &[(OrderField::CreateTime, true)];

/// AIP-132 `orderBy`: fields `create_time` and `update_time`, each ascending unless `desc`.
fn parse_order_by(order_by: Option<&str>) -> Result<Vec<(OrderField, bool)>, ApiError> {
    let Some(order_by) = order_by.filter(|order| !order.trim().is_empty()) else { return Ok(NEWEST_FIRST.to_vec()) };
    let invalid_order = || invalid_query("orderBy", "order by create_time or update_time, each optionally desc");
    order_by
        .split(',')
        .map(|term| {
            let mut words = term.split_whitespace();
            let field = match words.next().map(snake_case).as_deref() {
                Some("create_time") => OrderField::CreateTime,
                Some("update_time") => OrderField::UpdateTime,
                _ => return Err(invalid_order()),
            };
            let descending = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => return Err(invalid_order()),
            };
            match words.next() {
                None => Ok((field, descending)),
                Some(_) => Err(invalid_order()),
            }
        })
        .collect()
}

/// A memory, rendered as `resource`, as filters see it: snake_case fields, topics by
/// snake_case name, metadata values plain, and `said_time`.
fn filterable(resource: &Value, memory: &Memory) -> Value {
    let mut fields = snake_case_fields(resource);
    // Not a field of Google's resource: when the memory was said (`said_at`), which filters may
    // name as `said_time` (e.g. `said_time>="2026-11-01T00:00:00Z"`).
    fields["said_time"] = json!(wire::timestamp(memory.said_at));
    if let Some(topics) = fields.get_mut("topics").and_then(Value::as_array_mut) {
        for topic in topics.iter_mut() {
            *topic = snake_case_fields(topic);
        }
    }
    if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
        for value in metadata.values_mut() {
            let plain = value.as_object().and_then(|typed| typed.values().next()).cloned().unwrap_or(Value::Null);
            *value = plain;
        }
    }
    fields
}

fn parse_filter(field: &str, text: Option<String>) -> Result<Option<Filter>, ApiError> {
    match text.filter(|text| !text.trim().is_empty()) {
        None => Ok(None),
        Some(text) => filter::parse(&text).map(Some).map_err(|reason| invalid(field, reason)),
    }
}

pub async fn patch(memory: &MemoryState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    let mask = call.query.take("updateMask", "update_mask")?;
    call.finish_query()?;
    let message: MemoryMessage = call.json()?;
    let uuid = memory_uuid(&call, id);
    let current = memory.memories.get(&call.access, uuid, call.now).await?;
    let fields: Vec<String> = match mask.as_deref().filter(|mask| !mask.trim().is_empty()) {
        Some(mask) => mask.split(',').map(|field| snake_case(field.trim())).collect(),
        None => [
            ("fact", message.fact.is_some()),
            ("scope", message.scope.is_some()),
            ("display_name", message.display_name.is_some()),
            ("description", message.description.is_some()),
            ("topics", message.topics.is_some()),
            ("metadata", message.metadata.is_some()),
            ("ttl", message.ttl.is_some()),
            ("expire_time", message.expire_time.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(field, _)| field.to_owned())
        .collect(),
    };
    let mut patch = MemoryPatch::default();
    let mut metadata = current.metadata.clone();
    let mut extras = extras(&current).cloned().unwrap_or_default();
    for field in &fields {
        match field.as_str() {
            "fact" => patch.fact = Some(message.fact.clone().ok_or_else(|| required("fact"))?),
            "scope" => {
                if message.scope.as_ref() != Some(&current.scope) {
                    return Err(invalid("scope", "a memory's scope cannot change"));
                }
            }
            "display_name" | "description" => {
                let value = if field == "display_name" { &message.display_name } else { &message.description };
                match value {
                    Some(value) => drop(extras.insert(field.clone(), json!(value))),
                    None => drop(extras.remove(field.as_str())),
                }
            }
            "topics" => {
                let topics = topic_names(message.topics.as_deref().unwrap_or_default(), "topics")?;
                patch.topic = Some(topics.first().cloned());
                match topics.len() > 1 {
                    true => drop(extras.insert("topics".to_owned(), json!(topics))),
                    false => drop(extras.remove("topics")),
                }
            }
            "metadata" => {
                metadata = native_metadata(&message.metadata.clone().unwrap_or_default())?;
            }
            "ttl" => patch.ttl_seconds = Some(message.ttl.ok_or_else(|| required("ttl"))?),
            "expire_time" => patch.expires_at = Some(message.expire_time),
            other => return Err(invalid_query("updateMask", &format!("{other} cannot be updated"))),
        }
    }
    metadata.remove(AGENT_ENGINE);
    if !extras.is_empty() {
        metadata.insert(AGENT_ENGINE.to_owned(), Value::Object(extras));
    }
    if metadata != current.metadata {
        patch.metadata = Some(metadata);
    }
    let updated = memory.memories.update(&call.access, &call.actor(), uuid, patch, call.now).await?;
    let resource = render(&call.engine, &updated);
    Ok(done(&call.engine.memory(id), Operation::Update, resource))
}

pub async fn delete(memory: &MemoryState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    call.finish_query()?;
    memory.memories.delete(&call.access, &call.actor(), memory_uuid(&call, id), false, call.now).await?;
    Ok(done(&call.engine.memory(id), Operation::Delete, json!({})))
}

/// The schema id of the one profile ContextIQ keeps per scope: the attributes its memories set,
/// with no schema to configure.
pub const PROFILE_SCHEMA_ID: &str = "contextiq-profile";

/// `memories:retrieveProfiles`: the scope's profile (`MemoryService::profile`) as one
/// `MemoryProfile` keyed by `PROFILE_SCHEMA_ID`, its `profile` mapping each attribute to its
/// value. No profile when the scope's memories set nothing or `schemaIds` leaves it out.
pub async fn retrieve_profiles(memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let message: wire::RetrieveProfilesMessage = call.json()?;
    let scope = message.scope.ok_or_else(|| required("scope"))?;
    let attributes = memory.memories.profile(&call.access, &scope, call.now).await?;
    let wanted = message.schema_ids.is_none_or(|ids| ids.is_empty() || ids.iter().any(|id| id == PROFILE_SCHEMA_ID));
    let mut profiles = Map::new();
    if wanted && !attributes.is_empty() {
        let profile: Map<String, Value> =
            attributes.into_iter().map(|attribute| (attribute.attribute, Value::String(attribute.value))).collect();
        profiles.insert(PROFILE_SCHEMA_ID.to_owned(), json!({"schemaId": PROFILE_SCHEMA_ID, "profile": profile}));
    }
    Ok(json!({"profiles": profiles}))
}

pub async fn retrieve(memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let message: RetrieveMessage = call.json()?;
    let scope = message.scope.ok_or_else(|| required("scope"))?;
    let filter = parse_filter("filter", message.filter)?;
    let groups = message.filter_groups.unwrap_or_default();
    check_groups(&groups, "filterGroups")?;
    let natural_language = match message.memory_types.as_deref() {
        None | Some([]) => true,
        Some(types) => {
            for (index, memory_type) in types.iter().enumerate() {
                if !["NATURAL_LANGUAGE_COLLECTION", "STRUCTURED_PROFILE", "MEMORY_TYPE_UNSPECIFIED"]
                    .contains(&memory_type.as_str())
                {
                    return Err(invalid(
                        &format!("memoryTypes[{index}]"),
                        format!("unknown memory type {memory_type:?}"),
                    ));
                }
            }
            types.iter().any(|memory_type| memory_type != "STRUCTURED_PROFILE")
        }
    };
    let keep = |resource: &Value, found: &Memory| {
        let filterable = filterable(resource, found);
        filter.as_ref().is_none_or(|filter| filter.matches(&filterable)) && groups_match(&groups, &filterable)
    };
    let retrieved: Vec<Value> = match (message.similarity_search_params, message.simple_retrieval_params) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "similaritySearchParams",
                "give similaritySearchParams or simpleRetrievalParams, not both",
            ));
        }
        (Some(search), None) => {
            // Unset (or 0) is 3; above 100 is 100, as Google coerces it.
            let top_k = match search.top_k.unwrap_or(0) {
                0 => DEFAULT_TOP_K,
                top_k if top_k > 0 => top_k.min(MAX_TOP_K),
                _ => return Err(invalid("similaritySearchParams.topK", "must not be negative")),
            };
            if !natural_language {
                Vec::new()
            } else {
                // Every memory the search ranks, so the filters leave `top_k` whenever they can.
                let scored = memory
                    .memories
                    .search(
                        &call.access,
                        &scope,
                        &MemoryQuery::new(search.search_query.as_str(), MAX_TOP_K as u32),
                        call.now,
                    )
                    .await
                    .map_err(|err| renamed(err, "search_query", "similaritySearchParams.searchQuery"))?;
                scored
                    .iter()
                    .map(|scored| (render(&call.engine, &scored.memory), scored))
                    .filter(|(resource, scored)| keep(resource, &scored.memory))
                    .take(top_k as usize)
                    // Google answers a distance (smaller is nearer); the fused relevance is in [0, 1].
                    .map(|(resource, scored)| json!({"memory": resource, "distance": 1.0 - scored.score}))
                    .collect()
            }
        }
        (None, simple) => {
            let simple = simple.unwrap_or_default();
            // Without search parameters too: simple retrieval, 3 unless asked, at most 100.
            let page_size = match simple.page_size.unwrap_or(0) {
                0 => DEFAULT_TOP_K as u32,
                size if size > 0 => size.min(MAX_TOP_K) as u32,
                _ => return Err(invalid("simpleRetrievalParams.pageSize", "must not be negative")),
            };
            let cursor = simple
                .page_token
                .filter(|token| !token.is_empty())
                .map(|token| {
                    decode_page_cursor(&token).map_err(|_| invalid("simpleRetrievalParams.pageToken", "is not a token"))
                })
                .transpose()?;
            if !natural_language {
                Vec::new()
            } else {
                let page = memory
                    .memories
                    .list(&call.access, &scope, &MemoryFilter::default(), cursor, page_size, call.now)
                    .await?;
                page.memories
                    .iter()
                    .map(|found| (render(&call.engine, found), found))
                    .filter(|(resource, found)| keep(resource, found))
                    .map(|(resource, _)| json!({"memory": resource}))
                    .collect()
            }
        }
    };
    // Never a `nextPageToken`: the SDK's pager would send it back in a config that forbids it.
    Ok(json!({"retrievedMemories": retrieved}))
}

fn renamed(err: contextiq_core::Error, from: &str, to: &str) -> ApiError {
    match err {
        contextiq_core::Error::Validation { field, message } if field == from => {
            ApiError::Domain(contextiq_core::Error::validation(to, message))
        }
        other => ApiError::Domain(other),
    }
}

const OPS: &[&str] = &[
    "EQUAL",
    "GREATER_THAN",
    "LESS_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN_OR_EQUAL",
    "NOT_EQUAL",
    "OPERATOR_UNSPECIFIED",
];

fn check_groups(groups: &[FilterGroup], field: &str) -> Result<(), ApiError> {
    for (group_index, group) in groups.iter().enumerate() {
        for (index, condition) in group.filters.iter().enumerate() {
            let at = format!("{field}[{group_index}].filters[{index}]");
            if condition.key.trim().is_empty() {
                return Err(invalid(&format!("{at}.key"), "must not be blank"));
            }
            if let Some(op) = &condition.op
                && !OPS.contains(&op.as_str())
            {
                return Err(invalid(&format!("{at}.op"), format!("must be one of {}", OPS.join(", "))));
            }
            condition.value.to_json(&format!("{at}.value"))?;
        }
    }
    Ok(())
}

/// Whether a memory satisfies any group (every condition of it); no groups: it does.
fn groups_match(groups: &[FilterGroup], memory: &Value) -> bool {
    use std::cmp::Ordering;
    groups.is_empty()
        || groups.iter().any(|group| {
            group.filters.iter().all(|condition| {
                let Ok(expected) = condition.value.to_json("value") else { return false };
                let actual = &memory["metadata"][condition.key.as_str()];
                let ordering = match (actual, &expected) {
                    (Value::Number(left), Value::Number(right)) => left.as_f64().partial_cmp(&right.as_f64()),
                    (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
                    (Value::Bool(left), Value::Bool(right)) => Some(left.cmp(right)),
                    _ => None,
                };
                let holds = match (condition.op.as_deref().unwrap_or("EQUAL"), ordering) {
                    ("EQUAL" | "OPERATOR_UNSPECIFIED", Some(order)) => order == Ordering::Equal,
                    ("NOT_EQUAL", order) => order != Some(Ordering::Equal),
                    ("GREATER_THAN", Some(order)) => order == Ordering::Greater,
                    ("LESS_THAN", Some(order)) => order == Ordering::Less,
                    ("GREATER_THAN_OR_EQUAL", Some(order)) => order != Ordering::Less,
                    ("LESS_THAN_OR_EQUAL", Some(order)) => order != Ordering::Greater,
                    _ => false,
                };
                holds != condition.negate
            })
        })
}

pub async fn purge(memory: &MemoryState, mut call: Call) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    call.finish_query()?;
    let message: PurgeMessage = call.json()?;
    let filter = parse_filter("filter", message.filter)?;
    let groups = message.filter_groups.unwrap_or_default();
    check_groups(&groups, "filterGroups")?;
    if filter.is_none() && groups.is_empty() {
        return Err(invalid("filter", "a purge names what it erases: give filter or filterGroups"));
    }
    // Matches first, erasure after: the pages are not disturbed by what is erased.
    let mut matched = Vec::new();
    let mut cursor = None;
    loop {
        let page = memory.memories.list_all(&call.access, &MemoryFilter::default(), cursor, MAX_PAGE, call.now).await?;
        for found in &page.memories {
            let filterable = filterable(&render(&call.engine, found), found);
            if filter.as_ref().is_none_or(|filter| filter.matches(&filterable)) && groups_match(&groups, &filterable) {
                matched.push(found.id);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if message.force {
        for id in &matched {
            match memory.memories.delete(&call.access, &call.actor(), *id, true, call.now).await {
                Ok(()) | Err(contextiq_core::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(purged(&call.engine, matched.len() as u64))
}

fn render_revision(engine: &EnginePath, memory: &str, revision: &Revision) -> Value {
    let snapshot = revision.after.as_ref().or(revision.before.as_ref());
    let mut resource = json!({
        "name": engine.revision(memory, &revision.id.to_string()),
        "createTime": wire::timestamp(revision.created_at),
        "fact": snapshot.map(|snapshot| snapshot.fact.clone()).unwrap_or_default(),
        "labels": {"action": revision.action.as_str()},
    });
    if let Some(fact) = revision.cause.as_ref().and_then(|cause| cause.get("extracted_fact")).and_then(Value::as_str) {
        resource["extractedMemories"] = json!([{"fact": fact}]);
    }
    if revision.action == RevisionAction::Deleted {
        resource["labels"]["deleted"] = json!("true");
    }
    resource
}

pub async fn list_revisions(memory: &MemoryState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    let page_size = call.query.page_size(MAX_PAGE, MAX_PAGE)?;
    let offset = match call.query.take("pageToken", "page_token")?.filter(|token| !token.is_empty()) {
        None => 0,
        Some(token) => {
            token.parse::<usize>().map_err(|_| invalid_query("pageToken", "is not a token this list gave"))?
        }
    };
    let filter = parse_filter("filter", call.query.take("filter", "filter")?)?;
    call.finish_query()?;
    let mut revisions = memory.memories.revisions(&call.access, memory_uuid(&call, id)).await?;
    // Newest first, as Google lists them.
    revisions.reverse();
    if let Some(filter) = &filter {
        revisions.retain(|revision| filter.matches(&snake_case_fields(&render_revision(&call.engine, id, revision))));
    }
    let page: Vec<Value> = revisions
        .iter()
        .skip(offset)
        .take(page_size as usize)
        .map(|revision| render_revision(&call.engine, id, revision))
        .collect();
    let mut answer = json!({"memoryRevisions": page});
    if offset + (page_size as usize) < revisions.len() {
        answer["nextPageToken"] = json!((offset + page_size as usize).to_string());
    }
    Ok(answer)
}

pub async fn get_revision(memory: &MemoryState, mut call: Call, id: &str, revision: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryRead)?;
    call.finish_query()?;
    let revisions = memory.memories.revisions(&call.access, memory_uuid(&call, id)).await?;
    let found =
        Uuid::parse_str(revision).ok().and_then(|wanted| revisions.iter().find(|revision| revision.id == wanted));
    let found = found
        .ok_or(ApiError::Domain(contextiq_core::Error::NotFound { resource: contextiq_core::Resource::Revision }))?;
    Ok(render_revision(&call.engine, id, found))
}

pub async fn rollback(memory: &MemoryState, mut call: Call, id: &str) -> Result<Value, ApiError> {
    call.require(Permission::MemoryWrite)?;
    call.finish_query()?;
    let message: RollbackMessage = call.json()?;
    let revision = Uuid::parse_str(&message.target_revision_id)
        .map_err(|_| invalid("targetRevisionId", "no such revision of this memory"))?;
    let restored = memory
        .memories
        .restore(&call.access, &call.actor(), memory_uuid(&call, id), revision, call.now)
        .await
        .map_err(|err| renamed(err, "revision_id", "targetRevisionId"))?;
    Ok(done(&call.engine.memory(id), Operation::Rollback, render(&call.engine, &restored)))
}
