//! Read-through caching of the stores: decorators that serve reads of sessions, memories and
//! jobs from a shared [`Cache`] and move the matching cache families to a new generation after
//! every write, whatever its result (a failed or timed-out write may still have committed).
//!
//! Families are keyed by record id alone (ids are random UUIDs); a cached record's org is
//! compared with the caller's on every hit, so the cache never crosses orgs. Expiry is checked
//! on every hit against the caller's `now`, so a record that expired while cached reads as gone,
//! as it does from the store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cache::{Cache, ttl};
use crate::generation::{CommitResult, Job, JobCompletion, JobStore, LlmUsage, MemoryChange};
use crate::memory::{MemoryPage, StoredMemory};
use crate::{
    Error, Event, Memory, MemoryFilter, MemoryStore, NewEvent, OrgId, PageCursor, Result, Revision, Session,
    SessionFilter, SessionPage, SessionStore,
};

/// The cache family of one session: its reads with and without events.
fn session_family(id: Uuid) -> String {
    format!("session:{id}")
}

fn memory_family(id: Uuid) -> String {
    format!("memory:{id}")
}

fn job_family(id: Uuid) -> String {
    format!("job:{id}")
}

/// The cache family of everything derived from a scope's memories as a whole (search rankings).
pub fn scope_family(org: &OrgId, scope_key: &str) -> String {
    format!("scope:{}", short_hash(&[org.as_str(), scope_key]))
}

/// A hex SHA-256 prefix of the parts, separated so that ("ab", "c") and ("a", "bc") differ.
pub fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// Reads and writes typed values through a [`Cache`], counting hits, misses and errors. A cache
/// that fails is a miss: the store answers.
#[derive(Clone)]
pub struct CacheLayer {
    cache: Arc<dyn Cache>,
}

/// A value found in the cache, or the generation to store a fresh one under.
pub enum Cached<T> {
    Hit(T),
    Miss(Option<u64>),
}

impl CacheLayer {
    pub fn new(cache: Arc<dyn Cache>) -> CacheLayer {
        CacheLayer { cache }
    }

    pub async fn get<T: DeserializeOwned>(&self, kind: &'static str, family: &str, key: &str) -> Cached<T> {
        match self.cache.get(family, key).await {
            Ok(lookup) => match lookup.value.as_deref().map(serde_json::from_slice::<T>) {
                Some(Ok(value)) => {
                    metrics::counter!("cache_hits_total", "kind" => kind).increment(1);
                    Cached::Hit(value)
                }
                found => {
                    if let Some(Err(err)) = found {
                        tracing::warn!(kind, error = %err, "a cached value did not decode; reading the store");
                    }
                    metrics::counter!("cache_misses_total", "kind" => kind).increment(1);
                    Cached::Miss(Some(lookup.generation))
                }
            },
            Err(err) => {
                tracing::debug!(kind, error = %err, "cache read failed; reading the store");
                metrics::counter!("cache_misses_total", "kind" => kind).increment(1);
                Cached::Miss(None)
            }
        }
    }

    /// Stores `value` under the generation a miss returned; nothing if the cache had failed.
    pub async fn put<T: Serialize>(&self, family: &str, generation: Option<u64>, key: &str, value: &T, ttl: Duration) {
        let Some(generation) = generation else { return };
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        if let Err(err) = self.cache.put(family, generation, key, &bytes, ttl).await {
            tracing::debug!(error = %err, "cache write failed");
        }
    }

    pub async fn invalidate(&self, families: Vec<String>) {
        if families.is_empty() {
            return;
        }
        if let Err(err) = self.cache.invalidate(&families).await {
            // The write itself succeeded; a value cached before it may be served until its TTL.
            tracing::warn!(error = %err, ?families, "cache invalidation failed; cached reads may be stale until they expire");
        }
    }
}

fn expired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// A [`SessionStore`] that caches `get_session` (with or without events).
pub struct CachedSessionStore {
    inner: Arc<dyn SessionStore>,
    cache: CacheLayer,
}

impl CachedSessionStore {
    pub fn new(inner: Arc<dyn SessionStore>, cache: CacheLayer) -> CachedSessionStore {
        CachedSessionStore { inner, cache }
    }
}

#[async_trait]
impl SessionStore for CachedSessionStore {
    async fn create_session(&self, session: Session) -> Result<Session> {
        self.inner.create_session(session).await
    }

    async fn get_session(
        &self,
        org: &OrgId,
        id: Uuid,
        events_limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let family = session_family(id);
        let key = match events_limit {
            None => "bare".to_owned(),
            Some(limit) => format!("events:{limit}"),
        };
        let generation = match self.cache.get::<Session>("session", &family, &key).await {
            Cached::Hit(session) if &session.org_id == org => {
                if expired(session.expires_at, now) {
                    return Err(Error::session_not_found());
                }
                return Ok(session);
            }
            Cached::Hit(_) => return Err(Error::session_not_found()),
            Cached::Miss(generation) => generation,
        };
        let session = self.inner.get_session(org, id, events_limit, now).await?;
        self.cache.put(&family, generation, &key, &session, ttl::SESSION).await;
        Ok(session)
    }

