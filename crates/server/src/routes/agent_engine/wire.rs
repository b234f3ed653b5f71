//! The JSON of the Agent Engine surface: request messages as Google's clients send them, and
//! the resources answers carry.
//!
//! Requests: proto3 JSON, so every message field is accepted in lowerCamelCase and in
//! snake_case (the SDK passes nested dicts through, so ADK sends `actions.state_delta` and
//! `similaritySearchParams.search_query` in one body); map and Struct fields (`sessionState`,
//! `labels`, `scope`, `rawEvent`, `metadata` keys) are kept exactly as sent; integers may be
//! numbers or strings; durations are `"3600s"`; timestamps RFC 3339. A field this surface does
//! not know is refused, as Google refuses it. Answers are camelCase, timestamps RFC 3339 UTC.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use contextiq_core::Scope;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A `google.protobuf.Duration` in JSON (`"3600s"`, `"1.5s"`) as whole seconds, rounded up so
/// a TTL is never shorter than asked.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    parse_duration(&text).map(Some).map_err(de::Error::custom)
}

pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration: seconds followed by 's', such as \"3600s\"");
    let seconds = text.strip_suffix('s').ok_or_else(invalid)?;
    if seconds.is_empty() || !seconds.bytes().all(|byte| byte.is_ascii_digit() || byte == b'.' || byte == b'-') {
        return Err(invalid());
    }
    let value: f64 = seconds.parse().map_err(|_| invalid())?;
    if !value.is_finite() || value.abs() > 315_576_000_000.0 {
        return Err(invalid());
    }
    Ok(value.ceil() as i64)
}

/// An int32 or int64 field: a JSON number or a string of one, as proto3 JSON allows.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(value)) if value.fract() == 0.0 && value.abs() < 9.0e15 => Ok(Some(value as i64)),
            _ => Err(de::Error::custom(format!("{number} is not an integer"))),
        },
        Some(Value::String(text)) => {
            text.trim().parse().map(Some).map_err(|_| de::Error::custom(format!("{text:?} is not an integer")))
        }
        Some(other) => Err(de::Error::custom(format!("expected an integer, found {other}"))),
    }
}

/// A Session as a client sends it (create, patch).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionMessage {
    /// Output only; accepted so a client can send a resource back.
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub name: Option<String>,
    #[serde(alias = "user_id")]
    pub user_id: Option<String>,
    #[serde(alias = "session_state")]
    pub session_state: Option<Map<String, Value>>,
    #[serde(alias = "display_name")]
    pub display_name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "duration")]
    pub ttl: Option<i64>,
    #[serde(alias = "expire_time")]
    pub expire_time: Option<DateTime<Utc>>,
    #[allow(dead_code)] // Output only; accepted so a client can send a resource back.
    #[serde(alias = "create_time")]
    pub create_time: Option<Value>,
    #[allow(dead_code)] // Output only; accepted so a client can send a resource back.
    #[serde(alias = "update_time")]
    pub update_time: Option<Value>,
}

/// A SessionEvent as `:appendEvent` receives it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub name: Option<String>,
    pub author: Option<String>,
    #[serde(alias = "invocation_id")]
    pub invocation_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub content: Option<Map<String, Value>>,
    pub actions: Option<Map<String, Value>>,
    #[serde(alias = "event_metadata")]
    pub event_metadata: Option<Map<String, Value>>,
    #[serde(alias = "error_code")]
    pub error_code: Option<String>,
    #[serde(alias = "error_message")]
    pub error_message: Option<String>,
    #[serde(alias = "raw_event")]
    pub raw_event: Option<Map<String, Value>>,
}

/// A memory topic: a managed one or a custom label.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TopicMessage {
    #[serde(alias = "managed_memory_topic", skip_serializing_if = "Option::is_none")]
    pub managed_memory_topic: Option<String>,
    #[serde(alias = "custom_memory_topic_label", skip_serializing_if = "Option::is_none")]
    pub custom_memory_topic_label: Option<String>,
}

impl TopicMessage {
    /// The topic's name, as memories and generation configs carry it.
    pub fn name(&self, field: &str) -> Result<String, contextiq_core::Error> {
        match (&self.managed_memory_topic, &self.custom_memory_topic_label) {
            (Some(name), None) | (None, Some(name)) if !name.trim().is_empty() => Ok(name.clone()),
            _ => Err(contextiq_core::Error::validation(
                field,
                "a topic is exactly one of managedMemoryTopic and customMemoryTopicLabel, not blank",
            )),
        }
    }

    pub fn of(name: &str) -> TopicMessage {
        match contextiq_core::generation::MANAGED_TOPICS.contains(&name) {
            true => TopicMessage { managed_memory_topic: Some(name.to_owned()), custom_memory_topic_label: None },
            false => TopicMessage { managed_memory_topic: None, custom_memory_topic_label: Some(name.to_owned()) },
        }
    }
}

/// A metadata value: exactly one of a string, a double, a bool, a timestamp.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataValue {
    #[serde(alias = "string_value")]
    pub string_value: Option<String>,
    #[serde(alias = "double_value")]
    pub double_value: Option<f64>,
    #[serde(alias = "bool_value")]
    pub bool_value: Option<bool>,
    #[serde(alias = "timestamp_value")]
    pub timestamp_value: Option<DateTime<Utc>>,
}

