//! `POST /api/v1/memories/generate` and `GET /api/v1/jobs/{id}`: memory generation jobs.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use contextiq_core::generation::{
    DirectFact, Example, ExtractorKind, GenerateRequest, GenerationConfig, InlineEvent, Job, JobStatus, LlmUsage,
    MetadataMerge, Source, TopicSpec, derived_event_id,
};
use contextiq_core::{Permission, Role, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authorized, MemoryRead, MemoryWrite, Principal};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, JobId};
use crate::state::MemoryState;

pub fn router() -> Router<MemoryState> {
    Router::new().route("/memories/generate", post(generate_memories)).route("/jobs/{id}", get(get_job))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    Session,
    Events,
    Memories,
    /// A compaction of a session (`POST /sessions/{id}/compact`); not for `/memories/generate`.
    Compaction,
}

impl From<&Source> for SourceType {
    fn from(source: &Source) -> SourceType {
        match source {
            Source::Session { .. } => SourceType::Session,
            Source::Events { .. } => SourceType::Events,
            Source::Memories { .. } => SourceType::Memories,
            Source::Compaction { .. } => SourceType::Compaction,
        }
    }
}

/// What `/memories/generate` reads: a job's source types but compaction, which has a route of
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GenerateSourceType {
    Session,
    Events,
    Memories,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusBody {
    Pending,
    Running,
    Completed,
    Failed,
}

impl From<JobStatus> for JobStatusBody {
    fn from(status: JobStatus) -> JobStatusBody {
        match status {
            JobStatus::Pending => JobStatusBody::Pending,
            JobStatus::Running => JobStatusBody::Running,
            JobStatus::Completed => JobStatusBody::Completed,
            JobStatus::Failed => JobStatusBody::Failed,
        }
    }
}

/// The extractor of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtractorBody {
    Rules,
    Llm,
}

