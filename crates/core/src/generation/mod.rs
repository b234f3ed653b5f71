//! Memory generation: jobs that read a conversation, extract candidate facts with an
//! [`Extractor`], and consolidate them into the memories of a scope.
//!
//! The pieces: the request and job types, the [`JobStore`] a backend implements (a durable
//! queue with leases, and the one transaction that applies a job's changes), the extractors
//! (`rules`, offline and deterministic; `llm`, any chat model behind [`ChatModel`]), the
//! consolidation engine, the `broker` trait of job messages, and `GenerationService`, which
//! validates and queues jobs and runs one attempt of a job. The workers that claim jobs and
//! call it live in the server; time comes in as an argument.

pub mod broker;
mod compaction;
pub mod consolidate;
#[cfg(test)]
mod labelled;
pub mod llm;
pub mod rules;
mod service;
pub mod summary;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::embed::MemoryVectors;
use crate::memory::Revision;
use crate::{Memory, MemoryStore, OrgId, Role, Scope, Write};

pub use consolidate::ConsolidationSettings;
pub use service::{Attempt, GenerationService, GenerationSettings, derived_event_id, event_text};

/// The topics of Memory Bank, used when a request names none.
pub const MANAGED_TOPICS: [&str; 4] = [
    crate::grammar::PERSONAL_INFO,
    crate::grammar::PREFERENCES,
    crate::grammar::CONVERSATION_DETAILS,
    crate::grammar::EXPLICIT_INSTRUCTIONS,
];

/// What a job reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A stored session; without a range, the events after those already processed.
    Session { session_id: Uuid, from_seq: Option<i64>, to_seq: Option<i64> },
    /// Events sent with the request, never stored as a session.
    Events { events: Vec<InlineEvent> },
    /// Finished facts, only consolidated (Memory Bank's direct memories).
    Memories { facts: Vec<DirectFact> },
    /// Not memories: summarises a session's events after its last compaction, all but the
    /// `keep_recent_events` newest message events, into a compaction event.
    Compaction { session_id: Uuid, keep_recent_events: u32 },
}

impl Source {
    pub fn type_name(&self) -> &'static str {
        match self {
            Source::Session { .. } => "session",
            Source::Events { .. } => "events",
            Source::Memories { .. } => "memories",
            Source::Compaction { .. } => "compaction",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineEvent {
    /// Derived from the event's position and content when the client gives none, so the same
    /// events always carry the same ids.
    pub id: Uuid,
    pub author: String,
    pub role: Role,
    pub content: String,
    /// When it was said, as the client gave it; the job's time when not given (and in jobs
    /// queued before events carried one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectFact {
    pub fact: String,
    pub topic: Option<String>,
    pub confidence: Option<f64>,
}

/// A topic facts may be filed under: a managed one (no description needed) or a custom one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub description: Option<String>,
}

/// A worked example for the extractor: a conversation and the facts it should yield.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub conversation: Vec<ExampleTurn>,
    pub facts: Vec<ExampleFact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleTurn {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleFact {
    pub fact: String,
    pub topic: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractorKind {
    #[default]
    Rules,
    Llm,
}

/// How a job extracts and consolidates. Missing fields take their defaults, so jobs queued
/// by an older version still read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub extractor: ExtractorKind,
    /// The topics to extract; empty means the managed topics.
    pub topics: Vec<TopicSpec>,
    pub examples: Vec<Example>,
    /// Add every candidate as a new memory, skipping duplicate detection and updates.
    pub disable_consolidation: bool,
    pub created_ttl_seconds: Option<i64>,
    pub updated_ttl_seconds: Option<i64>,
    /// Metadata of the memories the job creates, and what it does to the metadata of those it
    /// updates (Memory Bank's `metadata` and `metadataMergeStrategy`).
    pub metadata: serde_json::Map<String, Value>,
    pub metadata_merge: MetadataMerge,
}

/// What a job does to the metadata of a memory it updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataMerge {
    /// The job's keys are added, replacing the memory's values of the same keys.
    #[default]
    Merge,
    /// The memory's metadata becomes the job's.
    Overwrite,
    /// Only memories whose metadata equals the job's are consolidated with; others are left
    /// alone (their facts are added anew).
    RequireExactMatch,
}

impl GenerationConfig {
    /// The topics in force: the requested ones, or the managed set.
    pub fn effective_topics(&self) -> Vec<TopicSpec> {
        if self.topics.is_empty() {
            MANAGED_TOPICS.iter().map(|name| TopicSpec { name: (*name).to_owned(), description: None }).collect()
        } else {
            self.topics.clone()
        }
    }
}

/// A generation job as submitted, before validation.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub source: Source,
    pub scope: Option<Scope>,
    pub config: GenerationConfig,
    /// The W3C trace context of the request, so the job's work joins its trace.
    pub trace_context: BTreeMap<String, String>,
    /// Not before this time (a stream's idle time, say); `None`: at once.
    pub run_after: Option<DateTime<Utc>>,
}