impl MetadataValue {
    /// The plain JSON value a native memory's metadata holds: a string, a number, a bool, or a
    /// timestamp as its RFC 3339 string.
    pub fn to_json(&self, field: &str) -> Result<Value, contextiq_core::Error> {
        match (&self.string_value, self.double_value, self.bool_value, self.timestamp_value) {
            (Some(text), None, None, None) => Ok(Value::String(text.clone())),
            (None, Some(number), None, None) => serde_json::Number::from_f64(number)
                .map(Value::Number)
                .ok_or_else(|| contextiq_core::Error::validation(field, "doubleValue must be finite")),
            (None, None, Some(flag), None) => Ok(Value::Bool(flag)),
            (None, None, None, Some(at)) => Ok(Value::String(timestamp(at))),
            _ => Err(contextiq_core::Error::validation(
                field,
                "a metadata value is exactly one of stringValue, doubleValue, boolValue, timestampValue",
            )),
        }
    }
}

/// A plain JSON metadata value as Google's typed value.
pub fn metadata_value(value: &Value) -> Value {
    match value {
        Value::Bool(flag) => serde_json::json!({"boolValue": flag}),
        Value::Number(number) => serde_json::json!({"doubleValue": number}),
        Value::String(text) => serde_json::json!({"stringValue": text}),
        other => serde_json::json!({"stringValue": other.to_string()}),
    }
}

/// A Memory as a client sends it (create, patch).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub name: Option<String>,
    pub fact: Option<String>,
    pub scope: Option<Scope>,
    #[serde(alias = "display_name")]
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub ttl: Option<i64>,
    #[serde(alias = "expire_time")]
    pub expire_time: Option<DateTime<Utc>>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_ttl", default, deserialize_with = "duration")]
    pub revision_ttl: Option<i64>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_expire_time")]
    pub revision_expire_time: Option<DateTime<Utc>>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_labels")]
    pub revision_labels: Option<BTreeMap<String, String>>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "disable_memory_revisions")]
    pub disable_memory_revisions: Option<bool>,
    pub topics: Option<Vec<TopicMessage>>,
    pub metadata: Option<BTreeMap<String, MetadataValue>>,
    #[allow(dead_code)] // Output only; accepted so a client can send a resource back.
    #[serde(alias = "create_time")]
    pub create_time: Option<Value>,
    #[allow(dead_code)] // Output only; accepted so a client can send a resource back.
    #[serde(alias = "update_time")]
    pub update_time: Option<Value>,
}