    async fn list_sessions(&self, org: &OrgId, filter: &SessionFilter, now: DateTime<Utc>) -> Result<SessionPage> {
        self.inner.list_sessions(org, filter, now).await
    }

    async fn append_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let appended = self.inner.append_events(org, session_id, events, now).await;
        self.cache.invalidate(vec![session_family(session_id)]).await;
        appended
    }

    async fn list_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        self.inner.list_events(org, session_id, after_seq, limit, now).await
    }

    async fn patch_state(
        &self,
        org: &OrgId,
        session_id: Uuid,
        patch: Value,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let patched = self.inner.patch_state(org, session_id, patch, max_state_bytes, now).await;
        self.cache.invalidate(vec![session_family(session_id)]).await;
        patched
    }

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let deleted = self.inner.delete_session(org, id, now).await;
        self.cache.invalidate(vec![session_family(id)]).await;
        deleted
    }

    /// Only expired sessions are purged, and cached ones are checked for expiry on every hit.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        self.inner.purge_expired_sessions(now, batch).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// A [`MemoryStore`] and [`JobStore`] that cache reads of one memory and of a job, and
/// invalidate a memory, its scope's search rankings and a job on every write that touches them.
pub struct CachedMemoryStore {
    memories: Arc<dyn MemoryStore>,
    jobs: Arc<dyn JobStore>,
    cache: CacheLayer,
}

impl CachedMemoryStore {
    pub fn new(memories: Arc<dyn MemoryStore>, jobs: Arc<dyn JobStore>, cache: CacheLayer) -> CachedMemoryStore {
        CachedMemoryStore { memories, jobs, cache }
    }

    fn families_of(memory: &Memory) -> Vec<String> {
        vec![memory_family(memory.id), scope_family(&memory.org_id, &crate::memory::scope_key(&memory.scope))]
    }

    /// The families a change by id touches; the memory is looked up first, as its scope is
    /// needed and a purge leaves nothing to look up afterwards.
    async fn families_of_id(&self, org: &OrgId, id: Uuid) -> Vec<String> {
        match self.memories.find_memory(org, id).await {
            Ok(Some(stored)) => CachedMemoryStore::families_of(&stored.memory),
            _ => vec![memory_family(id)],
        }
    }
}

#[async_trait]
impl MemoryStore for CachedMemoryStore {
    async fn insert_memory(&self, memory: Memory, embedding: Vec<f32>, revision: Revision) -> Result<Memory> {
        let families = CachedMemoryStore::families_of(&memory);
        let inserted = self.memories.insert_memory(memory, embedding, revision).await;
        self.cache.invalidate(families).await;
        inserted
    }

    async fn update_memory(
        &self,
        memory: Memory,
        embedding: Option<Vec<f32>>,
        revision: Revision,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let families = CachedMemoryStore::families_of(&memory);
        let updated = self.memories.update_memory(memory, embedding, revision, now).await;
        self.cache.invalidate(families).await;
        updated
    }

    async fn delete_memory(&self, org: &OrgId, id: Uuid, revision: Revision, now: DateTime<Utc>) -> Result<()> {
        let families = self.families_of_id(org, id).await;
        let deleted = self.memories.delete_memory(org, id, revision, now).await;
        self.cache.invalidate(families).await;
        deleted
    }

    async fn restore_memory(&self, memory: Memory, embedding: Vec<f32>, revision: Revision) -> Result<Memory> {
        let families = CachedMemoryStore::families_of(&memory);
        let restored = self.memories.restore_memory(memory, embedding, revision).await;
        self.cache.invalidate(families).await;
        restored
    }

    async fn purge_memory(&self, org: &OrgId, id: Uuid) -> Result<()> {
        let families = self.families_of_id(org, id).await;
        let purged = self.memories.purge_memory(org, id).await;
        self.cache.invalidate(families).await;
        purged
    }

    async fn find_memory(&self, org: &OrgId, id: Uuid) -> Result<Option<StoredMemory>> {
        self.memories.find_memory(org, id).await
    }

