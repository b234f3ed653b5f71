//! Memories: durable facts about a scope (a user, an agent, an app), with their history.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::embed::MemoryVectors;
use crate::store::{Write, WriteOutcome};
use crate::{OrgId, Scope};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub org_id: OrgId,
    pub id: Uuid,
    pub scope: Scope,
    pub fact: String,
    pub topic: Option<String>,
    /// How sure the source was, from 0 to 1.
    pub confidence: f64,
    pub source_session_id: Option<Uuid>,
    pub source_event_ids: Vec<Uuid>,
    pub metadata: Map<String, Value>,
    /// When it was said: the conversation turn a generated memory's current value comes from,
    /// the time the client gave, or else when it was created.
    pub said_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The fields a revision records of a memory, before and after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    pub fact: String,
    pub topic: Option<String>,
    pub confidence: f64,
    pub source_session_id: Option<Uuid>,
    pub source_event_ids: Vec<Uuid>,
    pub metadata: Map<String, Value>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Absent in revisions recorded before memories knew when they were said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said_at: Option<DateTime<Utc>>,
}

impl From<&Memory> for MemorySnapshot {
    fn from(memory: &Memory) -> MemorySnapshot {
        MemorySnapshot {
            fact: memory.fact.clone(),
            topic: memory.topic.clone(),
            confidence: memory.confidence,
            source_session_id: memory.source_session_id,
            source_event_ids: memory.source_event_ids.clone(),
            metadata: memory.metadata.clone(),
            expires_at: memory.expires_at,
            said_at: Some(memory.said_at),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevisionAction {
    Created,
    Updated,
    Deleted,
    Restored,
}

impl RevisionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionAction::Created => "created",
            RevisionAction::Updated => "updated",
            RevisionAction::Deleted => "deleted",
            RevisionAction::Restored => "restored",
        }
    }

    pub fn parse(text: &str) -> Option<RevisionAction> {
        Some(match text {
            "created" => RevisionAction::Created,
            "updated" => RevisionAction::Updated,
            "deleted" => RevisionAction::Deleted,
            "restored" => RevisionAction::Restored,
            _ => return None,
        })
    }
}

/// An immutable record of one change to a memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub id: Uuid,
    pub memory_id: Uuid,
    pub org_id: OrgId,
    pub action: RevisionAction,
    pub before: Option<MemorySnapshot>,
    pub after: Option<MemorySnapshot>,
    /// Who or what made the change: a credential (`key:<id>`, `jwt:<sub>`) or a job.
    pub actor: String,
    pub job_id: Option<Uuid>,
    /// What caused it, when a job did: the extracted facts, source events, the reason.
    pub cause: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// A memory with its place in a ranking.
#[derive(Debug, Clone)]
pub struct ScoredMemory {
    pub memory: Memory,
    pub score: f64,
}

/// One attribute of a scope's profile: its current value and the memory that sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileAttribute {
    /// What the memory sets, as consolidation names it: "name", "residence", "favourite colour".
    pub attribute: String,
    pub value: String,
    pub memory_id: Uuid,
    pub fact: String,
    /// When the memory last changed: when the attribute took this value.
    pub updated_at: DateTime<Utc>,
}

/// Canonical text of a scope: JSON with sorted keys, the form stored and indexed.
pub fn scope_key(scope: &Scope) -> String {
    serde_json::to_string(scope).unwrap_or_default()
}

/// How much search favours what was said recently: the fused relevance and a recency that
/// halves every `half_life_days`, mixed `1 - weight` to `weight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recency {
    pub weight: f64,
    pub half_life_days: f64,
}

impl Recency {
    /// The default half-life when a client gives a weight alone.
    pub const DEFAULT_HALF_LIFE_DAYS: f64 = 30.0;

    /// A search's recency weighting, when a client gave either part (and so it is checked); a
    /// half-life without a weight weighs nothing.
    pub fn requested(weight: Option<f64>, half_life_days: Option<f64>) -> Option<Recency> {
        (weight.is_some() || half_life_days.is_some()).then(|| Recency {
            weight: weight.unwrap_or(0.0),
            half_life_days: half_life_days.unwrap_or(Recency::DEFAULT_HALF_LIFE_DAYS),
        })
    }