/// One event of a `directContentsSource`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectEvent {
    pub content: Option<Map<String, Value>>,
    #[serde(alias = "event_id")]
    pub event_id: Option<String>,
    #[serde(alias = "event_time")]
    pub event_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectContentsSource {
    #[serde(default)]
    pub events: Vec<DirectEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VertexSessionSource {
    pub session: String,
    #[serde(alias = "start_time")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(alias = "end_time")]
    pub end_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectMemory {
    pub fact: String,
    pub topics: Option<Vec<TopicMessage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectMemoriesSource {
    #[serde(alias = "direct_memories", default)]
    pub direct_memories: Vec<DirectMemory>,
}

/// `memories:generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateMessage {
    #[serde(alias = "vertex_session_source")]
    pub vertex_session_source: Option<VertexSessionSource>,
    #[serde(alias = "direct_contents_source")]
    pub direct_contents_source: Option<DirectContentsSource>,
    #[serde(alias = "direct_memories_source")]
    pub direct_memories_source: Option<DirectMemoriesSource>,
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub parent: Option<String>,
    pub scope: Option<Scope>,
    #[serde(alias = "disable_consolidation")]
    pub disable_consolidation: Option<bool>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_labels")]
    pub revision_labels: Option<BTreeMap<String, String>>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_ttl", default, deserialize_with = "duration")]
    pub revision_ttl: Option<i64>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_expire_time")]
    pub revision_expire_time: Option<DateTime<Utc>>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "disable_memory_revisions")]
    pub disable_memory_revisions: Option<bool>,
    pub metadata: Option<BTreeMap<String, MetadataValue>>,
    #[serde(alias = "metadata_merge_strategy")]
    pub metadata_merge_strategy: Option<String>,
    #[serde(alias = "allowed_topics")]
    pub allowed_topics: Option<Vec<TopicMessage>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerationRule {
    #[serde(alias = "idle_duration", default, deserialize_with = "duration")]
    pub idle_duration: Option<i64>,
    #[serde(alias = "fixed_interval", default, deserialize_with = "duration")]
    pub fixed_interval: Option<i64>,
    #[serde(alias = "event_count", default, deserialize_with = "integer")]
    pub event_count: Option<i64>,
    #[allow(dead_code)] // Every job reads all the stream's events not yet processed: accepted, not applied.
    #[serde(alias = "overlap_event_count", default, deserialize_with = "integer")]
    pub overlap_event_count: Option<i64>,
}

impl GenerationRule {
    pub fn is_empty(&self) -> bool {
        self.idle_duration.is_none() && self.fixed_interval.is_none() && self.event_count.is_none()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerationTriggerConfig {
    #[serde(alias = "generation_rule", default)]
    pub generation_rule: GenerationRule,
}

/// `memories:ingestEvents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngestMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub parent: Option<String>,
    pub scope: Option<Scope>,
    #[serde(alias = "stream_id", default)]
    pub stream_id: String,
    #[serde(alias = "direct_contents_source")]
    pub direct_contents_source: Option<DirectContentsSource>,
    #[serde(alias = "generation_trigger_config")]
    pub generation_trigger_config: Option<GenerationTriggerConfig>,
    #[serde(alias = "force_flush", default)]
    pub force_flush: bool,
    pub metadata: Option<BTreeMap<String, MetadataValue>>,
    #[serde(alias = "metadata_merge_strategy")]
    pub metadata_merge_strategy: Option<String>,
    #[allow(dead_code)] // ContextIQ keeps every revision, without labels or expiry: accepted, not applied.
    #[serde(alias = "revision_labels")]
    pub revision_labels: Option<BTreeMap<String, String>>,
    #[allow(dead_code)] // As `revision_labels`.
    #[serde(alias = "revision_ttl", default, deserialize_with = "duration")]
    pub revision_ttl: Option<i64>,
    #[allow(dead_code)] // As `revision_labels`.
    #[serde(alias = "revision_expire_time")]
    pub revision_expire_time: Option<DateTime<Utc>>,
    #[allow(dead_code)] // As `revision_labels`.
    #[serde(alias = "disable_memory_revisions")]
    pub disable_memory_revisions: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimilaritySearchParams {
    #[serde(alias = "search_query")]
    pub search_query: String,
    #[serde(alias = "top_k", default, deserialize_with = "integer")]
    pub top_k: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimpleRetrievalParams {
    #[serde(alias = "page_size", default, deserialize_with = "integer")]
    pub page_size: Option<i64>,
    #[serde(alias = "page_token")]
    pub page_token: Option<String>,
}

/// One condition on a memory's metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataFilter {
    pub key: String,
    pub op: Option<String>,
    pub value: MetadataValue,
    #[serde(default)]
    pub negate: bool,
}

/// Conditions that must all hold; a memory matches a list of groups when any group holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterGroup {
    #[serde(default)]
    pub filters: Vec<MetadataFilter>,
}

/// `memories:retrieve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetrieveMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub parent: Option<String>,
    pub scope: Option<Scope>,
    #[serde(alias = "similarity_search_params")]
    pub similarity_search_params: Option<SimilaritySearchParams>,
    #[serde(alias = "simple_retrieval_params")]
    pub simple_retrieval_params: Option<SimpleRetrievalParams>,
    pub filter: Option<String>,
    #[serde(alias = "filter_groups")]
    pub filter_groups: Option<Vec<FilterGroup>>,
    #[serde(alias = "memory_types")]
    pub memory_types: Option<Vec<String>>,
}

/// `memories:retrieveProfiles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetrieveProfilesMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub parent: Option<String>,
    pub scope: Option<Scope>,
    #[serde(alias = "schema_ids")]
    pub schema_ids: Option<Vec<String>>,
}

/// `memories:purge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PurgeMessage {
    #[allow(dead_code)] // Accepted as Google accepts it; the path names the resource.
    pub parent: Option<String>,
    pub filter: Option<String>,
    #[serde(alias = "filter_groups")]
    pub filter_groups: Option<Vec<FilterGroup>>,
    #[serde(default)]
    pub force: bool,
}

/// `memories/{m}:rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackMessage {
    #[serde(alias = "target_revision_id")]
    pub target_revision_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_with_an_s() {
        assert_eq!(parse_duration("3600s"), Ok(3600));
        assert_eq!(parse_duration("1.5s"), Ok(2));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in ["3600", "s", "1e3s", "abc s", "NaNs", "99999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_fields_come_in_both_spellings_and_maps_keep_theirs() {
        let camel: EventMessage = serde_json::from_value(serde_json::json!({
            "invocationId": "i1", "actions": {"state_delta": {"myKey": 1}}, "rawEvent": {"longRunningToolIds": []}
        }))
        .unwrap();
        let snake: EventMessage = serde_json::from_value(serde_json::json!({"invocation_id": "i1"})).unwrap();
        assert_eq!(camel.invocation_id, snake.invocation_id);
        assert!(camel.actions.unwrap()["state_delta"]["myKey"].is_number());
        assert!(camel.raw_event.unwrap().contains_key("longRunningToolIds"));
        assert!(serde_json::from_value::<EventMessage>(serde_json::json!({"bogus": 1})).is_err());
        let retrieve: RetrieveMessage = serde_json::from_value(serde_json::json!({
            "scope": {"user_id": "u1"}, "similaritySearchParams": {"search_query": "x", "topK": "5"}
        }))
        .unwrap();
        assert_eq!(retrieve.similarity_search_params.unwrap().top_k, Some(5));
    }
}
