//! The MCP server: the memory of ContextIQ as tools an assistant calls (Model Context Protocol,
//! through the official Rust SDK, `rmcp`). A third protocol over the same services as `/api/v1`
//! and the Agent Engine surface: every tool is a call of `SessionService`, `MemoryService` or
//! `GenerationService` with a [`Principal`], so permissions, org and engine isolation and
//! scope-limited credentials hold exactly as they do over HTTP.
//!
//! Two transports, one handler: Streamable HTTP at `/mcp` (stateless: each POST is answered
//! alone, behind the server's authentication, and each tool call acts with the principal of
//! its own request) and stdio (`contextiq mcp`, one principal fixed at start).
//!
//! The scope a tool acts on is the one the call names, which the credential must reach; a call
//! that names none acts on the credential's own scope (a key limited to `{"user_id": "u1"}`, or
//! the stdio process's `--scope`). The model can narrow the scope, never widen it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use contextiq_core::generation::{DirectFact, GenerateRequest, GenerationConfig, JobStatus, Source};
use contextiq_core::{MemoryFilter, MemoryQuery, NewEvent, NewSession, Permission, Recency, Role, Scope};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Principal, require};
use crate::error::ApiError;
use crate::routes::jobs::JobBody;
use crate::routes::memories::{MemoryBody, RevisionBody};
use crate::routes::sessions::{EventBody, decode_page_cursor, encode_page_cursor};
use crate::state::{AppState, MemoryState};

/// Where a tool call's principal comes from.
#[derive(Clone)]
pub enum Binding {
    /// Streamable HTTP: the principal the authentication middleware put on the call's request.
    PerRequest,
    /// stdio: the one the process was started with.
    Fixed(Arc<Principal>),
}

/// The services a tool reaches; built once per process, cloned per HTTP request.
#[derive(Clone)]
pub struct McpServer {
    app: AppState,
    memory: MemoryState,
    binding: Binding,
    /// The longest a tool waits for its job: within the HTTP request timeout, so the wait ends
    /// in a "still running" answer rather than a 503.
    max_wait: Duration,
    tool_router: ToolRouter<McpServer>,
}

