//! `/api/v1/memories`: durable facts of a scope, their history, and hybrid search.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use contextiq_core::generation::{DirectFact, GenerateRequest, GenerationConfig, Source};
use contextiq_core::memory::{MemoryFilter, MemoryPatch, MemorySnapshot, NewMemory};
use contextiq_core::{Memory, MemoryQuery, ProfileAttribute, Recency, Revision, Scope, ScoredMemory};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Authorized, MemoryRead, MemoryWrite, Principal};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, MemoryId};
use crate::routes::WriteReceipt;
use crate::routes::sessions::{decode_page_cursor, encode_page_cursor};
use crate::state::MemoryState;

pub fn router() -> Router<MemoryState> {
    Router::new()
        .route("/memories", post(create_memory).get(list_memories))
        .route("/memories/search", post(search_memories))
        .route("/memories/profile", get(get_profile))
        .route("/memories/{id}", get(get_memory).patch(update_memory).delete(delete_memory))
        .route("/memories/{id}/revisions", get(list_revisions))
        .route("/memories/{id}/restore", post(restore_memory))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemoryRequest {
    /// Flat string-to-string dict; the memory belongs to exactly this scope.
    #[schema(schema_with = crate::routes::scope_schema)]
    pub scope: Scope,
    /// 1 to 4,000 characters, not blank.
    #[schema(schema_with = fact_schema)]
    pub fact: String,
    #[schema(schema_with = topic_schema)]
    pub topic: Option<String>,
    /// From 0 to 1 (default 1).
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: Option<f64>,
    pub source_session_id: Option<Uuid>,
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub source_event_ids: Vec<Uuid>,
    /// At most 64 KiB as JSON.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds until the memory expires (up to ten years); or give `expires_at`.
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub ttl_seconds: Option<i64>,
    /// In the future, at most ten years ahead; not with `ttl_seconds`.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the fact was said, for facts of older conversations (not in the future; default:
    /// now). Search filters by it (`said_after`, `said_before`) and weighs by it
    /// (`recency_weight`).
    pub said_at: Option<DateTime<Utc>>,
    /// Run the fact through consolidation (duplicate detection, updates) as a job instead of
    /// adding it as is: the answer is then 202 with the job. Takes `fact`, `topic`,
    /// `confidence` and `ttl_seconds` only.
    #[serde(default)]
    pub consolidate: bool,
}

/// Absent fields stay as they are; `null` clears `topic` and `expires_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemoryRequest {
    #[schema(schema_with = optional_fact_schema)]
    pub fact: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = topic_schema)]
    pub topic: Option<Option<String>>,
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: Option<f64>,
    /// Replaces the metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub ttl_seconds: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// When the fact was said; not in the future.
    pub said_at: Option<DateTime<Utc>>,
}

fn fact_schema() -> utoipa::openapi::Object {
    crate::routes::not_blank(contextiq_core::limits::MAX_FACT_CHARS, false)
}

fn optional_fact_schema() -> utoipa::openapi::Object {
    crate::routes::not_blank(contextiq_core::limits::MAX_FACT_CHARS, true)
}

fn topic_schema() -> utoipa::openapi::Object {
    crate::routes::not_blank(contextiq_core::limits::MAX_TOPIC_CHARS, true)
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub revision_id: Uuid,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    pub topic: Option<String>,
    /// Each key must equal the memory's metadata value.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, Value>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Memories said after this time (`said_at`).
    pub said_after: Option<DateTime<Utc>>,
    pub said_before: Option<DateTime<Utc>>,
}