    /// One id (`GET /memories/{id}`) reads through the cache; several (a search's candidates)
    /// go to the store in one query.
    async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Memory>> {
        let &[id] = ids else { return self.memories.get_memories(org, ids, now).await };
        let family = memory_family(id);
        let generation = match self.cache.get::<Memory>("memory", &family, "live").await {
            Cached::Hit(memory) if &memory.org_id == org => {
                return Ok(if expired(memory.expires_at, now) { Vec::new() } else { vec![memory] });
            }
            Cached::Hit(_) => return Ok(Vec::new()),
            Cached::Miss(generation) => generation,
        };
        let found = self.memories.get_memories(org, ids, now).await?;
        if let [memory] = found.as_slice() {
            self.cache.put(&family, generation, "live", memory, ttl::MEMORY).await;
        }
        Ok(found)
    }

    async fn list_memories(
        &self,
        org: &OrgId,
        scope_key: &str,
        filter: &MemoryFilter,
        cursor: Option<PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<MemoryPage> {
        self.memories.list_memories(org, scope_key, filter, cursor, limit, now).await
    }

    async fn list_revisions(&self, org: &OrgId, memory_id: Uuid) -> Result<Vec<Revision>> {
        self.memories.list_revisions(org, memory_id).await
    }

    async fn lexical_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        query: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, f64)>> {
        self.memories.lexical_candidates(org, scope_key, query, limit, now).await
    }

    async fn vector_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        self.memories.vector_candidates(org, scope_key, vector, limit).await
    }

    /// Only expired memories are purged, and cached ones are checked for expiry on every hit.
    async fn purge_expired_memories(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        self.memories.purge_expired_memories(now, batch).await
    }

    async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        self.memories.embedding_model().await
    }

    async fn set_embedding_model(&self, model_id: &str, dimension: usize) -> Result<()> {
        self.memories.set_embedding_model(model_id, dimension).await
    }

    async fn count_memories(&self) -> Result<u64> {
        self.memories.count_memories().await
    }

    async fn memory_facts_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<(Uuid, String)>> {
        self.memories.memory_facts_after(after, limit).await
    }

    /// Re-embedding changes rankings, not records; search rankings are cached per embedding
    /// model, and `reindex` moves to another model.
    async fn set_embeddings(&self, embeddings: Vec<(Uuid, Vec<f32>)>) -> Result<()> {
        self.memories.set_embeddings(embeddings).await
    }
}

#[async_trait]
impl JobStore for CachedMemoryStore {
    async fn enqueue_job(&self, job: Job) -> Result<Job> {
        self.jobs.enqueue_job(job).await
    }

    async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        let family = job_family(id);
        let generation = match self.cache.get::<Job>("job", &family, "job").await {
            Cached::Hit(job) => return Ok(Some(job).filter(|job| &job.org_id == org)),
            Cached::Miss(generation) => generation,
        };
        let job = self.jobs.get_job(org, id).await?;
        if let Some(job) = &job {
            self.cache.put(&family, generation, "job", job, ttl::JOB).await;
        }
        Ok(job)
    }

    async fn claim_job(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<Job>> {
        let claimed = self.jobs.claim_job(now, lease_until).await?;
        if let Some(job) = &claimed {
            self.cache.invalidate(vec![job_family(job.id)]).await;
        }
        Ok(claimed)
    }

    async fn renew_lease(&self, id: Uuid, attempt: u32, lease_until: DateTime<Utc>) -> Result<bool> {
        let renewed = self.jobs.renew_lease(id, attempt, lease_until).await;
        self.cache.invalidate(vec![job_family(id)]).await;
        renewed
    }

    async fn complete_job(&self, completion: JobCompletion) -> Result<CommitResult> {
        let mut families = vec![job_family(completion.job_id)];
        for change in &completion.changes {
            match change {
                MemoryChange::Insert { memory, .. } | MemoryChange::Update { memory, .. } => {
                    families.extend(CachedMemoryStore::families_of(memory));
                }
                MemoryChange::Delete { id, .. } => families.extend(self.families_of_id(&completion.org_id, *id).await),
            }
        }
        families.sort();
        families.dedup();
        let completed = self.jobs.complete_job(completion).await;
        self.cache.invalidate(families).await;
        completed
    }

    async fn fail_job(
        &self,
        id: Uuid,
        attempt: u32,
        error: &str,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let failed = self.jobs.fail_job(id, attempt, error, llm_usage, retry_at, now).await;
        self.cache.invalidate(vec![job_family(id)]).await;
        failed
    }

    async fn generation_watermark(&self, org: &OrgId, session_id: Uuid, scope_key: &str) -> Result<i64> {
        self.jobs.generation_watermark(org, session_id, scope_key).await
    }

    async fn count_unfinished_jobs(&self) -> Result<u64> {
        self.jobs.count_unfinished_jobs().await
    }

    async fn purge_finished_jobs(&self, finished_before: DateTime<Utc>, batch: u32) -> Result<Vec<Uuid>> {
        let purged = self.jobs.purge_finished_jobs(finished_before, batch).await?;
        self.cache.invalidate(purged.iter().map(|id| job_family(*id)).collect()).await;
        Ok(purged)
    }
}