/// How long `remember` and `generate_memories` wait for their job by default, and at most.
const DEFAULT_WAIT_SECONDS: u64 = 20;
const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The fact, as a sentence about the user or the subject of the scope ("User is allergic to peanuts").
    pub fact: String,
    /// A topic, e.g. USER_PREFERENCES, USER_PERSONAL_INFO, or a custom one.
    pub topic: Option<String>,
    /// The scope the memory belongs to, e.g. {"user_id": "u1"}; by default the credential's own.
    pub scope: Option<Scope>,
    /// Seconds to wait for consolidation (default 20, at most 60); 0 returns the queued job at once.
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// What to look for, in words.
    pub query: String,
    /// The scope to search, e.g. {"user_id": "u1"}; by default the credential's own.
    pub scope: Option<Scope>,
    /// How many memories to return: 1 to 100 (default 5).
    pub top_k: Option<u32>,
    /// Only memories of this topic.
    pub topic: Option<String>,
    /// Only memories said after this time (RFC 3339, e.g. "2026-11-01T00:00:00Z"): when the
    /// conversation turn a memory comes from took place, or when it was stored.
    pub said_after: Option<DateTime<Utc>>,
    /// Only memories said before this time (RFC 3339).
    pub said_before: Option<DateTime<Utc>>,
    /// From 0 (default: relevance alone) to 1 (recency alone): how much a memory said recently
    /// outranks an older one. Each score is `(1 - w) * relevance + w * 0.5^(age / half-life)`.
    pub recency_weight: Option<f64>,
    /// The age in days at which recency halves (default 30, at most 36,525).
    pub recency_half_life_days: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryIdArgs {
    /// The memory's id (a UUID, as recall and list_memories return it).
    pub memory_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The scope to list, e.g. {"user_id": "u1"}; by default the credential's own.
    pub scope: Option<Scope>,
    /// Only memories of this topic.
    pub topic: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The next_cursor of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// user, assistant, tool or system.
    pub role: String,
    /// What was said: text, or any JSON value (a tool's result).
    pub content: Value,
    /// Who said it (default: the role).
    pub author: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordTurnsArgs {
    /// The turns, oldest first (1 to 100).
    pub turns: Vec<Turn>,
    /// The session to append to; without it, a new session is created and its id returned.
    pub session_id: Option<Uuid>,
    /// The scope of a new session, e.g. {"user_id": "u1"} (needs a user_id); by default the credential's own.
    pub scope: Option<Scope>,
    /// The agent of a new session.
    pub agent_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// The session whose new events (those no earlier generation read) become memories.
    pub session_id: Uuid,
    /// Seconds to wait for the job (default 20, at most 60); 0 returns the queued job at once.
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIdArgs {
    /// The job's id, as remember and generate_memories return it.
    pub job_id: Uuid,
}

type ToolResult = Result<CallToolResult, rmcp::ErrorData>;

#[tool_router]
impl McpServer {
    pub fn new(app: AppState, memory: MemoryState, binding: Binding) -> McpServer {
        let max_wait = Duration::from_secs(MAX_WAIT_SECONDS);
        McpServer { app, memory, binding, max_wait, tool_router: Self::tool_router() }
    }

    #[tool(
        description = "Remember a fact about the user (or the scope's subject). It goes through consolidation: a fact \
                       already known changes nothing, one that contradicts a memory updates it. Returns what happened \
                       (added, updated, unchanged) and the memories touched.",
        annotations(
            title = "Remember a fact",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn remember(
        &self,
        Parameters(args): Parameters<RememberArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryWrite)?;
            let scope = resolve_scope(&principal, args.scope)?;
            let request = GenerateRequest {
                source: Source::Memories {
                    facts: vec![DirectFact { fact: args.fact, topic: args.topic, confidence: None }],
                },
                scope: Some(scope),
                config: GenerationConfig::default(),
                trace_context: Default::default(),
                run_after: None,
            };
            self.run_job(&principal, request, args.wait_seconds).await
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Recall what is known: hybrid search (keywords and meaning) over the scope's memories, best first, \
                       each with its relevance score.",
        annotations(title = "Recall memories", read_only_hint = true)
    )]
    async fn recall(
        &self,
        Parameters(args): Parameters<RecallArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryRead)?;
            let scope = resolve_scope(&principal, args.scope)?;
            let search = MemoryQuery {
                filter: MemoryFilter {
                    topic: args.topic,
                    said_after: args.said_after,
                    said_before: args.said_before,
                    ..MemoryFilter::default()
                },
                recency: Recency::requested(args.recency_weight, args.recency_half_life_days),
                ..MemoryQuery::new(args.query, args.top_k.unwrap_or(5))
            };
            let found = self.memory.memories.search(&principal.access, &scope, &search, self.now()).await?;
            let results: Vec<Value> = found
                .into_iter()
                .map(|scored| json!({"memory": MemoryBody::from(scored.memory), "score": scored.score}))
                .collect();
            Ok(json!({ "results": results }))
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Forget a memory by id. Its history is kept, so the change can be undone through the API.",
        annotations(
            title = "Forget a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false
        )
    )]
    async fn forget(
        &self,
        Parameters(args): Parameters<MemoryIdArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryWrite)?;
            let memory = self.memory.memories.get(&principal.access, args.memory_id, self.now()).await?;
            self.memory
                .memories
                .delete(&principal.access, &principal.actor(), args.memory_id, false, self.now())
                .await?;
            // The memory's text only to a credential that may read it, as the HTTP API answers.
            match principal.may(Permission::MemoryRead) {
                true => Ok(json!({ "forgotten": MemoryBody::from(memory) })),
                false => Ok(json!({ "forgotten": { "id": memory.id } })),
            }
        };
        answer(outcome.await)
    }

    #[tool(
        description = "List the scope's memories, newest first, a page at a time (pass next_cursor back for the next).",
        annotations(title = "List memories", read_only_hint = true)
    )]
    async fn list_memories(
        &self,
        Parameters(args): Parameters<ListArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryRead)?;
            let scope = resolve_scope(&principal, args.scope)?;
            let filter = MemoryFilter { topic: args.topic, ..MemoryFilter::default() };
            let cursor = args.cursor.as_deref().map(decode_page_cursor).transpose()?;
            let page = self
                .memory
                .memories
                .list(&principal.access, &scope, &filter, cursor, args.limit.unwrap_or(20), self.now())
                .await?;
            let memories: Vec<MemoryBody> = page.memories.into_iter().map(MemoryBody::from).collect();
            Ok(json!({ "memories": memories, "next_cursor": page.next_cursor.map(encode_page_cursor) }))
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Show a memory's history: every revision (created, updated, deleted, restored), oldest first, with \
                       the text before and after and what caused it.",
        annotations(title = "Memory history", read_only_hint = true)
    )]
    async fn memory_history(
        &self,
        Parameters(args): Parameters<MemoryIdArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryRead)?;
            let revisions = self.memory.memories.revisions(&principal.access, args.memory_id).await?;
            let revisions: Vec<RevisionBody> = revisions.into_iter().map(RevisionBody::from).collect();
            Ok(json!({ "revisions": revisions }))
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Record turns of a conversation in a session (a new one when no session_id is given), in order. \
                       generate_memories then turns them into memories.",
        annotations(title = "Record conversation turns", read_only_hint = false, destructive_hint = false)
    )]
    async fn record_turns(
        &self,
        Parameters(args): Parameters<RecordTurnsArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::SessionWrite)?;
            let mut events = Vec::with_capacity(args.turns.len());
            for (index, turn) in args.turns.into_iter().enumerate() {
                let Some(role) = Role::parse(&turn.role) else {
                    let field = format!("turns[{index}].role");
                    return Err(
                        contextiq_core::Error::validation(&field, "must be user, assistant, tool or system").into()
                    );
                };
                events.push(NewEvent {
                    author: turn.author.unwrap_or_else(|| role.as_str().to_owned()),
                    role,
                    content: turn.content,
                    metadata: Default::default(),
                    timestamp: None,
                    invocation_id: None,
                    state_delta: Default::default(),
                    token_count: 0,
                    kind: contextiq_core::EventKind::Message,
                });
            }
            let session_id = match args.session_id {
                Some(id) => {
                    if args.scope.is_some() || args.agent_id.is_some() {
                        let detail =
                            "a session's scope and agent are set when it is created: omit them with session_id";
                        return Err(contextiq_core::Error::validation("scope", detail).into());
                    }
                    id
                }
                None => {
                    let scope = resolve_scope(&principal, args.scope)?;
                    let Some(user_id) = scope.get("user_id").cloned() else {
                        let detail = "a new session's scope needs a user_id, e.g. {\"user_id\": \"u1\"}";
                        return Err(contextiq_core::Error::validation("scope", detail).into());
                    };
                    let new = NewSession {
                        id: None,
                        user_id,
                        agent_id: args.agent_id,
                        scope: Some(scope),
                        state: None,
                        metadata: None,
                        ttl_seconds: None,
                        expires_at: None,
                        compaction_policy: None,
                        parent_session_id: None,
                    };
                    self.app.sessions.create(&principal.access, new, self.now()).await?.id
                }
            };
            let appended = self.app.sessions.append(&principal.access, session_id, events, self.now()).await?;
            let events: Vec<EventBody> = appended.into_iter().map(EventBody::from).collect();
            Ok(json!({ "session_id": session_id, "events": events }))
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Turn a session's new events into memories (extraction, then consolidation with what is known). \
                       Waits for the job and returns its result: counts of memories added, updated, deleted, unchanged.",
        annotations(title = "Generate memories from a session", read_only_hint = false, destructive_hint = false)
    )]
    async fn generate_memories(
        &self,
        Parameters(args): Parameters<GenerateArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryWrite)?;
            require(&principal, Permission::SessionRead)?;
            let request = GenerateRequest {
                source: Source::Session { session_id: args.session_id, from_seq: None, to_seq: None },
                scope: None,
                config: GenerationConfig::default(),
                trace_context: Default::default(),
                run_after: None,
            };
            self.run_job(&principal, request, args.wait_seconds).await
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Report a memory generation job: its status and, once completed, what it changed.",
        annotations(title = "Get a job", read_only_hint = true)
    )]
    async fn get_job(
        &self,
        Parameters(args): Parameters<JobIdArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let outcome = async {
            let principal = self.principal(&context, Permission::MemoryRead)?;
            let job = self.memory.generation.get(&principal.access, args.job_id).await?;
            Ok(json!({ "job": JobBody::from(job) }))
        };
        answer(outcome.await)
    }
}

