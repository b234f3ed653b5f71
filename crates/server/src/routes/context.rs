//! `/api/v1/sessions/{id}/compact` and `/api/v1/sessions/{id}/context`: context engineering
//! over a session. Served by the roles with the memory services (compaction is a job of their
//! queue, and a context searches memories); the gateway sends these two paths there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use contextiq_core::context::{AssembledContext, SummaryPart};
use contextiq_core::{ContextRequest, Permission, SummaryMethod, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authorized, SessionRead, SessionWrite};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, OptionalApiJson, SessionId};
use crate::routes::jobs::JobBody;
use crate::routes::sessions::EventBody;
use crate::state::MemoryState;

pub fn router() -> Router<MemoryState> {
    Router::new()
        .route("/sessions/{id}/compact", post(compact_session))
        .route("/sessions/{id}/context", post(assemble_context))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    /// Newest message events to leave out of the summary (default: the session's policy's, else 0).
    #[schema(minimum = 0, maximum = 10_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub keep_recent_events: Option<u32>,
}

/// Queues a compaction of the session: a job (see `GET /jobs/{id}`) that summarises its events
/// after the last compaction, all but the `keep_recent_events` newest, into one compaction event.
/// No event is deleted or changed. The summary comes from the configured LLM, or from the
/// offline summariser when there is none.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/compact", tag = "sessions", params(("id" = Uuid, Path)),
    request_body(content = Option<CompactRequest>, description = "Optional"),
    responses((status = 202, body = JobBody, headers(("Location" = String, description = "The job"))),
        (status = 400, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn compact_session(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<SessionWrite>,
    SessionId(id): SessionId,
    OptionalApiJson(request): OptionalApiJson<CompactRequest>,
) -> Result<Response, ApiError> {
    let job = state
        .generation
        .compact(&principal.access, &principal.actor(), id, request.keep_recent_events, state.clock.now())
        .await?;
    state.job_queue_wake.notify_one();
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(JobBody::from(job))).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextRequestBody {
    /// The most tokens the context may take, under the server's tokenizer.
    #[schema(value_type = u32, required = true, minimum = 1, maximum = 1_000_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub budget_tokens: Option<u32>,
    /// What memories should be relevant to; default: the session's newest user turn. A query
    /// of white space only finds no memories.
    #[schema(min_length = 1, max_length = 4000)]
    pub query: Option<String>,
    /// Most memories to include, 0 for none (default 5). Memories need MEMORY_READ.
    #[schema(minimum = 0, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub memory_top_k: Option<u32>,
    /// Include the session's state (default true).
    pub include_state: Option<bool>,
}

const DEFAULT_MEMORY_TOP_K: u32 = 5;

/// What to put in front of the model for the session's next turn, within `budget_tokens`:
/// the newest event, the state, the newest compaction summary, the most relevant memories (at
/// most a quarter of the budget), the recent events verbatim back to that summary, then older
/// summaries (those sharing most words with the query first), in that priority order; as parts with their token counts and as one text block.
/// The same request on the same session and memories gives the same context.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/context", tag = "sessions", params(("id" = Uuid, Path)),
    request_body = ContextRequestBody,
    responses((status = 200, body = ContextBody), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn assemble_context(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<SessionRead>,
    SessionId(id): SessionId,
    ApiJson(body): ApiJson<ContextRequestBody>,
) -> Result<Json<ContextBody>, ApiError> {
    let memory_top_k = match principal.may(Permission::MemoryRead) {
        true => body.memory_top_k.unwrap_or(DEFAULT_MEMORY_TOP_K),
        false => 0,
    };
    let budget_tokens = body
        .budget_tokens
        .ok_or_else(|| ApiError::Domain(contextiq_core::Error::validation("budget_tokens", "is required")))?;
    let request = ContextRequest {
        budget_tokens,
        query: body.query,
        memory_top_k,
        include_state: body.include_state.unwrap_or(true),
    };
    let context = state.context.assemble(&principal.access, id, request, state.clock.now()).await?;
    Ok(Json(context.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextBody {
    pub session_id: Uuid,
    /// The tokenizer every count is in (`SESSION_TOKENIZER`).
    #[schema(value_type = String, example = "o200k_base")]
    pub tokenizer: Tokenizer,
    pub budget_tokens: u32,
    /// Tokens of `text`; never more than `budget_tokens`.
    pub total_tokens: u32,
    /// The query memories were searched with.
    pub query: Option<String>,
    pub state: Option<StatePartBody>,
    /// Compaction summaries included, oldest first.
    pub summaries: Vec<SummaryPartBody>,
    /// Memories included, most relevant first.
    pub memories: Vec<MemoryPartBody>,
    /// Events included verbatim, oldest first: one unbroken stretch ending at the newest.
    pub events: Vec<EventPartBody>,
    pub coverage: CoverageBody,
    /// All of the above as one block of text, in reading order.
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatePartBody {
    #[schema(value_type = Object)]
    pub state: Map<String, Value>,
    pub token_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryPartBody {
    /// The compaction event.
    pub event_id: Uuid,
    pub seq: i64,
    pub start_seq: i64,
    pub end_seq: i64,
    #[schema(value_type = String, example = "offline")]
    pub method: SummaryMethod,
    pub summary: String,
    pub token_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryPartBody {
    pub id: Uuid,
    pub fact: String,
    pub topic: Option<String>,
    pub relevance: f64,
    pub token_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPartBody {
    pub event: EventBody,
    pub token_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageBody {
    /// The oldest event shown verbatim.
    pub verbatim_from_seq: Option<i64>,
    /// `[start_seq, end_seq]` of each summary included.
    pub summarised: Vec<[i64; 2]>,
    /// Events before `verbatim_from_seq` that no included summary covers.
    pub unrepresented_events: i64,
}

impl From<AssembledContext> for ContextBody {
    fn from(context: AssembledContext) -> ContextBody {
        ContextBody {
            session_id: context.session_id,
            tokenizer: context.tokenizer,
            budget_tokens: context.budget_tokens,
            total_tokens: context.total_tokens,
            query: context.query,
            state: context.state.map(|part| StatePartBody { state: part.state, token_count: part.token_count }),
            summaries: context.summaries.into_iter().map(SummaryPartBody::from).collect(),
            memories: context
                .memories
                .into_iter()
                .map(|part| MemoryPartBody {
                    id: part.id,
                    fact: part.fact,
                    topic: part.topic,
                    relevance: part.relevance,
                    token_count: part.token_count,
                })
                .collect(),
            events: context
                .events
                .into_iter()
                .map(|part| EventPartBody { event: part.event.into(), token_count: part.token_count })
                .collect(),
            coverage: CoverageBody {
                verbatim_from_seq: context.coverage.verbatim_from_seq,
                summarised: context.coverage.summarised,
                unrepresented_events: context.coverage.unrepresented_events,
            },
            text: context.text,
        }
    }
}

impl From<SummaryPart> for SummaryPartBody {
    fn from(part: SummaryPart) -> SummaryPartBody {
        SummaryPartBody {
            event_id: part.event_id,
            seq: part.seq,
            start_seq: part.start_seq,
            end_seq: part.end_seq,
            method: part.method,
            summary: part.summary,
            token_count: part.token_count,
        }
    }
}
