//! Read-through caching of the stores: decorators that serve reads of sessions, memories and
//! jobs from a shared [`Cache`] and move the matching cache families to a new generation after
//! every write, whatever its result (a failed or timed-out write may still have committed).
//!
//! Families are keyed by record id alone (ids are random UUIDs); a cached record's org is
//! compared with the caller's on every hit, so the cache never crosses orgs. Expiry is checked
//! on every hit against the caller's `now`, so a record that expired while cached reads as gone,
//! as it does from the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cache::{Cache, ttl};
use crate::generation::{Job, JobStore, MemoryChange};
use crate::{
    Error, Event, Layered, Memory, NewEvent, OrgId, Result, Session, SessionFilter, SessionPage, SessionStore,
    StoreLayer, Write, WriteOutcome,
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
    spawn: Spawner,
}

/// Runs a future to completion on its own (`tokio::spawn` in the server): core has no runtime.
pub type Spawner = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// The invalidation a write owes the cache: `finish` performs it after the write; dropped
/// unfinished (the write's caller gave up, e.g. a request timeout, while the write may still
/// commit), it is performed in the background all the same.
#[must_use]
pub struct Invalidation {
    pending: Option<(Arc<dyn Cache>, Vec<String>)>,
    spawn: Spawner,
}

impl Invalidation {
    pub async fn finish(mut self) {
        if let Some((cache, families)) = self.pending.take() {
            invalidate(cache.as_ref(), families).await;
        }
    }
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        if let Some((cache, families)) = self.pending.take() {
            (self.spawn)(Box::pin(async move { invalidate(cache.as_ref(), families).await }));
        }
    }
}

async fn invalidate(cache: &dyn Cache, families: Vec<String>) {
    if families.is_empty() {
        return;
    }
    if let Err(err) = cache.invalidate(&families).await {
        // The write itself succeeded; a value cached before it may be served until its TTL.
        tracing::warn!(error = %err, ?families, "cache invalidation failed; cached reads may be stale until they expire");
    }
}

/// A value found in the cache, or the generation to store a fresh one under.
pub enum Cached<T> {
    Hit(T),
    Miss(Option<u64>),
}