impl From<ExtractorKind> for ExtractorBody {
    fn from(kind: ExtractorKind) -> ExtractorBody {
        match kind {
            ExtractorKind::Rules => ExtractorBody::Rules,
            ExtractorKind::Llm => ExtractorBody::Llm,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequestBody {
    pub source_type: GenerateSourceType,
    /// For `session`: the session's id.
    pub source_reference: Option<Uuid>,
    /// For `session`: only these events (by `seq`, inclusive). Without it, the events after
    /// those already processed for this scope.
    pub event_range: Option<EventRange>,
    /// For `events`: the conversation, not stored as a session.
    pub events: Option<Vec<InlineEventBody>>,
    /// For `memories`: finished facts, only consolidated.
    pub memories: Option<Vec<DirectFactBody>>,
    /// Where the memories go; default for `session`: the session's scope. Required otherwise.
    pub scope: Option<Scope>,
    #[serde(default)]
    pub config: GenerationConfigBody,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRange {
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub from_seq: Option<i64>,
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub to_seq: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineEventBody {
    /// Optional; derived from position and content when absent.
    pub id: Option<Uuid>,
    #[serde(default = "default_author")]
    pub author: String,
    /// user (default), assistant, tool or system.
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    pub content: String,
    /// When it was said (RFC 3339): what "yesterday" or "last month" in it count from, as a
    /// session event's timestamp is. Default: when the job is requested.
    pub timestamp: Option<DateTime<Utc>>,
}

fn default_author() -> String {
    "user".to_owned()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectFactBody {
    pub fact: String,
    pub topic: Option<String>,
    pub confidence: Option<f64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfigBody {
    /// rules (default, offline) or llm (needs LLM_PROVIDER on the server).
    #[schema(value_type = Option<String>)]
    pub extractor: Option<ExtractorKind>,
    /// Managed topic names (USER_PERSONAL_INFO, USER_PREFERENCES, KEY_CONVERSATION_DETAILS,
    /// EXPLICIT_INSTRUCTIONS) or custom `{name, description}`; default: the managed set.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub topics: Vec<TopicBody>,
    /// Worked examples for the llm extractor: `{conversation: [{role, content}], facts: [{fact, topic}]}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub examples: Vec<Example>,
    /// Add every extracted fact as a new memory, skipping duplicate detection and updates.
    #[serde(default)]
    pub disable_consolidation: bool,
    /// TTL of memories the job creates.
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub created_ttl_seconds: Option<i64>,
    /// TTL set on memories the job updates.
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub updated_ttl_seconds: Option<i64>,
    /// Metadata of the memories the job creates (and merges into those it updates).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// What an update does to a memory's metadata: merge (default: the job's keys replace the
    /// same keys), overwrite (the job's metadata replaces it), require_exact_match (only
    /// memories with exactly the job's metadata are consolidated with).
    #[schema(value_type = Option<String>)]
    pub metadata_merge: Option<MetadataMerge>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TopicBody {
    Managed(String),
    Custom { name: String, description: Option<String> },
}

impl From<GenerationConfigBody> for GenerationConfig {
    fn from(body: GenerationConfigBody) -> GenerationConfig {
        GenerationConfig {
            extractor: body.extractor.unwrap_or_default(),
            topics: body
                .topics
                .into_iter()
                .map(|topic| match topic {
                    TopicBody::Managed(name) => TopicSpec { name, description: None },
                    TopicBody::Custom { name, description } => TopicSpec { name, description },
                })
                .collect(),
            examples: body.examples,
            disable_consolidation: body.disable_consolidation,
            created_ttl_seconds: body.created_ttl_seconds,
            updated_ttl_seconds: body.updated_ttl_seconds,
            metadata: body.metadata,
            metadata_merge: body.metadata_merge.unwrap_or_default(),
        }
    }
}

impl GenerateRequestBody {
    /// The request with exactly the fields its `source_type` needs.
    fn into_request(self) -> Result<GenerateRequest, ApiError> {
        let unexpected = |field: &str| {
            Err(ApiError::Domain(contextiq_core::Error::validation(
                field,
                format!("does not apply to source_type {:?}", self.source_type),
            )))
        };
        let source = match self.source_type {
            GenerateSourceType::Session => {
                if self.events.is_some() {
                    return unexpected("events");
                }
                if self.memories.is_some() {
                    return unexpected("memories");
                }
                let session_id = self.source_reference.ok_or_else(|| required("source_reference"))?;
                let (from_seq, to_seq) = self.event_range.map_or((None, None), |range| (range.from_seq, range.to_seq));
                Source::Session { session_id, from_seq, to_seq }
            }
            GenerateSourceType::Events => {
                if self.source_reference.is_some() {
                    return unexpected("source_reference");
                }
                if self.event_range.is_some() {
                    return unexpected("event_range");
                }
                if self.memories.is_some() {
                    return unexpected("memories");
                }
                let events = self.events.ok_or_else(|| required("events"))?;
                let events = events
                    .into_iter()
                    .enumerate()
                    .map(|(position, event)| InlineEvent {
                        id: event.id.unwrap_or_else(|| derived_event_id(position, &event.author, &event.content)),
                        role: event.role.unwrap_or(Role::User),
                        author: event.author,
                        content: event.content,
                        said_at: event.timestamp,
                    })
                    .collect();
                Source::Events { events }
            }
            GenerateSourceType::Memories => {
                if self.source_reference.is_some() {
                    return unexpected("source_reference");
                }
                if self.event_range.is_some() {
                    return unexpected("event_range");
                }
                if self.events.is_some() {
                    return unexpected("events");
                }
                let facts = self.memories.ok_or_else(|| required("memories"))?;
                let facts = facts
                    .into_iter()
                    .map(|fact| DirectFact { fact: fact.fact, topic: fact.topic, confidence: fact.confidence })
                    .collect();
                Source::Memories { facts }
            }
        };
        Ok(GenerateRequest {
            source,
            scope: self.scope,
            config: self.config.into(),
            trace_context: Default::default(),
            run_after: None,
        })
    }
}

fn required(field: &str) -> ApiError {
    ApiError::Domain(contextiq_core::Error::validation(field, "is required for this source_type"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobBody {
    pub id: Uuid,
    #[schema(inline)]
    pub status: JobStatusBody,
    #[schema(inline)]
    pub source_type: SourceType,
    pub source_reference: Option<Uuid>,
    pub scope: Scope,
    #[schema(inline)]
    pub extractor: ExtractorBody,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The last failure: the reason of a failed job, or of the attempt before a retry.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When a pending job that failed will be tried again.
    pub retry_at: Option<DateTime<Utc>>,
    pub events_processed: u32,
    /// The session holds more events than one job reads (`WORKER_MAX_EVENTS_PER_JOB`); generate
    /// again to continue.
    pub more_events_pending: bool,
    pub facts_extracted: u32,
    pub memories_added: Vec<Uuid>,
    pub memories_updated: Vec<Uuid>,
    pub memories_deleted: Vec<Uuid>,
    pub counts: JobCounts,
    #[schema(value_type = Object)]
    pub llm_usage: LlmUsage,
    /// A compaction job's summary event, once written; null when there was nothing to summarise.
    pub compaction_event_id: Option<Uuid>,
    /// What that summary covers.
    pub compaction: Option<CompactionBody>,
}

/// What a compaction event summarises.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompactionBody {
    pub start_seq: i64,
    pub end_seq: i64,
    /// When the first and the last event summarised happened.
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// llm or offline.
    #[schema(value_type = String, example = "offline")]
    pub method: contextiq_core::SummaryMethod,
    /// Tokens of the message events summarised.
    pub tokens_before: u64,
    /// Tokens of the summary.
    pub tokens_after: u64,
}

impl From<contextiq_core::Compaction> for CompactionBody {
    fn from(compaction: contextiq_core::Compaction) -> CompactionBody {
        CompactionBody {
            start_seq: compaction.start_seq,
            end_seq: compaction.end_seq,
            start_time: compaction.start_time,
            end_time: compaction.end_time,
            method: compaction.method,
            tokens_before: compaction.tokens_before,
            tokens_after: compaction.tokens_after,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobCounts {
    pub added: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Extracted facts that were already known.
    pub unchanged: u32,
}

impl From<Job> for JobBody {
    fn from(job: Job) -> JobBody {
        let source_reference = match &job.source {
            Source::Session { session_id, .. } | Source::Compaction { session_id, .. } => Some(*session_id),
            _ => None,
        };
        let retry_at = (job.status == JobStatus::Pending && job.attempts > 0).then_some(job.run_after);
        let outcome = job.outcome;
        JobBody {
            id: job.id,
            status: job.status.into(),
            source_type: SourceType::from(&job.source),
            source_reference,
            scope: job.scope,
            extractor: job.config.extractor.into(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            error: job.error,
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            retry_at,
            events_processed: outcome.events_processed,
            more_events_pending: outcome.more_events_pending,
            facts_extracted: outcome.facts_extracted,
            counts: JobCounts {
                added: outcome.memories_added.len(),
                updated: outcome.memories_updated.len(),
                deleted: outcome.memories_deleted.len(),
                unchanged: outcome.unchanged,
            },
            memories_added: outcome.memories_added,
            memories_updated: outcome.memories_updated,
            memories_deleted: outcome.memories_deleted,
            llm_usage: outcome.llm_usage,
            compaction_event_id: outcome.compaction_event_id,
            compaction: outcome.compaction.map(CompactionBody::from),
        }
    }
}

/// Queues a job; poll `Location` (`GET /api/v1/jobs/{id}`) for its outcome.
#[utoipa::path(post, path = "/api/v1/memories/generate", tag = "memories", request_body = GenerateRequestBody,
    responses((status = 202, body = JobBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn generate_memories(
    State(state): State<MemoryState>,
    Generate(principal, request): Generate,
) -> Result<Response, ApiError> {
    submit(&state, &principal, request).await
}

/// A generation request and its principal, who holds MEMORY_WRITE, and SESSION_READ too when
/// the job reads a session (403 otherwise); the body is checked between the two permissions.
pub struct Generate(Principal, GenerateRequest);

impl FromRequest<MemoryState> for Generate {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &MemoryState) -> Result<Generate, ApiError> {
        let (mut parts, body) = request.into_parts();
        let Authorized(principal, _) = Authorized::<MemoryWrite>::from_request_parts(&mut parts, state).await?;
        let ApiJson(body) =
            ApiJson::<GenerateRequestBody>::from_request(Request::from_parts(parts, body), state).await?;
        let request = body.into_request()?;
        if matches!(request.source, Source::Session { .. }) {
            // Generating from a session reads it.
            crate::auth::require(&principal, Permission::SessionRead)?;
        }
        Ok(Generate(principal, request))
    }
}

pub(crate) async fn submit(
    state: &MemoryState,
    principal: &Principal,
    mut request: GenerateRequest,
) -> Result<Response, ApiError> {
    request.trace_context = crate::trace_context::current_context_map();
    let job = state.generation.submit(&principal.access, &principal.actor(), request, state.clock.now()).await?;
    state.job_queue_wake.notify_one();
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(JobBody::from(job))).into_response())
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "memories", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobBody), (status = 404, body = Problem)))]
pub async fn get_job(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    JobId(id): JobId,
) -> Result<Json<JobBody>, ApiError> {
    Ok(Json(state.generation.get(&principal.access, id).await?.into()))
}