// The router built once per process (its tools' JSON schemas with it), not per call.
#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(
                Implementation::new("contextiq", env!("CARGO_PKG_VERSION"))
                    .with_title("ContextIQ memory")
                    .with_description("Sessions and long-term memory for AI agents"),
            )
            .with_instructions(
                "Long-term memory of the user. Call recall before answering anything that may depend on what you \
                 know of the user; call remember when the user states a durable fact, preference or instruction, \
                 or asks you to remember something; call forget (after recall finds the memory) when the user asks \
                 you to forget. Scopes default to the credential's own.",
            )
    }

    /// The memories of the credential's own scope, when it has one.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, rmcp::ErrorData> {
        let principal = self.principal(&context, Permission::MemoryRead).map_err(protocol_error)?;
        let resources = match &principal.access.scope {
            Some(scope) => vec![
                Resource::new(OWN_MEMORIES_URI, "memories")
                    .with_title("Memories")
                    .with_description(format!(
                        "The newest memories of {} (at most {RESOURCE_MEMORIES})",
                        serde_json::to_string(scope).unwrap_or_default()
                    ))
                    .with_mime_type("application/json"),
            ],
            None => Vec::new(),
        };
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, rmcp::ErrorData> {
        let template = ResourceTemplate::new(USER_MEMORIES_TEMPLATE, "user-memories")
            .with_title("A user's memories")
            .with_description(format!(
                "The newest memories of the scope {{\"user_id\": USER}} (at most {RESOURCE_MEMORIES})"
            ))
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    /// `contextiq://memories` (the credential's scope) or `contextiq://users/{user_id}/memories`.
    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, rmcp::ErrorData> {
        let principal = self.principal(&context, Permission::MemoryRead).map_err(protocol_error)?;
        let uri = request.uri;
        let named = match uri.as_str() {
            OWN_MEMORIES_URI => None,
            other => match other.strip_prefix("contextiq://users/").and_then(|rest| rest.strip_suffix("/memories")) {
                Some(user) if !user.is_empty() && !user.contains('/') => {
                    let user = percent_decode(user).ok_or_else(|| {
                        rmcp::ErrorData::invalid_params("the user id is not valid percent-encoded UTF-8", None)
                    })?;
                    Some(Scope::from([("user_id".to_owned(), user)]))
                }
                _ => return Err(rmcp::ErrorData::resource_not_found(format!("no resource {uri}"), None)),
            },
        };
        let scope = resolve_scope(&principal, named).map_err(protocol_error)?;
        let page = self
            .memory
            .memories
            .list(&principal.access, &scope, &MemoryFilter::default(), None, RESOURCE_MEMORIES, self.now())
            .await
            .map_err(|err| protocol_error(err.into()))?;
        let memories: Vec<MemoryBody> = page.memories.into_iter().map(MemoryBody::from).collect();
        let text = json!({ "scope": scope, "memories": memories }).to_string();
        let contents = ResourceContents::text(text, uri).with_mime_type("application/json");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// The resource of the credential's own scope, and the template of a user's.
const OWN_MEMORIES_URI: &str = "contextiq://memories";
const USER_MEMORIES_TEMPLATE: &str = "contextiq://users/{user_id}/memories";
/// Memories in a resource: the newest, as many as one page of the API holds.
const RESOURCE_MEMORIES: u32 = 100;

/// Resource reads have no tool result to carry a problem: a JSON-RPC error with the problem
/// as its data.
fn protocol_error(err: ApiError) -> rmcp::ErrorData {
    let problem = err.problem();
    let data = serde_json::to_value(&problem).ok();
    match problem.status {
        404 => rmcp::ErrorData::resource_not_found(problem.detail, data),
        status if status >= 500 => {
            tracing::error!(error = %err, "an MCP resource read failed");
            rmcp::ErrorData::internal_error(problem.detail, data)
        }
        _ => rmcp::ErrorData::invalid_params(problem.detail, data),
    }
}

/// `%XX` escapes of a URI segment decoded; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

impl McpServer {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.app.clock.now()
    }

    /// The principal of this call, holding `permission`.
    fn principal(&self, context: &RequestContext<RoleServer>, permission: Permission) -> Result<Principal, ApiError> {
        let principal = match &self.binding {
            Binding::Fixed(principal) => principal.as_ref().clone(),
            Binding::PerRequest => context
                .extensions
                .get::<Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned()
                .ok_or(ApiError::MissingCredentials)?,
        };
        require(&principal, permission)?;
        Ok(principal)
    }

    /// Queues a job and waits for it to finish, up to `wait_seconds`.
    async fn run_job(
        &self,
        principal: &Principal,
        mut request: GenerateRequest,
        wait_seconds: Option<u64>,
    ) -> Result<Value, ApiError> {
        request.trace_context = crate::trace_context::current_context_map();
        let generation = &self.memory.generation;
        let job = generation.submit(&principal.access, &principal.actor(), request, self.now()).await?;
        self.memory.job_queue_wake.notify_one();
        let wait = Duration::from_secs(wait_seconds.unwrap_or(DEFAULT_WAIT_SECONDS)).min(self.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        let mut job = job;
        // Polled: jobs finish in another task (or process) and announce nothing to waiters.
        while matches!(job.status, JobStatus::Pending | JobStatus::Running) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = generation.get(&principal.access, job.id).await?;
        }
        let finished = !matches!(job.status, JobStatus::Pending | JobStatus::Running);
        let body = JobBody::from(job);
        let memory_ids: Vec<Uuid> = body.memories_added.iter().chain(&body.memories_updated).copied().collect();
        let mut memories = Vec::new();
        // The memories' text only to a credential that may read it (a write-only key gets ids).
        for id in memory_ids.iter().filter(|_| principal.may(Permission::MemoryRead)) {
            // A memory a later job deleted again is simply not shown.
            if let Ok(memory) = self.memory.memories.get(&principal.access, *id, self.now()).await {
                memories.push(MemoryBody::from(memory));
            }
        }
        // What an assistant needs of the job; get_job has the rest.
        let mut summary = json!({
            "job_id": body.id,
            "status": body.status,
            "counts": body.counts,
            "events_processed": body.events_processed,
            "facts_extracted": body.facts_extracted,
            "memory_ids": memory_ids,
            "memories": memories,
        });
        if let Some(error) = &body.error {
            summary["error"] = json!(error);
        }
        if !finished {
            summary["note"] = json!(format!("still running: call get_job with job_id {} later", body.id));
        }
        Ok(summary)
    }
}

/// The scope a call acts on: the one it names, else the credential's own. A named scope outside
/// the credential's is refused here, so the model hears why rather than finding nothing (the
/// services would answer an empty search).
fn resolve_scope(principal: &Principal, given: Option<Scope>) -> Result<Scope, ApiError> {
    match (given, &principal.access.scope) {
        (Some(scope), Some(own)) if own.iter().any(|(key, value)| scope.get(key) != Some(value)) => {
            Err(contextiq_core::Error::Forbidden(format!(
                "scope: this credential reaches only scopes holding {}; omit scope to act on that one",
                serde_json::to_string(own).unwrap_or_default()
            ))
            .into())
        }
        (Some(scope), _) => Ok(scope),
        (None, Some(own)) => Ok(own.clone()),
        (None, None) => Err(contextiq_core::Error::validation(
            "scope",
            "is required: this credential is not limited to one scope; give e.g. {\"user_id\": \"u1\"}",
        )
        .into()),
    }
}

/// A tool's answer: the value as structured content, or a failure the model can read (the
/// problem document the HTTP API would answer, `isError: true`).
fn answer(outcome: Result<Value, ApiError>) -> ToolResult {
    match outcome {
        Ok(value) => Ok(CallToolResult::structured(value)),
        Err(err) => {
            let problem = err.problem();
            if problem.status >= 500 {
                tracing::error!(error = %err, "an MCP tool failed");
            }
            Ok(CallToolResult::structured_error(json!({ "error": problem })))
        }
    }
}

/// The principal of `contextiq mcp`: the API key's (`CONTEXTIQ_API_KEY`) when one is given,
/// else the default org's administrator, as for anyone who can open the data directory; then
/// confined to `scope` (which must lie within the key's own) and to `engine`.
pub async fn stdio_principal(
    app: &AppState,
    api_key: Option<&str>,
    scope: Option<Scope>,
    engine: Option<&str>,
) -> anyhow::Result<Principal> {
    use anyhow::Context;
    let mut principal = match api_key {
        Some(key) => {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-api-key", key.parse().context("the API key is not a valid header value")?);
            app.authenticator.principal(&headers, None).await.map_err(|err| anyhow::anyhow!("the API key: {err}"))?
        }
        None => Principal {
            access: contextiq_core::Access::org(contextiq_core::OrgId::default_org()),
            permissions: Permission::ALL.into(),
            credential: crate::auth::Credential::Anonymous { client: None },
            rate: None,
            expires_at: None,
        },
    };
    if let Some(scope) = scope {
        contextiq_core::session::check_scope(&scope).map_err(|err| anyhow::anyhow!("--scope: {err}"))?;
        if let Some(own) = &principal.access.scope
            && own.iter().any(|(key, value)| scope.get(key) != Some(value))
        {
            anyhow::bail!("--scope must lie within the API key's own scope {own:?}");
        }
        principal.access.scope = Some(scope);
    }
    if let Some(engine) = engine {
        let engine = contextiq_core::EngineId::parse(engine, "--engine").map_err(|err| anyhow::anyhow!("{err}"))?;
        principal.access = principal.access.in_engine(&engine);
    }
    Ok(principal)
}

/// Serves `server` on stdin/stdout until the client closes stdin.
pub async fn serve_stdio(server: McpServer) -> anyhow::Result<()> {
    use anyhow::Context;
    use rmcp::ServiceExt;
    let service = server.serve(rmcp::transport::stdio()).await.context("the MCP handshake on stdio failed")?;
    service.waiting().await.context("the MCP service failed")?;
    Ok(())
}

/// Streamable HTTP at `/mcp`: stateless (no `Mcp-Session-Id`; any process of a deployment can
/// answer any request), JSON answers, the server's body limit, and `Host` checked against
/// `allowed_hosts` (DNS rebinding).
pub fn http_service(
    app: AppState,
    memory: MemoryState,
    allowed_hosts: Vec<String>,
    max_body_bytes: usize,
    request_timeout_seconds: u64,
) -> StreamableHttpService<McpServer, NeverSessionManager> {
    let mut server = McpServer::new(app, memory, Binding::PerRequest);
    if request_timeout_seconds > 0 {
        // A margin for the work around the wait (the job's memories, the answer).
        let within = request_timeout_seconds.saturating_sub(5).max(1);
        server.max_wait = server.max_wait.min(Duration::from_secs(within));
    }
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(max_body_bytes);
    config = match allowed_hosts.iter().any(|host| host == "*") {
        true => config.disable_allowed_hosts(),
        false => config.with_allowed_hosts(allowed_hosts),
    };
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config)
}