/// A turn of conversation as extractors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub event_id: Uuid,
    pub role: Role,
    pub author: String,
    pub content: String,
    /// When it was said: what "yesterday" or "last month" in it count from.
    pub said_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// A fact to remember.
    Assert,
    /// A request to forget what matches the fact.
    Forget,
}

/// A fact an extractor found, before consolidation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// In the third person about the user ("User's favourite colour is blue").
    pub fact: String,
    pub topic: String,
    pub confidence: f64,
    pub source_event_ids: Vec<Uuid>,
    pub kind: CandidateKind,
}

/// Calls to a language model on behalf of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmUsage {
    pub calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Replies that failed validation and were sent back for repair.
    pub repairs: u32,
}

impl LlmUsage {
    pub fn add(&mut self, other: LlmUsage) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.repairs += other.repairs;
    }
}

/// Why extraction failed. Transient failures are retried with backoff; permanent ones fail the
/// job at once (a rejected credential will not get better by waiting).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

impl ExtractError {
    /// Trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ExtractError::Permanent(_))
    }
}

/// How consolidation settles a candidate that is close to, but not a duplicate of, existing
/// memories.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Add,
    /// Replace `memory_id`'s fact with `fact`, which must carry what both said.
    Update {
        memory_id: Uuid,
        fact: String,
    },
    Delete {
        memory_id: Uuid,
    },
    Noop,
}

/// An existing memory shown to a judge, with its similarity to the candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub id: Uuid,
    pub fact: String,
    pub similarity: f64,
}

/// Turns conversation into candidate facts.
#[async_trait::async_trait]
pub trait Extractor: Send + Sync + 'static {
    async fn extract(
        &self,
        turns: &[Turn],
        config: &GenerationConfig,
        usage: &mut LlmUsage,
    ) -> Result<Vec<Candidate>, ExtractError>;

    /// Settles a candidate in the ambiguous similarity band; `None` when this extractor does not
    /// judge (the rules extractor keeps both).
    async fn judge(
        &self,
        candidate: &Candidate,
        neighbours: &[Neighbour],
        usage: &mut LlmUsage,
    ) -> Result<Option<Verdict>, ExtractError>;

    /// A summary of `turns` in at most about `max_tokens` tokens (counted with `tokenizer`),
    /// each line naming the `seq` of the turns it comes from as `[#seq]`, so a reader can fetch
    /// the events themselves.
    async fn summarise(
        &self,
        turns: &[SummaryTurn],
        max_tokens: u32,
        tokenizer: crate::Tokenizer,
        usage: &mut LlmUsage,
    ) -> Result<String, ExtractError>;

    fn summary_method(&self) -> crate::SummaryMethod;
}

/// A turn as a summariser reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryTurn {
    pub seq: i64,
    pub turn: Turn,
}

/// One request to a chat model: a system prompt and a conversation of user/assistant turns.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: String,
    /// Alternating, starting and ending with a user message.
    pub messages: Vec<ChatMessage>,
    /// Asks for a JSON object reply where the provider supports it.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A language model provider (OpenAI, Anthropic, Gemini, Azure OpenAI, OpenAI-compatible).
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync + 'static {
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply, ExtractError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// What a job did, once it completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobOutcome {
    pub facts_extracted: u32,
    pub events_processed: u32,
    /// The session holds more events than one job reads; generate again to continue.
    pub more_events_pending: bool,
    pub memories_added: Vec<Uuid>,
    pub memories_updated: Vec<Uuid>,
    pub memories_deleted: Vec<Uuid>,
    /// Candidates that were already known.
    pub unchanged: u32,
    pub llm_usage: LlmUsage,
    /// A compaction job's summary event; `None` when there was nothing to summarise.
    pub compaction_event_id: Option<Uuid>,
    pub compaction: Option<crate::Compaction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub org_id: OrgId,
    pub scope: Scope,
    pub status: JobStatus,
    pub source: Source,
    pub config: GenerationConfig,
    /// Who submitted it (`key:<id>`, `jwt:<sub>`).
    pub actor: String,
    /// Attempts started so far, the running one included.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The last failure, kept when the job is retried or dead-lettered.
    pub error: Option<String>,
    pub outcome: JobOutcome,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A pending job does not run before this.
    pub run_after: DateTime<Utc>,
    /// A running job whose lease passed is taken over by another worker.
    pub lease_until: Option<DateTime<Utc>>,
    /// The W3C trace context (`traceparent`, `tracestate`) of the request that queued it.
    #[serde(default)]
    pub trace_context: BTreeMap<String, String>,
}