    /// `score` mixed with the recency of `said_at` as seen at `now`, in [0, 1].
    pub fn weigh(&self, score: f64, said_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
        let age_days = (now - said_at).num_seconds().max(0) as f64 / 86_400.0;
        let recency = 0.5_f64.powf(age_days / self.half_life_days);
        (1.0 - self.weight) * score + self.weight * recency
    }
}

/// A search within one scope: its text, how many results, what they must match, and how much
/// recency counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryQuery {
    pub text: String,
    pub top_k: u32,
    pub filter: MemoryFilter,
    pub recency: Option<Recency>,
}

impl MemoryQuery {
    /// The `top_k` best matches of `text`, unfiltered, by relevance alone.
    pub fn new(text: impl Into<String>, top_k: u32) -> MemoryQuery {
        MemoryQuery { text: text.into(), top_k, ..MemoryQuery::default() }
    }
}

/// Filters of search and list, beyond the scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryFilter {
    pub topic: Option<String>,
    /// Every pair must equal the memory's metadata value.
    pub metadata: BTreeMap<String, Value>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    pub said_after: Option<DateTime<Utc>>,
    pub said_before: Option<DateTime<Utc>>,
}

impl MemoryFilter {
    pub fn matches(&self, memory: &Memory) -> bool {
        self.topic.as_ref().is_none_or(|topic| memory.topic.as_ref() == Some(topic))
            && self.metadata.iter().all(|(key, value)| memory.metadata.get(key) == Some(value))
            && self.created_after.is_none_or(|at| memory.created_at > at)
            && self.created_before.is_none_or(|at| memory.created_at < at)
            && self.updated_after.is_none_or(|at| memory.updated_at > at)
            && self.updated_before.is_none_or(|at| memory.updated_at < at)
            && self.said_after.is_none_or(|at| memory.said_at > at)
            && self.said_before.is_none_or(|at| memory.said_at < at)
    }
}

/// A memory as a client asks for it, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewMemory {
    /// The id the client chose (Agent Engine's `memoryId`); `None`: a new one.
    pub id: Option<Uuid>,
    pub scope: Scope,
    pub fact: String,
    pub topic: Option<String>,
    pub confidence: Option<f64>,
    pub source_session_id: Option<Uuid>,
    pub source_event_ids: Vec<Uuid>,
    pub metadata: Map<String, Value>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was said (an import of older conversations); `None`: now.
    pub said_at: Option<DateTime<Utc>>,
}

/// A change to a memory: absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct MemoryPatch {
    pub fact: Option<String>,
    /// `Some(None)` clears the topic.
    pub topic: Option<Option<String>>,
    pub confidence: Option<f64>,
    /// Replaces the metadata.
    pub metadata: Option<Map<String, Value>>,
    pub ttl_seconds: Option<i64>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub said_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct MemoryPage {
    pub memories: Vec<Memory>,
    pub next_cursor: Option<crate::PageCursor>,
}

/// A memory in whatever state it is: live, deleted (history kept) or expired.
#[derive(Debug, Clone)]
pub struct StoredMemory {
    pub memory: Memory,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Persistence of memories, their revisions and their search indexes. Every write carries its
/// revision and is atomic with it.
///
/// Every change goes through [`write`](MemoryStore::write), jobs' included (a job's completion
/// writes memories): that is the one method a decorator ([`crate::StoreLayer`]) intercepts. The
/// typed methods below it (`insert_memory` and so on) are shorthands for one [`Write`] each;
/// implementations do not override them.
#[async_trait::async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Applies one write; answers what it wrote and the records it changed.
    async fn write(&self, write: Write) -> crate::Result<WriteOutcome>;

