//! The store traits' shared pieces: [`SessionStore`], and the write path of the memory and job
//! store: [`Write`], the one operation every change goes through, and [`Layered`], which lets a
//! decorator ([`StoreLayer`]) act on writes while reads pass through.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::embed::MemoryVectors;
use crate::generation::{CommitResult, Job, JobCompletion, JobStore, LlmUsage, MemoryChange};
use crate::memory::{MemoryFilter, MemoryPage, StoredMemory};
use crate::{
    Error, Event, Memory, MemoryStore, NewEvent, OrgId, PageCursor, Result, Revision, Session, SessionFilter,
    SessionPage,
};

/// Persistence of sessions and their events. Every method is confined to one org, and every
/// read treats a session whose `expires_at` is at or before `now` as absent.
///
/// Implementations must give each session's events one total order (`seq`, from 1, no gaps
/// within an append) even under concurrent appends, and must acknowledge a write only once
/// it is durable.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn create_session(&self, session: Session) -> Result<Session>;

    /// The session; with `events_limit`, also its first events (at most that many, in append
    /// order) read in the same snapshot as the session.
    async fn get_session(
        &self,
        org: &OrgId,
        id: Uuid,
        events_limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Session>;

    /// Newest first, `(created_at, id)` descending, starting after `filter.cursor`.
    async fn list_sessions(&self, org: &OrgId, filter: &SessionFilter, now: DateTime<Utc>) -> Result<SessionPage>;

    /// Appends all `events` atomically after the session's last event and returns them with
    /// their ids and sequence numbers. In the same transaction, each event's `state_delta` is
    /// applied to the session's state in order ([`apply_event_state`](crate::session::apply_event_state));
    /// a state that would outgrow `max_state_bytes` fails the whole append.
    ///
    /// Also in that transaction: the session's `token_count` grows by the events' counts; a
    /// message event adds to the uncompacted events and tokens; a compaction event moves
    /// `compaction.through_seq` to its `end_seq` (if later) and sets the uncompacted counts to
    /// those of the message events after it.
    async fn append_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Appended>;

    /// The session's compaction and rewind events (every kind but `message`), newest first, at
    /// most `limit`.
    async fn marker_events(&self, org: &OrgId, session_id: Uuid, limit: u32, now: DateTime<Utc>) -> Result<Vec<Event>>;

    /// Events with `seq > after_seq`, in append order, at most `limit`.
    async fn list_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>>;

    /// Implementations check expiry and stamp `updated_at` and default event timestamps with
    /// the later of `now` and their own clock at the moment the write applies, so a write that
    /// waited in a queue cannot revive an expired session or go back in time.
    ///
    /// Applies RFC 7396 merge patches to the state and the metadata atomically
    /// ([`SessionPatch::apply`](crate::session::SessionPatch::apply)); fails with
    /// `LimitExceeded` (and changes nothing) if either serialises to more than
    /// `max_state_bytes`.
    async fn patch_state(
        &self,
        org: &OrgId,
        session_id: Uuid,
        patch: crate::session::SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session>;

    /// Deletes the session with its events and, with it, its descendants (children, their
    /// children, ...); returns the ids of every session deleted.
    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<Vec<Uuid>>;

    /// What the session's state at `through_seq` is rebuilt from
    /// ([`StateHistory::state_at`](crate::session::StateHistory::state_at)), read in one snapshot.
    async fn state_history(
        &self,
        org: &OrgId,
        session_id: Uuid,
        through_seq: i64,
        now: DateTime<Utc>,
    ) -> Result<crate::session::StateHistory>;

    /// Creates `fork` (whose state the caller rebuilt) with copies, made inside the store, of
    /// the source's events `1..=through_seq` (new ids, same seqs) and of its state log up to
    /// there, and its totals (`event_count`, tokens, compaction) recounted from those events.
    /// Fails with `NotFound` if the source is gone and `AlreadyExists` if `fork.id` is taken.
    async fn fork_session(
        &self,
        org: &OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Session,
        now: DateTime<Utc>,
    ) -> Result<Session>;

    /// The first and last `seq` of the session's events of `invocation_id`, if it has any.
    async fn invocation_span(
        &self,
        org: &OrgId,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, i64)>>;

    /// Removes sessions (and their events) that expired at or before `now`, at most `batch`
    /// of them; returns how many went.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>, batch: u32) -> Result<u64>;

    /// Answers when the store can serve requests (readiness).
    async fn ping(&self) -> Result<()>;

    /// Finishes acknowledged work and releases the store; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// What an append wrote: the events, and the session as it stands after them (no events).
#[derive(Debug, Clone)]
pub struct Appended {
    pub events: Vec<Event>,
    pub session: Session,
}

/// One write to the memory store: every change of memories and jobs is one of these, applied
/// by [`MemoryStore::write`](crate::MemoryStore::write). A job's completion is one write too,
/// since it changes memories.
#[derive(Debug, Clone)]
pub enum Write {
    InsertMemory {
        memory: Memory,
        embedding: MemoryVectors,
        revision: Revision,
    },
    /// Replaces the fields (and the embedding, when given) of a live memory.
    UpdateMemory {
        memory: Memory,
        embedding: Option<MemoryVectors>,
        revision: Revision,
        now: DateTime<Utc>,
    },
    /// Marks a live memory deleted; its record and history stay, for `restore`.
    DeleteMemory {
        org: OrgId,
        id: Uuid,
        revision: Revision,
        now: DateTime<Utc>,
    },
    /// Brings a memory (live or deleted) back to `memory`'s fields, live again.
    RestoreMemory {
        memory: Memory,
        embedding: MemoryVectors,
        revision: Revision,
    },
    /// Erases a memory and all its revisions.
    PurgeMemory {
        org: OrgId,
        id: Uuid,
    },
    PurgeExpiredMemories {
        now: DateTime<Utc>,
        batch: u32,
    },
    SetEmbeddingModel {
        model_id: String,
        dimension: usize,
    },
    SetEmbeddings {
        embeddings: Vec<(Uuid, MemoryVectors)>,
    },
    EnqueueJob {
        job: Box<Job>,
    },
    /// Claims the next runnable job, or only job `only` if it is runnable.
    ClaimJob {
        only: Option<Uuid>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    },
    MarkPublished {
        ids: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    RenewLease {
        id: Uuid,
        attempt: u32,
        lease_until: DateTime<Utc>,
    },
    CompleteJob {
        completion: Box<JobCompletion>,
    },
    FailJob {
        id: Uuid,
        attempt: u32,
        error: String,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    PurgeFinishedJobs {
        finished_before: DateTime<Utc>,
        batch: u32,
    },
}

impl Write {
    /// The memories and jobs this write changes when it applies, as far as the write itself
    /// names them (a claim's job and a purge's jobs are known only from the answer).
    pub fn touches(&self) -> Touched {
        let (memories, jobs) = match self {
            Write::InsertMemory { memory, .. }
            | Write::UpdateMemory { memory, .. }
            | Write::RestoreMemory { memory, .. } => (vec![memory.id], Vec::new()),
            Write::DeleteMemory { id, .. } | Write::PurgeMemory { id, .. } => (vec![*id], Vec::new()),
            Write::SetEmbeddings { embeddings } => (embeddings.iter().map(|(id, _)| *id).collect(), Vec::new()),
            Write::ClaimJob { only: Some(id), .. } | Write::RenewLease { id, .. } | Write::FailJob { id, .. } => {
                (Vec::new(), vec![*id])
            }
            Write::CompleteJob { completion } => {
                (completion.changes.iter().map(MemoryChange::memory_id).collect(), vec![completion.job_id])
            }
            Write::PurgeExpiredMemories { .. }
            | Write::SetEmbeddingModel { .. }
            | Write::EnqueueJob { .. }
            | Write::ClaimJob { only: None, .. }
            | Write::MarkPublished { .. }
            | Write::PurgeFinishedJobs { .. } => (Vec::new(), Vec::new()),
        };
        Touched { memories, jobs }
    }
}

/// What a write answers, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Deletes, purges, embeddings, publication marks.
    Done,
    /// The memory an insert, update or restore wrote.
    Memory(Box<Memory>),
    /// How many expired memories a purge removed.
    Count(u64),
    /// The job an enqueue stored.
    Job(Box<Job>),
    /// The job a claim took, if any.
    Claimed(Option<Box<Job>>),
    /// Whether the attempt still held the job (a lease renewal, a failure).
    Held(bool),
    Commit(CommitResult),
    /// The jobs a purge removed.
    Purged(Vec<Uuid>),
}

/// The records a write changed: what a decorator acts on after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched {
    pub memories: Vec<Uuid>,
    pub jobs: Vec<Uuid>,
}

/// A write's answer and the records it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub written: Written,
    pub touched: Touched,
}

impl WriteOutcome {
    /// The outcome of a write that touched `touched` (from [`Write::touches`]) and answered
    /// `written`: a completion that did not commit touched nothing; a claim touched its job, a
    /// purge of jobs the jobs it removed.
    pub fn new(mut touched: Touched, written: Written) -> WriteOutcome {
        match &written {
            Written::Commit(result) if *result != CommitResult::Committed => touched = Touched::default(),
            Written::Claimed(Some(job)) if !touched.jobs.contains(&job.id) => touched.jobs.push(job.id),
            Written::Purged(ids) => touched.jobs.extend(ids),
            _ => {}
        }
        WriteOutcome { written, touched }
    }

    fn mismatch(self, expected: &str) -> Error {
        Error::store(WrongAnswer(format!("a write answered {:?} where {expected} was due", self.written)))
    }

    pub fn done(self) -> Result<()> {
        match self.written {
            Written::Done => Ok(()),
            _ => Err(self.mismatch("nothing")),
        }
    }

    pub fn memory(self) -> Result<Memory> {
        match self.written {
            Written::Memory(memory) => Ok(*memory),
            _ => Err(self.mismatch("a memory")),
        }
    }

    pub fn count(self) -> Result<u64> {
        match self.written {
            Written::Count(n) => Ok(n),
            _ => Err(self.mismatch("a count")),
        }
    }

    pub fn job(self) -> Result<Job> {
        match self.written {
            Written::Job(job) => Ok(*job),
            _ => Err(self.mismatch("a job")),
        }
    }

    pub fn claimed(self) -> Result<Option<Job>> {
        match self.written {
            Written::Claimed(job) => Ok(job.map(|job| *job)),
            _ => Err(self.mismatch("a claim")),
        }
    }

    pub fn held(self) -> Result<bool> {
        match self.written {
            Written::Held(held) => Ok(held),
            _ => Err(self.mismatch("whether the job was held")),
        }
    }

    pub fn commit(self) -> Result<CommitResult> {
        match self.written {
            Written::Commit(result) => Ok(result),
            _ => Err(self.mismatch("a commit result")),
        }
    }

    pub fn purged(self) -> Result<Vec<Uuid>> {
        match self.written {
            Written::Purged(ids) => Ok(ids),
            _ => Err(self.mismatch("purged ids")),
        }
    }
}

/// A backend answered a write with the answer of another kind: a bug in that backend.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WrongAnswer(String);

/// A decorator of the memory and job store: it sees every write, and intercepts the reads it
/// names; [`Layered`] passes every other read to the store it wraps. Each method gets `inner`,
/// the store decorated.
#[async_trait]
pub trait StoreLayer: Send + Sync + 'static {
    async fn write(&self, inner: &dyn JobStore, write: Write) -> Result<WriteOutcome>;

    async fn get_memories(
        &self,
        inner: &dyn JobStore,
        org: &OrgId,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<Memory>> {
        inner.get_memories(org, ids, now).await
    }

    async fn vector_candidates(
        &self,
        inner: &dyn JobStore,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        inner.vector_candidates(org, scope_key, vector, limit).await
    }

    async fn get_job(&self, inner: &dyn JobStore, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        inner.get_job(org, id).await
    }
}

/// The store `inner` seen through the decorator `layer`: the one place reads are passed on.
pub struct Layered<L> {
    inner: Arc<dyn JobStore>,
    layer: L,
}

impl<L: StoreLayer> Layered<L> {
    pub fn with(inner: Arc<dyn JobStore>, layer: L) -> Layered<L> {
        Layered { inner, layer }
    }

    pub fn inner(&self) -> &dyn JobStore {
        self.inner.as_ref()
    }
}

#[async_trait]
impl<L: StoreLayer> MemoryStore for Layered<L> {
    async fn write(&self, write: Write) -> Result<WriteOutcome> {
        self.layer.write(self.inner.as_ref(), write).await
    }

    async fn find_memory(&self, org: &OrgId, id: Uuid) -> Result<Option<StoredMemory>> {
        self.inner.find_memory(org, id).await
    }

    async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Memory>> {
        self.layer.get_memories(self.inner.as_ref(), org, ids, now).await
    }

    async fn list_memories(
        &self,
        org: &OrgId,
        scope_key: Option<&str>,
        filter: &MemoryFilter,
        cursor: Option<PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<MemoryPage> {
        self.inner.list_memories(org, scope_key, filter, cursor, limit, now).await
    }

    async fn list_revisions(&self, org: &OrgId, memory_id: Uuid) -> Result<Vec<Revision>> {
        self.inner.list_revisions(org, memory_id).await
    }

    async fn lexical_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        query: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, f64)>> {
        self.inner.lexical_candidates(org, scope_key, query, limit, now).await
    }

    async fn vector_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        self.layer.vector_candidates(self.inner.as_ref(), org, scope_key, vector, limit).await
    }

    async fn passage_similarities(&self, org: &OrgId, ids: &[Uuid], vector: &[f32]) -> Result<HashMap<Uuid, f64>> {
        self.inner.passage_similarities(org, ids, vector).await
    }

    async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        self.inner.embedding_model().await
    }

    async fn count_memories(&self) -> Result<u64> {
        self.inner.count_memories().await
    }

    async fn memory_facts_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<(Uuid, String)>> {
        self.inner.memory_facts_after(after, limit).await
    }
}

#[async_trait]
impl<L: StoreLayer> JobStore for Layered<L> {
    async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        self.layer.get_job(self.inner.as_ref(), org, id).await
    }

    async fn jobs_to_publish(&self, now: DateTime<Utc>, stale_before: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        self.inner.jobs_to_publish(now, stale_before, limit).await
    }

    async fn generation_watermark(&self, org: &OrgId, session_id: Uuid, scope_key: &str) -> Result<i64> {
        self.inner.generation_watermark(org, session_id, scope_key).await
    }

    async fn count_unfinished_jobs(&self) -> Result<u64> {
        self.inner.count_unfinished_jobs().await
    }
}