impl CacheLayer {
    pub fn new(cache: Arc<dyn Cache>, spawn: Spawner) -> CacheLayer {
        CacheLayer { cache, spawn }
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

    /// The invalidation of `families` a write owes; take it before the write, finish it after.
    pub fn invalidation(&self, families: Vec<String>) -> Invalidation {
        Invalidation { pending: Some((self.cache.clone(), families)), spawn: self.spawn.clone() }
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
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<crate::Appended> {
        let invalidation = self.cache.invalidation(vec![session_family(session_id)]);
        let appended = self.inner.append_events(org, session_id, events, max_state_bytes, now).await;
        invalidation.finish().await;
        appended
    }

    async fn marker_events(&self, org: &OrgId, session_id: Uuid, limit: u32, now: DateTime<Utc>) -> Result<Vec<Event>> {
        self.inner.marker_events(org, session_id, limit, now).await
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
        patch: crate::session::SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let invalidation = self.cache.invalidation(vec![session_family(session_id)]);
        let patched = self.inner.patch_state(org, session_id, patch, max_state_bytes, now).await;
        invalidation.finish().await;
        patched
    }

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let invalidation = self.cache.invalidation(vec![session_family(id)]);
        let deleted = self.inner.delete_session(org, id, now).await;
        invalidation.finish().await;
        // The descendants that went with it are known only now; a read of one of them that
        // starts after the delete finds nothing in the store.
        if let Ok(ids) = &deleted {
            let descendants = ids.iter().filter(|deleted| **deleted != id).map(|id| session_family(*id)).collect();
            self.cache.invalidation(descendants).finish().await;
        }
        deleted
    }

    async fn state_history(
        &self,
        org: &OrgId,
        session_id: Uuid,
        through_seq: i64,
        now: DateTime<Utc>,
    ) -> Result<crate::StateHistory> {
        self.inner.state_history(org, session_id, through_seq, now).await
    }

    async fn fork_session(
        &self,
        org: &OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Session,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.inner.fork_session(org, source_id, through_seq, fork, now).await
    }

    async fn invocation_span(
        &self,
        org: &OrgId,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, i64)>> {
        self.inner.invocation_span(org, session_id, invocation_id, now).await
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
pub type CachedMemoryStore = Layered<MemoryCaching>;

impl CachedMemoryStore {
    pub fn new(inner: Arc<dyn JobStore>, cache: CacheLayer) -> CachedMemoryStore {
        Layered::with(inner, MemoryCaching { cache })
    }
}

/// The caching of [`CachedMemoryStore`]: single-record reads of memories and jobs.
pub struct MemoryCaching {
    cache: CacheLayer,
}

impl MemoryCaching {
    fn families_of(memory: &Memory) -> Vec<String> {
        vec![memory_family(memory.id), scope_family(&memory.org_id, &crate::memory::scope_key(&memory.scope))]
    }

    /// The families a change by id touches; the memory is looked up first, as its scope is
    /// needed and a purge leaves nothing to look up afterwards.
    async fn families_of_id(inner: &dyn JobStore, org: &OrgId, id: Uuid) -> Vec<String> {
        match inner.find_memory(org, id).await {
            Ok(Some(stored)) => MemoryCaching::families_of(&stored.memory),
            _ => vec![memory_family(id)],
        }
    }

    /// The families a write will change, known before it applies. Expired memories are purged
    /// without invalidation (cached ones are checked for expiry on every hit); re-embedding
    /// changes rankings, not records (rankings are cached per embedding model); publication is
    /// not part of a job's visible state.
    async fn families_written(inner: &dyn JobStore, write: &Write) -> Vec<String> {
        let mut families = Vec::new();
        match write {
            Write::InsertMemory { memory, .. }
            | Write::UpdateMemory { memory, .. }
            | Write::RestoreMemory { memory, .. } => families.extend(MemoryCaching::families_of(memory)),
            Write::DeleteMemory { org, id, .. } | Write::PurgeMemory { org, id } => {
                families.extend(MemoryCaching::families_of_id(inner, org, *id).await);
            }
            Write::CompleteJob { completion } => {
                families.push(job_family(completion.job_id));
                for change in &completion.changes {
                    match change {
                        MemoryChange::Insert { memory, .. } | MemoryChange::Update { memory, .. } => {
                            families.extend(MemoryCaching::families_of(memory));
                        }
                        MemoryChange::Delete { id, .. } => {
                            families.extend(MemoryCaching::families_of_id(inner, &completion.org_id, *id).await);
                        }
                    }
                }
            }
            Write::ClaimJob { only: Some(id), .. } | Write::RenewLease { id, .. } | Write::FailJob { id, .. } => {
                families.push(job_family(*id));
            }
            Write::ClaimJob { only: None, .. }
            | Write::PurgeExpiredMemories { .. }
            | Write::SetEmbeddingModel { .. }
            | Write::SetEmbeddings { .. }
            | Write::EnqueueJob { .. }
            | Write::MarkPublished { .. }
            | Write::PurgeFinishedJobs { .. } => {}
        }
        families.sort();
        families.dedup();
        families
    }
}

#[async_trait]
impl StoreLayer for MemoryCaching {
    /// Invalidates what the write will change whatever its result, and after it succeeds the
    /// jobs only its answer names (the one a claim took, those a purge removed).
    async fn write(&self, inner: &dyn JobStore, write: Write) -> Result<WriteOutcome> {
        let families = MemoryCaching::families_written(inner, &write).await;
        let invalidation = self.cache.invalidation(families.clone());
        let written = inner.write(write).await;
        invalidation.finish().await;
        let written = written?;
        let named_after: Vec<String> =
            written.touched.jobs.iter().map(|id| job_family(*id)).filter(|family| !families.contains(family)).collect();
        if !named_after.is_empty() {
            self.cache.invalidation(named_after).finish().await;
        }
        Ok(written)
    }

    /// One id (`GET /memories/{id}`) reads through the cache; several (a search's candidates)
    /// go to the store in one query.
    async fn get_memories(
        &self,
        inner: &dyn JobStore,
        org: &OrgId,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<Memory>> {
        let &[id] = ids else { return inner.get_memories(org, ids, now).await };
        let family = memory_family(id);
        let generation = match self.cache.get::<Memory>("memory", &family, "live").await {
            Cached::Hit(memory) if &memory.org_id == org => {
                return Ok(if expired(memory.expires_at, now) { Vec::new() } else { vec![memory] });
            }
            Cached::Hit(_) => return Ok(Vec::new()),
            Cached::Miss(generation) => generation,
        };
        let found = inner.get_memories(org, ids, now).await?;
        if let [memory] = found.as_slice() {
            self.cache.put(&family, generation, "live", memory, ttl::MEMORY).await;
        }
        Ok(found)
    }

    async fn get_job(&self, inner: &dyn JobStore, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        let family = job_family(id);
        let generation = match self.cache.get::<Job>("job", &family, "job").await {
            Cached::Hit(job) => return Ok(Some(job).filter(|job| &job.org_id == org)),
            Cached::Miss(generation) => generation,
        };
        let job = inner.get_job(org, id).await?;
        if let Some(job) = &job {
            self.cache.put(&family, generation, "job", job, ttl::JOB).await;
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use crate::MemoryVectors;
    use std::collections::HashMap;
    use std::slice;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::TimeZone;
    use serde_json::{Map, json};

    use super::*;
    use crate::cache::{CacheError, CacheLookup};
    use crate::generation::{CommitResult, GenerationConfig, JobCompletion, JobOutcome, JobStatus, Source};
    use crate::memory::{MemoryFilter, MemoryPage, MemorySnapshot, RevisionAction, StoredMemory, scope_key};
    use crate::{MemoryStore, PageCursor, Resource, Revision, Role, Scope, Written};

    #[tokio::test]
    async fn session_reads_are_cached_until_a_write() {
        for write in SessionWrite::ALL {
            check_session_write(false, write, (2, 4)).await;
        }
    }

    #[tokio::test]
    async fn memory_reads_are_cached_until_a_write_which_also_invalidates_the_scope() {
        for write in MemoryWrite::ALL {
            check_memory_write(false, write, (1, 2)).await;
        }
    }

    #[tokio::test]
    async fn job_reads_are_cached_until_a_write() {
        for write in JobWrite::ALL {
            check_job_write(false, write, (1, 2)).await;
        }
    }

    #[tokio::test]
    async fn with_the_cache_down_reads_and_writes_go_to_the_stores() {
        for write in SessionWrite::ALL {
            check_session_write(true, write, (4, 6)).await;
        }
        for write in MemoryWrite::ALL {
            check_memory_write(true, write, (2, 3)).await;
        }
        for write in JobWrite::ALL {
            check_job_write(true, write, (2, 3)).await;
        }
    }

    #[tokio::test]
    async fn a_stale_session_stored_after_a_write_is_never_read() {
        for write in SessionWrite::ALL {
            let fixture = Fixture::new(false);
            let org = OrgId::new("a");
            let id = fixture.sessions.create_session(session(&org, None)).await.unwrap().id;
            let family = session_family(id);
            let Cached::Miss(generation) = fixture.layer.get::<Session>("session", &family, "bare").await else {
                panic!("nothing is cached yet");
            };
            let stale = fixture.sessions.get_session(&org, id, None, now()).await.unwrap();
            write.apply(&fixture.session_store, &org, id).await.unwrap();
            fixture.layer.put(&family, generation, "bare", &stale, ttl::SESSION).await;
            let read = fixture.session_store.get_session(&org, id, None, now()).await.ok();
            assert_eq!(read, fixture.sessions.stored(id), "{write:?}");
        }
    }

    #[tokio::test]
    async fn a_stale_memory_stored_after_a_write_is_never_read() {
        for write in MemoryWrite::ALL {
            let fixture = Fixture::new(false);
            let memory = fixture
                .memory_store
                .insert_memory(memory(&OrgId::new("a"), None), MemoryVectors::default(), dummy_revision())
                .await;
            let memory = memory.unwrap();
            let family = memory_family(memory.id);
            let Cached::Miss(generation) = fixture.layer.get::<Memory>("memory", &family, "live").await else {
                panic!("nothing is cached yet");
            };
            write.apply(&fixture.memory_store, &memory).await.unwrap();
            fixture.layer.put(&family, generation, "live", &memory, ttl::MEMORY).await;
            let read = fixture.memory_store.get_memories(&memory.org_id, &[memory.id], now()).await.unwrap();
            assert_eq!(read, fixture.memories.live(&memory.org_id, &[memory.id], now()), "{write:?}");
        }
    }

    #[tokio::test]
    async fn a_read_during_a_write_never_caches_the_old_value() {
        for write in SessionWrite::ALL {
            let fixture = Fixture::new(false);
            let org = OrgId::new("a");
            let id = fixture.session_store.create_session(session(&org, None)).await.unwrap().id;
            let reader = CachedSessionStore::new(fixture.sessions.clone(), fixture.layer.clone());
            *fixture.sessions.reader.lock().unwrap() = Some(Arc::new(reader));
            write.apply(&fixture.session_store, &org, id).await.unwrap();
            assert_eq!(fixture.sessions.n_gets(), 1, "{write:?}: the reader read the store during the write");
            let read = fixture.session_store.get_session(&org, id, None, now()).await.ok();
            assert_eq!(read, fixture.sessions.stored(id), "{write:?}");
        }
    }

    #[tokio::test]
    async fn a_write_that_committed_but_was_cancelled_still_invalidates() {
        let fixture = Fixture::new(false);
        let org = OrgId::new("a");
        let id = fixture.session_store.create_session(session(&org, None)).await.unwrap().id;
        fixture.session_store.get_session(&org, id, None, now()).await.unwrap();
        fixture.sessions.hang_after_write.store(true, Ordering::SeqCst);
        // A request timeout drops the write after the store committed it.
        let patch = fixture.session_store.patch_state(&org, id, json!({"step": 2}).into(), 1 << 20, now());
        assert!(tokio::time::timeout(Duration::from_millis(10), patch).await.is_err());
        // The invalidation runs in the background; let it.
        tokio::task::yield_now().await;
        let read = fixture.session_store.get_session(&org, id, None, now()).await.ok();
        assert_eq!(read.map(|session| session.state), fixture.sessions.stored(id).map(|session| session.state));
        assert_eq!(fixture.sessions.stored(id).unwrap().state["step"], 2);
    }

    #[tokio::test]
    async fn cached_records_are_invisible_to_other_orgs() {
        let fixture = Fixture::new(false);
        let (org, other) = (OrgId::new("a"), OrgId::new("b"));
        let session = fixture.session_store.create_session(session(&org, None)).await.unwrap();
        let memory = fixture
            .memory_store
            .insert_memory(memory(&org, None), MemoryVectors::default(), dummy_revision())
            .await
            .unwrap();
        let job = fixture.memory_store.enqueue_job(job(&org, JobStatus::Pending)).await.unwrap();

        assert_eq!(fixture.session_store.get_session(&org, session.id, None, now()).await.unwrap(), session);
        assert_eq!(
            fixture.memory_store.get_memories(&org, &[memory.id], now()).await.unwrap(),
            slice::from_ref(&memory)
        );
        assert_eq!(fixture.memory_store.get_job(&org, job.id).await.unwrap(), Some(job.clone()));

        let read = fixture.session_store.get_session(&other, session.id, None, now()).await;
        assert!(matches!(read, Err(Error::NotFound { resource: Resource::Session })), "{read:?}");
        assert_eq!(fixture.memory_store.get_memories(&other, &[memory.id], now()).await.unwrap(), []);
        assert_eq!(fixture.memory_store.get_job(&other, job.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cached_records_at_or_past_their_expiry_read_as_gone() {
        let fixture = Fixture::new(false);
        let org = OrgId::new("a");
        let expires_at = now() + chrono::Duration::hours(1);
        let session = fixture.session_store.create_session(session(&org, Some(expires_at))).await.unwrap();
        let memory = memory(&org, Some(expires_at));
        let memory =
            fixture.memory_store.insert_memory(memory, MemoryVectors::default(), dummy_revision()).await.unwrap();
        assert!(fixture.session_store.get_session(&org, session.id, None, now()).await.is_ok());
        assert_eq!(
            fixture.memory_store.get_memories(&org, &[memory.id], now()).await.unwrap(),
            slice::from_ref(&memory)
        );

        for at in [expires_at, expires_at + chrono::Duration::hours(1)] {
            let read = fixture.session_store.get_session(&org, session.id, None, at).await;
            assert!(matches!(read, Err(Error::NotFound { resource: Resource::Session })), "at {at}: {read:?}");
            assert_eq!(fixture.memory_store.get_memories(&org, &[memory.id], at).await.unwrap(), [], "at {at}");
        }
        // The cache answered: its hits check expiry themselves.
        assert_eq!((fixture.sessions.n_gets(), fixture.memories.n_memory_gets()), (1, 1));
    }

    #[tokio::test]
    async fn a_failed_write_still_invalidates() {
        let fixture = Fixture::new(false);
        let id = Uuid::new_v4();
        let family = session_family(id);
        assert!(fixture.session_store.delete_session(&OrgId::new("a"), id, now()).await.is_err());
        assert_eq!(fixture.cache.generation(&family), 1);
    }

    #[tokio::test]
    async fn deleting_a_parent_invalidates_its_cached_descendants() {
        let fixture = Fixture::new(false);
        let org = OrgId::new("a");
        let parent = fixture.session_store.create_session(session(&org, None)).await.unwrap();
        let child = Session { id: Uuid::new_v4(), parent_session_id: Some(parent.id), ..session(&org, None) };
        let child = fixture.session_store.create_session(child).await.unwrap();
        let grandchild = Session { id: Uuid::new_v4(), parent_session_id: Some(child.id), ..session(&org, None) };
        let grandchild = fixture.session_store.create_session(grandchild).await.unwrap();
        for id in [child.id, grandchild.id] {
            fixture.session_store.get_session(&org, id, None, now()).await.unwrap();
            fixture.session_store.get_session(&org, id, None, now()).await.unwrap();
        }
        assert_eq!(fixture.sessions.n_gets(), 2, "both are cached");

        let deleted = fixture.session_store.delete_session(&org, parent.id, now()).await.unwrap();
        assert_eq!(deleted, [parent.id, child.id, grandchild.id]);
        for id in [child.id, grandchild.id] {
            let read = fixture.session_store.get_session(&org, id, None, now()).await;
            assert!(matches!(read, Err(Error::NotFound { resource: Resource::Session })), "{read:?}");
        }
    }

    /// Creates a session, reads it twice with and without events, writes it and reads it again;
    /// every read must match the store. `expect` is the number of store reads before and after
    /// the write.
    async fn check_session_write(cache_down: bool, write: SessionWrite, expect: (usize, usize)) {
        let fixture = Fixture::new(cache_down);
        let org = OrgId::new("a");
        let created = fixture.session_store.create_session(session(&org, None)).await.unwrap();
        for events_limit in [None, Some(10), None, Some(10)] {
            let read = fixture.session_store.get_session(&org, created.id, events_limit, now()).await.unwrap();
            assert_eq!(read, created, "{write:?}");
        }
        let n_gets_before = fixture.sessions.n_gets();

        write.apply(&fixture.session_store, &org, created.id).await.unwrap();
        let stored = fixture.sessions.stored(created.id);
        assert_ne!(stored.as_ref(), Some(&created), "{write:?} changes the session");
        for events_limit in [None, Some(10)] {
            let read = fixture.session_store.get_session(&org, created.id, events_limit, now()).await.ok();
            assert_eq!(read, stored, "{write:?}, events_limit {events_limit:?}");
        }
        assert_eq!((n_gets_before, fixture.sessions.n_gets()), expect, "{write:?}, cache down: {cache_down}");
    }

    /// As [`check_session_write`], for one memory; with the cache up, the write must also move
    /// the memory's scope family to a new generation.
    async fn check_memory_write(cache_down: bool, write: MemoryWrite, expect: (usize, usize)) {
        let fixture = Fixture::new(cache_down);
        let org = OrgId::new("a");
        let memory =
            fixture.memory_store.insert_memory(memory(&org, None), MemoryVectors::default(), dummy_revision()).await;
        let memory = memory.unwrap();
        for _ in 0..2 {
            assert_eq!(
                fixture.memory_store.get_memories(&org, &[memory.id], now()).await.unwrap(),
                slice::from_ref(&memory)
            );
        }
        let n_gets_before = fixture.memories.n_memory_gets();
        let scope_family = scope_family(&org, &scope_key(&memory.scope));
        let scope_generation = fixture.cache.generation(&scope_family);

        write.apply(&fixture.memory_store, &memory).await.unwrap();
        let stored = fixture.memories.live(&org, &[memory.id], now());
        assert_ne!(stored, slice::from_ref(&memory), "{write:?} changes the memory");
        assert_eq!(fixture.memory_store.get_memories(&org, &[memory.id], now()).await.unwrap(), stored, "{write:?}");
        assert_eq!((n_gets_before, fixture.memories.n_memory_gets()), expect, "{write:?}, cache down: {cache_down}");
        if !cache_down {
            assert!(fixture.cache.generation(&scope_family) > scope_generation, "{write:?} invalidates the scope");
        }
    }

    /// As [`check_session_write`], for one job.
    async fn check_job_write(cache_down: bool, write: JobWrite, expect: (usize, usize)) {
        let fixture = Fixture::new(cache_down);
        let org = OrgId::new("a");
        let job = fixture.memory_store.enqueue_job(job(&org, write.status_before())).await.unwrap();
        for _ in 0..2 {
            assert_eq!(fixture.memory_store.get_job(&org, job.id).await.unwrap(), Some(job.clone()));
        }
        let n_gets_before = fixture.memories.n_job_gets();

        write.apply(&fixture.memory_store, &job).await.unwrap();
        let stored = fixture.memories.jobs.lock().unwrap().get(&job.id).cloned();
        assert_ne!(stored.as_ref(), Some(&job), "{write:?} changes the job");
        assert_eq!(fixture.memory_store.get_job(&org, job.id).await.unwrap(), stored, "{write:?}");
        assert_eq!((n_gets_before, fixture.memories.n_job_gets()), expect, "{write:?}, cache down: {cache_down}");
    }

    #[derive(Debug, Clone, Copy)]
    enum SessionWrite {
        Append,
        Patch,
        Delete,
    }

    impl SessionWrite {
        const ALL: [SessionWrite; 3] = [SessionWrite::Append, SessionWrite::Patch, SessionWrite::Delete];

        async fn apply(self, store: &CachedSessionStore, org: &OrgId, id: Uuid) -> Result<()> {
            match self {
                SessionWrite::Append => {
                    let event = NewEvent::message("user", Role::User, json!("hello"));
                    store.append_events(org, id, vec![event], 1 << 20, now()).await.map(drop)
                }
                SessionWrite::Patch => {
                    store.patch_state(org, id, json!({"step": 2}).into(), 1 << 20, now()).await.map(drop)
                }
                SessionWrite::Delete => store.delete_session(org, id, now()).await.map(|_| ()),
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum MemoryWrite {
        Update,
        Delete,
        Purge,
        /// A job's commit that updates the memory.
        CompleteJob,
    }

    impl MemoryWrite {
        const ALL: [MemoryWrite; 4] =
            [MemoryWrite::Update, MemoryWrite::Delete, MemoryWrite::Purge, MemoryWrite::CompleteJob];

        async fn apply(self, store: &CachedMemoryStore, memory: &Memory) -> Result<()> {
            let changed = Memory { fact: "User likes tea.".to_owned(), ..memory.clone() };
            let org = &memory.org_id;
            match self {
                MemoryWrite::Update => store.update_memory(changed, None, dummy_revision(), now()).await.map(drop),
                MemoryWrite::Delete => store.delete_memory(org, memory.id, dummy_revision(), now()).await,
                MemoryWrite::Purge => store.purge_memory(org, memory.id).await,
                MemoryWrite::CompleteJob => {
                    let change = MemoryChange::Update {
                        memory: changed,
                        expected_updated_at: memory.updated_at,
                        embedding: MemoryVectors::default(),
                        revision: dummy_revision(),
                    };
                    let completion = completion(Uuid::new_v4(), org, vec![change]);
                    assert_eq!(store.complete_job(completion).await?, CommitResult::Committed);
                    Ok(())
                }
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum JobWrite {
        Complete,
        PurgeFinished,
    }

    impl JobWrite {
        const ALL: [JobWrite; 2] = [JobWrite::Complete, JobWrite::PurgeFinished];

        fn status_before(self) -> JobStatus {
            match self {
                JobWrite::Complete => JobStatus::Running,
                JobWrite::PurgeFinished => JobStatus::Completed,
            }
        }

        async fn apply(self, store: &CachedMemoryStore, job: &Job) -> Result<()> {
            match self {
                JobWrite::Complete => {
                    let result = store.complete_job(completion(job.id, &job.org_id, Vec::new())).await?;
                    assert_eq!(result, CommitResult::Committed);
                }
                JobWrite::PurgeFinished => {
                    let purged = store.purge_finished_jobs(now() + chrono::Duration::hours(1), 10).await?;
                    assert_eq!(purged, [job.id]);
                }
            }
            Ok(())
        }
    }

    struct Fixture {
        cache: Arc<MemoryCache>,
        layer: CacheLayer,
        sessions: Arc<FakeSessions>,
        memories: Arc<FakeMemories>,
        session_store: CachedSessionStore,
        memory_store: CachedMemoryStore,
    }

    impl Fixture {
        fn new(cache_down: bool) -> Fixture {
            let cache = Arc::new(MemoryCache::default());
            cache.down.store(cache_down, Ordering::SeqCst);
            let layer = CacheLayer::new(cache.clone(), Arc::new(|future| drop(tokio::spawn(future))));
            let sessions = Arc::new(FakeSessions::default());
            let memories = Arc::new(FakeMemories::default());
            let session_store = CachedSessionStore::new(sessions.clone(), layer.clone());
            let memory_store = CachedMemoryStore::new(memories.clone(), layer.clone());
            Fixture { cache, layer, sessions, memories, session_store, memory_store }
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn scope() -> Scope {
        Scope::from([("user_id".to_owned(), "u1".to_owned())])
    }

    fn session(org: &OrgId, expires_at: Option<DateTime<Utc>>) -> Session {
        Session {
            org_id: org.clone(),
            id: Uuid::new_v4(),
            user_id: "u1".to_owned(),
            agent_id: None,
            scope: scope(),
            state: Map::new(),
            metadata: Map::new(),
            created_at: now(),
            updated_at: now(),
            expires_at,
            event_count: 0,
            token_count: 0,
            compaction: Default::default(),
            parent_session_id: None,
            forked_from: None,
            events: None,
        }
    }

    fn memory(org: &OrgId, expires_at: Option<DateTime<Utc>>) -> Memory {
        Memory {
            org_id: org.clone(),
            id: Uuid::new_v4(),
            scope: scope(),
            fact: "User likes coffee.".to_owned(),
            topic: None,
            confidence: 1.0,
            source_session_id: None,
            source_event_ids: Vec::new(),
            metadata: Map::new(),
            said_at: now(),
            created_at: now(),
            updated_at: now(),
            expires_at,
        }
    }

    /// The fakes record no revisions.
    fn dummy_revision() -> Revision {
        Revision {
            id: Uuid::new_v4(),
            memory_id: Uuid::nil(),
            org_id: OrgId::new("a"),
            action: RevisionAction::Updated,
            before: None,
            after: None::<MemorySnapshot>,
            actor: "test".to_owned(),
            job_id: None,
            cause: None,
            created_at: now(),
        }
    }

    fn job(org: &OrgId, status: JobStatus) -> Job {
        let finished = matches!(status, JobStatus::Completed | JobStatus::Failed);
        Job {
            id: Uuid::new_v4(),
            org_id: org.clone(),
            scope: scope(),
            status,
            source: Source::Memories { facts: Vec::new() },
            config: GenerationConfig::default(),
            actor: "test".to_owned(),
            attempts: 1,
            max_attempts: 3,
            error: None,
            outcome: JobOutcome::default(),
            created_at: now(),
            updated_at: now(),
            started_at: Some(now()),
            finished_at: finished.then(now),
            run_after: now(),
            lease_until: None,
            trace_context: Default::default(),
        }
    }

    fn completion(job_id: Uuid, org: &OrgId, changes: Vec<MemoryChange>) -> JobCompletion {
        JobCompletion {
            job_id,
            org_id: org.clone(),
            attempt: 1,
            changes,
            watermark: None,
            outcome: JobOutcome { facts_extracted: 1, ..JobOutcome::default() },
            now: now(),
        }
    }

    /// A [`Cache`] in process memory, with a switch that makes every call fail (Redis down).
    #[derive(Default)]
    struct MemoryCache {
        state: Mutex<CacheState>,
        down: AtomicBool,
    }

    #[derive(Default)]
    struct CacheState {
        generations: HashMap<String, u64>,
        values: HashMap<(String, u64, String), Vec<u8>>,
    }

    impl MemoryCache {
        fn generation(&self, family: &str) -> u64 {
            self.state.lock().unwrap().generations.get(family).copied().unwrap_or(0)
        }

        fn check_up(&self) -> Result<(), CacheError> {
            if self.down.load(Ordering::SeqCst) { Err(CacheError("down".to_owned())) } else { Ok(()) }
        }
    }

    #[async_trait]
    impl Cache for MemoryCache {
        async fn get(&self, family: &str, key: &str) -> Result<CacheLookup, CacheError> {
            self.check_up()?;
            let state = self.state.lock().unwrap();
            let generation = state.generations.get(family).copied().unwrap_or(0);
            let value = state.values.get(&(family.to_owned(), generation, key.to_owned())).cloned();
            Ok(CacheLookup { generation, value })
        }

        async fn put(
            &self,
            family: &str,
            generation: u64,
            key: &str,
            value: &[u8],
            _ttl: Duration,
        ) -> Result<(), CacheError> {
            self.check_up()?;
            self.state.lock().unwrap().values.insert((family.to_owned(), generation, key.to_owned()), value.to_vec());
            Ok(())
        }

        async fn invalidate(&self, families: &[String]) -> Result<(), CacheError> {
            self.check_up()?;
            let mut state = self.state.lock().unwrap();
            for family in families {
                *state.generations.entry(family.clone()).or_default() += 1;
            }
            Ok(())
        }
    }

    /// Sessions in a map, counting `get_session` calls; events are only counted. The next write
    /// first lets `reader` (another process, say) read the session, before the write applies.
    #[derive(Default)]
    struct FakeSessions {
        sessions: Mutex<HashMap<Uuid, Session>>,
        n_gets: AtomicUsize,
        reader: Mutex<Option<Arc<CachedSessionStore>>>,
        /// `patch_state` applies, then never returns: a write whose caller gave up after it
        /// committed.
        hang_after_write: AtomicBool,
    }

    impl FakeSessions {
        fn stored(&self, id: Uuid) -> Option<Session> {
            self.sessions.lock().unwrap().get(&id).cloned()
        }

        fn n_gets(&self) -> usize {
            self.n_gets.load(Ordering::SeqCst)
        }

        async fn read_before_writing(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) {
            let reader = self.reader.lock().unwrap().take();
            if let Some(reader) = reader {
                let read = reader.get_session(org, id, None, now).await;
                assert!(read.is_ok(), "the reader sees the session before the write: {read:?}");
            }
        }

        fn change<T>(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>, f: impl FnOnce(&mut Session) -> T) -> Result<T> {
            match self.sessions.lock().unwrap().get_mut(&id) {
                Some(session) if &session.org_id == org && !expired(session.expires_at, now) => Ok(f(session)),
                _ => Err(Error::session_not_found()),
            }
        }
    }

    #[async_trait]
    impl SessionStore for FakeSessions {
        async fn create_session(&self, session: Session) -> Result<Session> {
            self.sessions.lock().unwrap().insert(session.id, session.clone());
            Ok(session)
        }

        async fn get_session(&self, org: &OrgId, id: Uuid, _: Option<u32>, now: DateTime<Utc>) -> Result<Session> {
            self.n_gets.fetch_add(1, Ordering::SeqCst);
            self.change(org, id, now, |session| session.clone())
        }

        async fn list_sessions(&self, _: &OrgId, _: &SessionFilter, _: DateTime<Utc>) -> Result<SessionPage> {
            Err(Error::Unavailable)
        }

        async fn append_events(
            &self,
            org: &OrgId,
            session_id: Uuid,
            events: Vec<NewEvent>,
            _: u64,
            now: DateTime<Utc>,
        ) -> Result<crate::Appended> {
            self.read_before_writing(org, session_id, now).await;
            self.change(org, session_id, now, |session| {
                let events = events
                    .into_iter()
                    .enumerate()
                    .map(|(idx, new)| new.into_event(session_id, session.event_count + 1 + idx as i64, now));
                let events: Vec<Event> = events.collect();
                session.event_count += events.len() as i64;
                crate::Appended { events, session: session.clone() }
            })
        }

        async fn marker_events(&self, _: &OrgId, _: Uuid, _: u32, _: DateTime<Utc>) -> Result<Vec<Event>> {
            Err(Error::Unavailable)
        }

        async fn list_events(&self, _: &OrgId, _: Uuid, _: i64, _: u32, _: DateTime<Utc>) -> Result<Vec<Event>> {
            Err(Error::Unavailable)
        }

        async fn patch_state(
            &self,
            org: &OrgId,
            session_id: Uuid,
            patch: crate::session::SessionPatch,
            _: u64,
            now: DateTime<Utc>,
        ) -> Result<Session> {
            self.read_before_writing(org, session_id, now).await;
            self.change(org, session_id, now, |session| {
                let mut state = serde_json::Value::Object(std::mem::take(&mut session.state));
                crate::merge_patch::apply(&mut state, &patch.state);
                let serde_json::Value::Object(state) = state else { panic!("the tests patch with objects") };
                session.state = state;
                session.clone()
            })?;
            if self.hang_after_write.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(self.stored(session_id).expect("just patched"))
        }

        async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
            self.read_before_writing(org, id, now).await;
            self.change(org, id, now, |_| ())?;
            let mut sessions = self.sessions.lock().unwrap();
            let mut deleted = vec![id];
            let mut next = 0;
            while let Some(parent) = deleted.get(next).copied() {
                let children = sessions.values().filter(|session| session.parent_session_id == Some(parent));
                deleted.extend(children.map(|child| child.id).collect::<Vec<_>>());
                next += 1;
            }
            for id in &deleted {
                sessions.remove(id);
            }
            Ok(deleted)
        }

        async fn state_history(&self, _: &OrgId, _: Uuid, _: i64, _: DateTime<Utc>) -> Result<crate::StateHistory> {
            Err(Error::Unavailable)
        }

        async fn fork_session(&self, _: &OrgId, _: Uuid, _: i64, _: Session, _: DateTime<Utc>) -> Result<Session> {
            Err(Error::Unavailable)
        }

        async fn invocation_span(&self, _: &OrgId, _: Uuid, _: &str, _: DateTime<Utc>) -> Result<Option<(i64, i64)>> {
            Err(Error::Unavailable)
        }

        async fn purge_expired_sessions(&self, _: DateTime<Utc>, _: u32) -> Result<u64> {
            Err(Error::Unavailable)
        }

        async fn ping(&self) -> Result<()> {
            Ok(())
        }

        async fn close(&self) {}
    }

    /// Memories and jobs in maps, counting `get_memories` and `get_job` calls. A job's commit
    /// applies only memory updates.
    #[derive(Default)]
    struct FakeMemories {
        memories: Mutex<HashMap<Uuid, StoredMemory>>,
        jobs: Mutex<HashMap<Uuid, Job>>,
        n_memory_gets: AtomicUsize,
        n_job_gets: AtomicUsize,
    }

    impl FakeMemories {
        fn live(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Vec<Memory> {
            let memories = self.memories.lock().unwrap();
            let stored = ids.iter().filter_map(|id| memories.get(id));
            stored
                .filter(|stored| &stored.memory.org_id == org && stored.deleted_at.is_none())
                .filter(|stored| !expired(stored.memory.expires_at, now))
                .map(|stored| stored.memory.clone())
                .collect()
        }

        fn n_memory_gets(&self) -> usize {
            self.n_memory_gets.load(Ordering::SeqCst)
        }

        fn n_job_gets(&self) -> usize {
            self.n_job_gets.load(Ordering::SeqCst)
        }

        fn change_live<T>(&self, org: &OrgId, id: Uuid, f: impl FnOnce(&mut StoredMemory) -> T) -> Result<T> {
            match self.memories.lock().unwrap().get_mut(&id) {
                Some(stored) if &stored.memory.org_id == org && stored.deleted_at.is_none() => Ok(f(stored)),
                _ => Err(Error::memory_not_found()),
            }
        }
    }

    #[async_trait]
    impl MemoryStore for FakeMemories {
        async fn write(&self, write: Write) -> Result<WriteOutcome> {
            let touched = write.touches();
            let written = match write {
                Write::InsertMemory { memory, .. } => {
                    let stored = StoredMemory { memory: memory.clone(), deleted_at: None };
                    self.memories.lock().unwrap().insert(memory.id, stored);
                    Written::Memory(Box::new(memory))
                }
                Write::UpdateMemory { memory, .. } => {
                    self.change_live(&memory.org_id, memory.id, |stored| stored.memory = memory.clone())?;
                    Written::Memory(Box::new(memory))
                }
                Write::DeleteMemory { org, id, now, .. } => {
                    self.change_live(&org, id, |stored| stored.deleted_at = Some(now))?;
                    Written::Done
                }
                Write::PurgeMemory { org, id } => {
                    let mut memories = self.memories.lock().unwrap();
                    match memories.get(&id) {
                        Some(stored) if stored.memory.org_id == org => memories.remove(&id),
                        _ => return Err(Error::memory_not_found()),
                    };
                    Written::Done
                }
                Write::EnqueueJob { job } => {
                    self.jobs.lock().unwrap().insert(job.id, (*job).clone());
                    Written::Job(job)
                }
                Write::CompleteJob { completion } => {
                    for change in completion.changes {
                        let MemoryChange::Update { memory, .. } = change else { return Err(Error::Unavailable) };
                        self.change_live(&completion.org_id, memory.id, |stored| stored.memory = memory.clone())?;
                    }
                    if let Some(job) = self.jobs.lock().unwrap().get_mut(&completion.job_id) {
                        job.status = JobStatus::Completed;
                        job.outcome = completion.outcome;
                        job.updated_at = completion.now;
                        job.finished_at = Some(completion.now);
                        job.lease_until = None;
                    }
                    Written::Commit(CommitResult::Committed)
                }
                Write::PurgeFinishedJobs { finished_before, batch } => {
                    let mut jobs = self.jobs.lock().unwrap();
                    let finished = jobs.values().filter(|job| job.finished_at.is_some_and(|at| at < finished_before));
                    let purged: Vec<Uuid> = finished.map(|job| job.id).take(batch as usize).collect();
                    for id in &purged {
                        jobs.remove(id);
                    }
                    Written::Purged(purged)
                }
                _ => return Err(Error::Unavailable),
            };
            Ok(WriteOutcome::new(touched, written))
        }

        async fn find_memory(&self, org: &OrgId, id: Uuid) -> Result<Option<StoredMemory>> {
            let memories = self.memories.lock().unwrap();
            Ok(memories.get(&id).filter(|stored| &stored.memory.org_id == org).cloned())
        }

        async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Memory>> {
            self.n_memory_gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.live(org, ids, now))
        }

        async fn list_memories(
            &self,
            _: &OrgId,
            _: Option<&str>,
            _: &MemoryFilter,
            _: Option<PageCursor>,
            _: u32,
            _: DateTime<Utc>,
        ) -> Result<MemoryPage> {
            Err(Error::Unavailable)
        }

        async fn list_revisions(&self, _: &OrgId, _: Uuid) -> Result<Vec<Revision>> {
            Err(Error::Unavailable)
        }

        async fn lexical_candidates(
            &self,
            _: &OrgId,
            _: &str,
            _: &str,
            _: usize,
            _: DateTime<Utc>,
        ) -> Result<Vec<(Uuid, f64)>> {
            Err(Error::Unavailable)
        }

        async fn vector_candidates(&self, _: &OrgId, _: &str, _: &[f32], _: usize) -> Result<Vec<(Uuid, f64)>> {
            Err(Error::Unavailable)
        }

        async fn passage_similarities(&self, _: &OrgId, _: &[Uuid], _: &[f32]) -> Result<HashMap<Uuid, f64>> {
            Err(Error::Unavailable)
        }

        async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
            Err(Error::Unavailable)
        }

        async fn count_memories(&self) -> Result<u64> {
            Err(Error::Unavailable)
        }

        async fn memory_facts_after(&self, _: Option<Uuid>, _: u32) -> Result<Vec<(Uuid, String)>> {
            Err(Error::Unavailable)
        }
    }

    #[async_trait]
    impl JobStore for FakeMemories {
        async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
            self.n_job_gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.jobs.lock().unwrap().get(&id).filter(|job| &job.org_id == org).cloned())
        }

        async fn jobs_to_publish(&self, _: DateTime<Utc>, _: DateTime<Utc>, _: u32) -> Result<Vec<Job>> {
            Err(Error::Unavailable)
        }

        async fn generation_watermark(&self, _: &OrgId, _: Uuid, _: &str) -> Result<i64> {
            Err(Error::Unavailable)
        }

        async fn count_unfinished_jobs(&self) -> Result<u64> {
            Err(Error::Unavailable)
        }
    }
}