impl From<SearchFilter> for MemoryFilter {
    fn from(filter: SearchFilter) -> MemoryFilter {
        MemoryFilter {
            topic: filter.topic,
            metadata: filter.metadata,
            created_after: filter.created_after,
            created_before: filter.created_before,
            updated_after: filter.updated_after,
            updated_before: filter.updated_before,
            said_after: filter.said_after,
            said_before: filter.said_before,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    #[schema(schema_with = crate::routes::scope_schema)]
    pub scope: Scope,
    /// 1 to 4,000 characters, not blank.
    #[schema(schema_with = fact_schema)]
    pub search_query: String,
    /// 1 to 100 (default 10).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub top_k: Option<u32>,
    pub filter: Option<SearchFilter>,
    /// From 0 (default: relevance alone) to 1 (recency alone): how much a memory said recently
    /// outranks an older one among the matches. Each result's score is then
    /// `(1 - w) * relevance + w * 0.5^(age / half-life)`, its age counted from `said_at`.
    #[schema(minimum = 0, maximum = 1)]
    pub recency_weight: Option<f64>,
    /// The age, in days, at which recency halves (default 30; at most 36,525); weighs nothing
    /// without `recency_weight`.
    #[schema(exclusive_minimum = 0, maximum = 36_525)]
    pub recency_half_life_days: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryBody {
    pub id: Uuid,
    pub scope: Scope,
    pub fact: String,
    pub topic: Option<String>,
    pub confidence: f64,
    pub source_session_id: Option<Uuid>,
    pub source_event_ids: Vec<Uuid>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// When it was said: the conversation turn a generated memory's current value comes
    /// from, the time a client gave, or else `created_at`.
    pub said_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Memory> for MemoryBody {
    fn from(memory: Memory) -> MemoryBody {
        MemoryBody {
            id: memory.id,
            scope: memory.scope,
            fact: memory.fact,
            topic: memory.topic,
            confidence: memory.confidence,
            source_session_id: memory.source_session_id,
            source_event_ids: memory.source_event_ids,
            metadata: memory.metadata,
            said_at: memory.said_at,
            created_at: memory.created_at,
            updated_at: memory.updated_at,
            expires_at: memory.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryList {
    pub memories: Vec<MemoryBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub memory: MemoryBody,
    /// Fused relevance in [0, 1]; higher is better.
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionBody {
    pub id: Uuid,
    pub memory_id: Uuid,
    /// created, updated, deleted or restored.
    pub action: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<MemorySnapshot>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<MemorySnapshot>,
    /// The credential (`key:<id>`, `jwt:<org>:<sub>`) or job that made the change.
    pub actor: String,
    pub job_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub cause: Option<Value>,
    pub created_at: DateTime<Utc>,
}

impl From<Revision> for RevisionBody {
    fn from(revision: Revision) -> RevisionBody {
        RevisionBody {
            id: revision.id,
            memory_id: revision.memory_id,
            action: revision.action.as_str().to_owned(),
            before: revision.before,
            after: revision.after,
            actor: revision.actor,
            job_id: revision.job_id,
            cause: revision.cause,
            created_at: revision.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionList {
    pub revisions: Vec<RevisionBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMemoriesQuery {
    /// The scope, as a URL-encoded JSON object, e.g. `{"user_id":"u1"}`.
    pub scope: String,
    pub topic: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Memories said after this time (`said_at`).
    pub said_after: Option<DateTime<Utc>>,
    pub said_before: Option<DateTime<Utc>>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    /// The scope, as a URL-encoded JSON object, e.g. `{"user_id":"u1"}`.
    pub scope: String,
}

/// A scope's profile: what its live memories say the user is, has and prefers now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileBody {
    #[schema(schema_with = crate::routes::scope_schema)]
    pub scope: Scope,
    /// One entry per attribute, by attribute name.
    pub attributes: Vec<ProfileAttributeBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileAttributeBody {
    /// What the memory sets, as consolidation names it: "name", "age", "residence",
    /// "occupation", "favourite colour", "allergy:peanuts", "opinion:coffee".
    pub attribute: String,
    /// The value in the fact's own words: "Hamburg" for "User lives in Hamburg"; for an
    /// attribute without a named value, what the fact says ("likes coffee").
    pub value: String,
    /// The memory that sets it.
    pub memory_id: Uuid,
    pub fact: String,
    /// When that memory last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ProfileAttribute> for ProfileAttributeBody {
    fn from(attribute: ProfileAttribute) -> ProfileAttributeBody {
        ProfileAttributeBody {
            attribute: attribute.attribute,
            value: attribute.value,
            memory_id: attribute.memory_id,
            fact: attribute.fact,
            updated_at: attribute.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteMemoryQuery {
    /// Erase the memory and its whole history for good.
    pub purge: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/memories", tag = "memories", request_body = CreateMemoryRequest,
    responses((status = 201, body = MemoryBody), (status = 202, body = crate::routes::jobs::JobBody,
        description = "With consolidate: the queued job"), (status = 422, body = Problem)))]
pub async fn create_memory(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryWrite>,
    ApiJson(request): ApiJson<CreateMemoryRequest>,
) -> Result<Response, ApiError> {
    if request.consolidate {
        return consolidate_memory(&state, &principal, request).await;
    }
    let new = NewMemory {
        id: None,
        scope: request.scope,
        fact: request.fact,
        topic: request.topic,
        confidence: request.confidence,
        source_session_id: request.source_session_id,
        source_event_ids: request.source_event_ids,
        metadata: request.metadata.unwrap_or_default(),
        ttl_seconds: request.ttl_seconds,
        expires_at: request.expires_at,
        said_at: request.said_at,
    };
    let memory = state.memories.create(&principal.access, &principal.actor(), new, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(MemoryBody::from(memory))).into_response())
}

/// A direct memory through consolidation: a `memories` generation job of one fact.
async fn consolidate_memory(
    state: &MemoryState,
    principal: &Principal,
    request: CreateMemoryRequest,
) -> Result<Response, ApiError> {
    let unsupported = [
        ("source_session_id", request.source_session_id.is_some()),
        ("source_event_ids", !request.source_event_ids.is_empty()),
        ("metadata", request.metadata.is_some()),
        ("expires_at", request.expires_at.is_some()),
        ("said_at", request.said_at.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, given)| *given) {
        return Err(ApiError::Domain(contextiq_core::Error::validation(
            *field,
            "is not supported with consolidate: true (use fact, topic, confidence, ttl_seconds)",
        )));
    }
    let fact = DirectFact { fact: request.fact, topic: request.topic, confidence: request.confidence };
    let config = GenerationConfig {
        created_ttl_seconds: request.ttl_seconds,
        updated_ttl_seconds: request.ttl_seconds,
        ..GenerationConfig::default()
    };
    let request = GenerateRequest {
        source: Source::Memories { facts: vec![fact] },
        scope: Some(request.scope),
        config,
        trace_context: Default::default(),
        run_after: None,
    };
    crate::routes::jobs::submit(state, principal, request).await
}

#[utoipa::path(get, path = "/api/v1/memories/{id}", tag = "memories", params(("id" = Uuid, Path)),
    responses((status = 200, body = MemoryBody), (status = 404, body = Problem)))]
pub async fn get_memory(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    MemoryId(id): MemoryId,
) -> Result<Json<MemoryBody>, ApiError> {
    Ok(Json(state.memories.get(&principal.access, id, state.clock.now()).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/memories", tag = "memories", params(ListMemoriesQuery),
    responses((status = 200, body = MemoryList), (status = 422, body = Problem)))]
pub async fn list_memories(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    ApiQuery(query): ApiQuery<ListMemoriesQuery>,
) -> Result<Json<MemoryList>, ApiError> {
    let scope = scope_query(&query.scope)?;
    let filter = MemoryFilter {
        topic: query.topic,
        metadata: BTreeMap::new(),
        created_after: query.created_after,
        created_before: query.created_before,
        updated_after: query.updated_after,
        updated_before: query.updated_before,
        said_after: query.said_after,
        said_before: query.said_before,
    };
    let cursor = query.cursor.as_deref().map(decode_page_cursor).transpose()?;
    let limit = query.limit.unwrap_or(20);
    let page = state.memories.list(&principal.access, &scope, &filter, cursor, limit, state.clock.now()).await?;
    Ok(Json(MemoryList {
        memories: page.memories.into_iter().map(MemoryBody::from).collect(),
        next_cursor: page.next_cursor.map(encode_page_cursor),
    }))
}

/// The current value of each attribute the scope's live memories set (name, age, residence,
/// job, diet, favourites, ...), each with the memory it comes from and when that last changed.
#[utoipa::path(get, path = "/api/v1/memories/profile", tag = "memories", params(ProfileQuery),
    responses((status = 200, body = ProfileBody), (status = 422, body = Problem)))]
pub async fn get_profile(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    ApiQuery(query): ApiQuery<ProfileQuery>,
) -> Result<Json<ProfileBody>, ApiError> {
    let scope = scope_query(&query.scope)?;
    let attributes = state.memories.profile(&principal.access, &scope, state.clock.now()).await?;
    Ok(Json(ProfileBody { scope, attributes: attributes.into_iter().map(ProfileAttributeBody::from).collect() }))
}

/// A scope given in a query string, as a JSON object.
fn scope_query(text: &str) -> Result<Scope, ApiError> {
    serde_json::from_str(text).map_err(|err| ApiError::InvalidQuery {
        field: Some("scope".to_owned()),
        detail: format!("scope: expected a JSON object of strings: {err}"),
    })
}

/// The memory a change left, to a credential that may read memories; a receipt otherwise.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MemoryAnswer {
    Memory(Box<MemoryBody>),
    Receipt(WriteReceipt),
}

impl MemoryAnswer {
    fn to(principal: &Principal, memory: Memory) -> MemoryAnswer {
        match principal.may(contextiq_core::Permission::MemoryRead) {
            true => MemoryAnswer::Memory(Box::new(memory.into())),
            false => MemoryAnswer::Receipt(WriteReceipt { id: memory.id, updated_at: memory.updated_at }),
        }
    }
}

/// Changes the fields given; a patch that changes nothing writes no revision. A credential
/// without MEMORY_READ gets a receipt, not the memory.
#[utoipa::path(patch, path = "/api/v1/memories/{id}", tag = "memories", params(("id" = Uuid, Path)),
    request_body = UpdateMemoryRequest,
    responses((status = 200, body = MemoryAnswer), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_memory(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryWrite>,
    MemoryId(id): MemoryId,
    ApiJson(request): ApiJson<UpdateMemoryRequest>,
) -> Result<Json<MemoryAnswer>, ApiError> {
    let patch = MemoryPatch {
        fact: request.fact,
        topic: request.topic,
        confidence: request.confidence,
        metadata: request.metadata,
        ttl_seconds: request.ttl_seconds,
        expires_at: request.expires_at,
        said_at: request.said_at,
    };
    let memory = state.memories.update(&principal.access, &principal.actor(), id, patch, state.clock.now()).await?;
    Ok(Json(MemoryAnswer::to(&principal, memory)))
}

/// Deletes a memory (its history stays, and `restore` brings it back); `?purge=true` erases
/// the memory and every revision for good.
#[utoipa::path(delete, path = "/api/v1/memories/{id}", tag = "memories", params(("id" = Uuid, Path), DeleteMemoryQuery),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete_memory(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryWrite>,
    MemoryId(id): MemoryId,
    ApiQuery(query): ApiQuery<DeleteMemoryQuery>,
) -> Result<StatusCode, ApiError> {
    let purge = query.purge.unwrap_or(false);
    state.memories.delete(&principal.access, &principal.actor(), id, purge, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/memories/{id}/revisions", tag = "memories", params(("id" = Uuid, Path)),
    responses((status = 200, body = RevisionList), (status = 404, body = Problem)))]
pub async fn list_revisions(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    MemoryId(id): MemoryId,
) -> Result<Json<RevisionList>, ApiError> {
    let revisions = state.memories.revisions(&principal.access, id).await?;
    Ok(Json(RevisionList { revisions: revisions.into_iter().map(RevisionBody::from).collect() }))
}

/// Returns a memory, live or deleted, to the state a revision recorded; itself a revision. A
/// credential without MEMORY_READ gets a receipt, not the memory.
#[utoipa::path(post, path = "/api/v1/memories/{id}/restore", tag = "memories", params(("id" = Uuid, Path)),
    request_body = RestoreRequest,
    responses((status = 200, body = MemoryAnswer), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn restore_memory(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryWrite>,
    MemoryId(id): MemoryId,
    ApiJson(request): ApiJson<RestoreRequest>,
) -> Result<Json<MemoryAnswer>, ApiError> {
    let memory = state
        .memories
        .restore(&principal.access, &principal.actor(), id, request.revision_id, state.clock.now())
        .await?;
    Ok(Json(MemoryAnswer::to(&principal, memory)))
}

/// Hybrid search (BM25 and embedding similarity, fused) within exactly one scope.
#[utoipa::path(post, path = "/api/v1/memories/search", tag = "memories", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 422, body = Problem)))]
pub async fn search_memories(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let search = MemoryQuery {
        text: request.search_query,
        top_k: request.top_k.unwrap_or(10),
        filter: request.filter.unwrap_or_default().into(),
        recency: Recency::requested(request.recency_weight, request.recency_half_life_days),
    };
    let found = state.memories.search(&principal.access, &request.scope, &search, state.clock.now()).await?;
    let results =
        found.into_iter().map(|ScoredMemory { memory, score }| SearchResult { memory: memory.into(), score }).collect();
    Ok(Json(SearchResponse { results }))
}