    /// A memory in any state; `None` if it never existed or was purged.
    async fn find_memory(&self, org: &OrgId, id: Uuid) -> crate::Result<Option<StoredMemory>>;
    /// Live memories (not deleted, not expired) among `ids`, in no particular order.
    async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> crate::Result<Vec<Memory>>;
    /// Live memories of one scope, newest first.
    /// Live memories of one scope, or with `scope_key` `None` of every scope of the org,
    /// newest first.
    async fn list_memories(
        &self,
        org: &OrgId,
        scope_key: Option<&str>,
        filter: &MemoryFilter,
        cursor: Option<crate::PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> crate::Result<MemoryPage>;
    /// Oldest first.
    async fn list_revisions(&self, org: &OrgId, memory_id: Uuid) -> crate::Result<Vec<Revision>>;
    /// BM25 relevance of live memories of a scope to `query`, best first (higher is better).
    async fn lexical_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        query: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> crate::Result<Vec<(Uuid, f64)>>;
    /// Cosine similarity of memories of a scope to `vector`, best first. May include memories
    /// that are no longer live; callers re-check through `get_memories`.
    async fn vector_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> crate::Result<Vec<(Uuid, f64)>>;
    /// For those of `ids` that have passages ([`crate::embed::MemoryVectors`]), the cosine
    /// similarity of their best passage to `vector`: how the candidates an index outside the
    /// store found by their facts' vectors are scored again (each as the better of the two).
    async fn passage_similarities(
        &self,
        org: &OrgId,
        ids: &[Uuid],
        vector: &[f32],
    ) -> crate::Result<HashMap<Uuid, f64>>;
    /// The model every stored vector came from, once any was stored.
    async fn embedding_model(&self) -> crate::Result<Option<(String, usize)>>;
    async fn count_memories(&self) -> crate::Result<u64>;
    /// For re-embedding: `(id, fact)` of every memory record after `after`, in id order.
    async fn memory_facts_after(&self, after: Option<Uuid>, limit: u32) -> crate::Result<Vec<(Uuid, String)>>;

    async fn insert_memory(
        &self,
        memory: Memory,
        embedding: MemoryVectors,
        revision: Revision,
    ) -> crate::Result<Memory> {
        self.write(Write::InsertMemory { memory, embedding, revision }).await?.memory()
    }
    /// Replaces the fields (and the embedding, when given) of a live memory.
    async fn update_memory(
        &self,
        memory: Memory,
        embedding: Option<MemoryVectors>,
        revision: Revision,
        now: DateTime<Utc>,
    ) -> crate::Result<Memory> {
        self.write(Write::UpdateMemory { memory, embedding, revision, now }).await?.memory()
    }
    /// Marks a live memory deleted; its record and history stay, for `restore`.
    async fn delete_memory(&self, org: &OrgId, id: Uuid, revision: Revision, now: DateTime<Utc>) -> crate::Result<()> {
        self.write(Write::DeleteMemory { org: org.clone(), id, revision, now }).await?.done()
    }
    /// Brings a memory (live or deleted) back to `memory`'s fields, live again.
    async fn restore_memory(
        &self,
        memory: Memory,
        embedding: MemoryVectors,
        revision: Revision,
    ) -> crate::Result<Memory> {
        self.write(Write::RestoreMemory { memory, embedding, revision }).await?.memory()
    }
    /// Erases a memory and all its revisions.
    async fn purge_memory(&self, org: &OrgId, id: Uuid) -> crate::Result<()> {
        self.write(Write::PurgeMemory { org: org.clone(), id }).await?.done()
    }
    async fn purge_expired_memories(&self, now: DateTime<Utc>, batch: u32) -> crate::Result<u64> {
        self.write(Write::PurgeExpiredMemories { now, batch }).await?.count()
    }
    async fn set_embedding_model(&self, model_id: &str, dimension: usize) -> crate::Result<()> {
        self.write(Write::SetEmbeddingModel { model_id: model_id.to_owned(), dimension }).await?.done()
    }
    async fn set_embeddings(&self, embeddings: Vec<(Uuid, MemoryVectors)>) -> crate::Result<()> {
        self.write(Write::SetEmbeddings { embeddings }).await?.done()
    }
}