impl Job {
    /// A job ready to queue: pending, due at once, no attempts yet.
    pub fn queued(
        org_id: OrgId,
        scope: Scope,
        source: Source,
        config: GenerationConfig,
        actor: &str,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Job {
        Job {
            id: Uuid::now_v7(),
            org_id,
            scope,
            status: JobStatus::Pending,
            source,
            config,
            actor: actor.to_owned(),
            attempts: 0,
            max_attempts: max_attempts.max(1),
            error: None,
            outcome: JobOutcome::default(),
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            run_after: now,
            lease_until: None,
            trace_context: BTreeMap::new(),
        }
    }
}

/// One change a job makes to the memories of its scope.
#[derive(Debug, Clone)]
pub enum MemoryChange {
    Insert {
        memory: Memory,
        embedding: MemoryVectors,
        revision: Revision,
    },
    /// Applies only if the memory is live and still has `expected_updated_at`.
    Update {
        memory: Memory,
        expected_updated_at: DateTime<Utc>,
        embedding: MemoryVectors,
        revision: Revision,
    },
    Delete {
        id: Uuid,
        expected_updated_at: DateTime<Utc>,
        revision: Revision,
    },
}

impl MemoryChange {
    pub fn memory_id(&self) -> Uuid {
        match self {
            MemoryChange::Insert { memory, .. } | MemoryChange::Update { memory, .. } => memory.id,
            MemoryChange::Delete { id, .. } => *id,
        }
    }
}

/// Everything a successful attempt writes, applied in one transaction.
#[derive(Debug, Clone)]
pub struct JobCompletion {
    pub job_id: Uuid,
    pub org_id: OrgId,
    /// The attempt that did the work; the commit is refused if the job has moved on since.
    pub attempt: u32,
    pub changes: Vec<MemoryChange>,
    /// For session sources: the last event `seq` now processed for (session, scope).
    pub watermark: Option<(Uuid, String, i64)>,
    pub outcome: JobOutcome,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitResult {
    Committed,
    /// Another attempt holds the job now (this one's lease expired): nothing was written.
    LeaseLost,
    /// A memory changed after the job read it: nothing was written; run consolidation again.
    Conflict,
}

/// The durable job queue and the transaction that finishes a job. Its writes go through
/// [`MemoryStore::write`] like the memories' (a completion writes memories); the typed methods
/// are shorthands for one [`Write`] each, which implementations do not override.
#[async_trait::async_trait]
pub trait JobStore: MemoryStore {
    async fn get_job(&self, org: &OrgId, id: Uuid) -> crate::Result<Option<Job>>;
    /// Runnable jobs (due and first of their scope) that a broker must announce: never
    /// announced since they last became due (created, retry time reached, lease lapsed), or
    /// announced before `stale_before` and still not taken (the message went astray).
    async fn jobs_to_publish(
        &self,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<Vec<Job>>;
    /// The last event `seq` of a session already processed for a scope (0 if none).
    async fn generation_watermark(&self, org: &OrgId, session_id: Uuid, scope_key: &str) -> crate::Result<i64>;
    /// Jobs waiting or running, for the queue-depth metric.
    async fn count_unfinished_jobs(&self) -> crate::Result<u64>;

    async fn enqueue_job(&self, job: Job) -> crate::Result<Job> {
        self.write(Write::EnqueueJob { job: Box::new(job) }).await?.job()
    }
    /// Takes the next runnable job (pending and due, or running with an expired lease) whose
    /// scope has no other job under a live lease, so jobs of one scope never overlap; marks it
    /// running, counts the attempt and leases it until `lease_until`.
    async fn claim_job(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> crate::Result<Option<Job>> {
        self.write(Write::ClaimJob { only: None, now, lease_until }).await?.claimed()
    }
    /// Claims job `id` as `claim_job` would (due, and first of its scope); `None` when it is not
    /// runnable now: finished, under a live lease, waiting for a retry or for its scope.
    async fn claim_job_by_id(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> crate::Result<Option<Job>> {
        self.write(Write::ClaimJob { only: Some(id), now, lease_until }).await?.claimed()
    }
    /// Records that the jobs' messages were confirmed by the broker at `at`.
    async fn mark_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> crate::Result<()> {
        self.write(Write::MarkPublished { ids: ids.to_vec(), at }).await?.done()
    }
    /// Extends the lease while `attempt` still holds the job under a live lease; false once it
    /// lost it.
    async fn renew_lease(&self, id: Uuid, attempt: u32, lease_until: DateTime<Utc>) -> crate::Result<bool> {
        self.write(Write::RenewLease { id, attempt, lease_until }).await?.held()
    }
    /// Applies the changes, advances the watermark and marks the job completed, atomically;
    /// `LeaseLost` unless the attempt still holds the job under a live lease (a lapsed lease
    /// may have let the next job of the scope start). Backends run [`complete_job`].
    async fn complete_job(&self, completion: JobCompletion) -> crate::Result<CommitResult> {
        self.write(Write::CompleteJob { completion: Box::new(completion) }).await?.commit()
    }
    /// Records a failed attempt: pending again from `retry_at`, or failed for good when `None`,
    /// with the LLM usage of all attempts so far. False if `attempt` no longer holds the job.
    async fn fail_job(
        &self,
        id: Uuid,
        attempt: u32,
        error: &str,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> crate::Result<bool> {
        let error = error.to_owned();
        self.write(Write::FailJob { id, attempt, error, llm_usage, retry_at, now }).await?.held()
    }
    /// Deletes up to `batch` completed or failed jobs that finished before `finished_before`;
    /// their ids.
    async fn purge_finished_jobs(&self, finished_before: DateTime<Utc>, batch: u32) -> crate::Result<Vec<Uuid>> {
        self.write(Write::PurgeFinishedJobs { finished_before, batch }).await?.purged()
    }
}

/// The statements of a job's completion, inside one transaction a backend opened: what
/// [`complete_job`] needs of it.
#[async_trait::async_trait]
pub trait CompletionTx: Send {
    /// A database failure: it fails the transaction, and the backend rolls it back.
    type Error: Send;

    /// Marks the job completed with its outcome if `attempt` still holds it under a live lease;
    /// false otherwise.
    async fn finish_job(&mut self, completion: &JobCompletion) -> Result<bool, Self::Error>;
    async fn insert_memory(
        &mut self,
        memory: &Memory,
        embedding: &MemoryVectors,
        revision: &Revision,
    ) -> Result<(), Self::Error>;
    /// Replaces a memory live at `now` and not changed since `expected_updated_at`; false if
    /// there is none.
    async fn update_memory(
        &mut self,
        memory: &Memory,
        embedding: &MemoryVectors,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> Result<bool, Self::Error>;
    /// Marks deleted a memory live at `now` and not changed since `expected_updated_at`; false
    /// if there is none.
    async fn delete_memory(
        &mut self,
        org: &OrgId,
        id: Uuid,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> Result<bool, Self::Error>;
    /// Moves the (session, scope) watermark to `last_seq`, never back.
    async fn advance_watermark(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        scope_key: &str,
        last_seq: i64,
    ) -> Result<(), Self::Error>;
}

/// A job's completion, the one algorithm of every backend: the lease check, the guarded memory
/// changes, the watermark. The backend commits the transaction only on
/// [`CommitResult::Committed`]; on anything else it rolls back, and nothing was written.
pub async fn complete_job<T: CompletionTx + ?Sized>(
    tx: &mut T,
    completion: &JobCompletion,
) -> Result<CommitResult, T::Error> {
    if !tx.finish_job(completion).await? {
        return Ok(CommitResult::LeaseLost);
    }
    let now = completion.now;
    for change in &completion.changes {
        let applied = match change {
            MemoryChange::Insert { memory, embedding, revision } => {
                tx.insert_memory(memory, embedding, revision).await?;
                true
            }
            MemoryChange::Update { memory, expected_updated_at, embedding, revision } => {
                tx.update_memory(memory, embedding, revision, now, *expected_updated_at).await?
            }
            MemoryChange::Delete { id, expected_updated_at, revision } => {
                tx.delete_memory(&completion.org_id, *id, revision, now, *expected_updated_at).await?
            }
        };
        if !applied {
            return Ok(CommitResult::Conflict);
        }
    }
    if let Some((session_id, scope_key, last_seq)) = &completion.watermark {
        tx.advance_watermark(&completion.org_id, *session_id, scope_key, *last_seq).await?;
    }
    Ok(CommitResult::Committed)
}

/// A JSON value that describes why consolidation did something, kept in the revision.
pub fn cause(reason: &str, candidate: &Candidate, similarity: Option<f64>) -> Value {
    serde_json::json!({
        "reason": reason,
        "extracted_fact": candidate,
        "source_event_ids": candidate.source_event_ids,
        "similarity": similarity,
    })
}
