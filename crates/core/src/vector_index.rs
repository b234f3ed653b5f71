//! Memory vectors in an external index (Qdrant) while the primary store keeps the records.
//!
//! The primary store stays the source of truth: it keeps every embedding, and each memory
//! write records the memory's id in a durable outbox in the write's own transaction
//! ([`VectorOutbox`]). [`IndexedMemoryStore`] then mirrors the memory's current state into the
//! [`VectorIndex`] before the write is acknowledged, and clears the outbox entries it mirrored.
//! When the index is unreachable the write still succeeds, and the outbox keeps what the index
//! lacks until [`sync_pending`] (a background relay) brings it up to date.
//!
//! Mirroring copies *state*, never replays operations: whatever happened to a memory, the index
//! ends up holding its live record's vector, or nothing. That makes every sync idempotent and
//! lets concurrent writers of one memory mirror in any order: after applying a state, a writer
//! reads the state again and repeats when it changed in between, so the last one to apply
//! always applies the newest state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::generation::JobStore;
use crate::{Layered, OrgId, Result, StoreLayer, Write, WriteOutcome};

/// What the index holds of one live memory.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub memory_id: Uuid,
    pub org_id: OrgId,
    /// The canonical scope key (`memory::scope_key`): searches are confined to one.
    pub scope_key: String,
    pub embedding: Vec<f32>,
}

/// A vector index outside the primary store. Every search is confined to one org and scope.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Makes the index ready for vectors of `dimension`: creates it when missing (answering
    /// `true`), fails with a validation error when it holds vectors of another dimension.
    async fn ensure(&self, dimension: usize) -> Result<bool>;
    /// Drops everything and starts again, empty, for vectors of `dimension`.
    async fn recreate(&self, dimension: usize) -> Result<()>;
    /// Adds or replaces the vectors of these memories; durable when it returns.
    async fn upsert(&self, records: &[VectorRecord]) -> Result<()>;
    /// Removes the vectors of these memories; ids it does not hold are ignored.
    async fn remove(&self, ids: &[Uuid]) -> Result<()>;
    /// Cosine similarity of the scope's vectors to `vector`, best first.
    async fn search(&self, org: &OrgId, scope_key: &str, vector: &[f32], limit: usize) -> Result<Vec<(Uuid, f64)>>;
    /// How many vectors the index holds.
    async fn count(&self) -> Result<u64>;
}

/// The primary store's outbox of memories whose vectors the external index may lack.
///
/// A store with its outbox on records, in the same transaction as the write, the id of every
/// memory a write creates, changes, deletes, restores, purges, expires away or re-embeds.
#[async_trait]
pub trait VectorOutbox: Send + Sync + 'static {
    /// The memories' current state, read in one snapshot: the records of those that exist and
    /// are not deleted (expired ones included: searches re-check liveness), and the outbox
    /// entries of all of them visible in that snapshot.
    async fn vector_state(&self, ids: &[Uuid]) -> Result<VectorState>;
    /// Removes these outbox entries (ids from [`VectorState::entries`]).
    async fn ack_vector_entries(&self, entries: &[i64]) -> Result<()>;
    /// Memories with outbox entries recorded before `before`, oldest first, each once.
    async fn pending_vector_memories(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>>;
    /// For a rebuild: the records of live memories after `after` in id order.
    async fn vector_records_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<VectorRecord>>;
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorState {
    pub records: Vec<VectorRecord>,
    pub entries: Vec<i64>,
}

/// How often a sync re-reads a memory whose state changed while it was being mirrored before
/// it leaves the rest to the relay.
const SYNC_ATTEMPTS: usize = 3;

/// Makes the index hold the current state of the memories `ids`, then clears their outbox
/// entries. Fails when the store or the index does; the entries then stay for the relay.
pub async fn sync_memories(outbox: &dyn VectorOutbox, index: &dyn VectorIndex, ids: &[Uuid]) -> Result<bool> {
    if ids.is_empty() {
        return Ok(true);
    }
    let mut state = outbox.vector_state(ids).await?;
    for _ in 0..SYNC_ATTEMPTS {
        let live: HashSet<Uuid> = state.records.iter().map(|record| record.memory_id).collect();
        let gone: Vec<Uuid> = ids.iter().copied().filter(|id| !live.contains(id)).collect();
        if !state.records.is_empty() {
            index.upsert(&state.records).await?;
        }
        if !gone.is_empty() {
            index.remove(&gone).await?;
        }
        // Another writer may have changed a memory and mirrored it before this one applied an
        // older state: read again, and only a state that held after it was applied counts.
        let again = outbox.vector_state(ids).await?;
        if again.records == state.records {
            outbox.ack_vector_entries(&again.entries).await?;
            return Ok(true);
        }
        state = again;
    }
    Ok(false)
}

/// One round of the relay: mirrors memories whose outbox entries are older than `grace` at
/// `now` (so writes still mirroring themselves are left alone). Answers how many memories it synced;
/// fewer than `batch` means the backlog is done, or only memories the index refuses are left.
pub async fn sync_pending(
    outbox: &dyn VectorOutbox,
    index: &dyn VectorIndex,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    batch: u32,
) -> Result<usize> {
    let ids = outbox.pending_vector_memories(now - grace, batch).await?;
    if let Err(err) = sync_memories(outbox, index, &ids).await {
        // One by one, so that a memory the index refuses does not hold back the rest; the
        // round fails only when none gets through (the index is down).
        let mut n_synced = 0;
        for id in &ids {
            if sync_memories(outbox, index, std::slice::from_ref(id)).await.is_ok() {
                n_synced += 1;
            }
        }
        if n_synced == 0 {
            return Err(err);
        }
        tracing::warn!(error = %err, n_failed = ids.len() - n_synced, "the vector index refused some memories");
        return Ok(n_synced);
    }
    Ok(ids.len())
}

/// Copies every live memory's vector from the primary store into the index, in batches;
/// `progress` hears how many each batch added. Answers the total.
pub async fn copy_all_vectors(
    outbox: &dyn VectorOutbox,
    index: &dyn VectorIndex,
    batch: u32,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<u64> {
    let (mut after, mut total) = (None, 0);
    loop {
        let records = outbox.vector_records_after(after, batch).await?;
        let Some(last) = records.last() else { return Ok(total) };
        after = Some(last.memory_id);
        index.upsert(&records).await?;
        total += records.len() as u64;
        progress(records.len() as u64);
    }
}

/// A [`MemoryStore`](crate::MemoryStore) (and [`JobStore`], whose completions write memories) whose vectors live
/// in a [`VectorIndex`]: writes go to the primary store (which records them in its outbox) and
/// are mirrored into the index before they return; vector searches ask the index.
pub type IndexedMemoryStore = Layered<VectorMirror>;

impl IndexedMemoryStore {
    pub fn new(
        inner: Arc<dyn JobStore>,
        outbox: Arc<dyn VectorOutbox>,
        index: Arc<dyn VectorIndex>,
    ) -> IndexedMemoryStore {
        Layered::with(inner, VectorMirror { outbox, index })
    }
}

/// The mirroring of [`IndexedMemoryStore`]: the memories every committed write changed, into
/// the index; vector searches, from it.
pub struct VectorMirror {
    outbox: Arc<dyn VectorOutbox>,
    index: Arc<dyn VectorIndex>,
}

#[async_trait]
impl StoreLayer for VectorMirror {
    /// Mirrors what a committed write changed. A failed mirror does not fail the write, which
    /// is durable and acknowledged: the outbox keeps the memories for the relay. Expired
    /// memories leave through the outbox too: the relay removes their vectors.
    async fn write(&self, inner: &dyn JobStore, write: Write) -> Result<WriteOutcome> {
        let written = inner.write(write).await?;
        let ids = &written.touched.memories;
        match sync_memories(self.outbox.as_ref(), self.index.as_ref(), ids).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(?ids, "memories kept changing while mirrored; left to the relay"),
            Err(err) => {
                metrics::counter!("vector_index_errors_total").increment(1);
                tracing::warn!(error = %err, ?ids, "the vector index missed a write; the outbox keeps it");
            }
        }
        Ok(written)
    }

    async fn vector_candidates(
        &self,
        inner: &dyn JobStore,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        match self.index.search(org, scope_key, vector, limit).await {
            // The index holds each memory's fact vector; its passages' live in the primary
            // store: a candidate scores as its best vector, as in a store's own search.
            Ok(found) => {
                let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
                Ok(rescored(found, &inner.passage_similarities(org, &ids, vector).await?))
            }
            // The primary store keeps every embedding, so searches go on while the index is
            // unreachable, only slower.
            Err(err) => {
                metrics::counter!("vector_index_errors_total").increment(1);
                tracing::warn!(error = %err, "the vector index failed a search; searching the primary store");
                inner.vector_candidates(org, scope_key, vector, limit).await
            }
        }
    }
}

/// Each candidate scored as the better of its fact's similarity and its passages' best
/// (where it has passages), best first; ties by id, as the stores order them.
fn rescored(mut found: Vec<(Uuid, f64)>, passages: &HashMap<Uuid, f64>) -> Vec<(Uuid, f64)> {
    for (id, score) in &mut found {
        if let Some(best) = passages.get(id) {
            *score = score.max(*best);
        }
    }
    found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    found
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_candidate_scores_as_its_best_vector_best_first() {
        let [a, b, c] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        // b's passage beats a's fact; c has no passages; a's passage is weaker than its fact.
        let passages = HashMap::from([(a, 0.5), (b, 0.95)]);
        let found = rescored(vec![(a, 0.9), (b, 0.4), (c, 0.7)], &passages);
        assert_eq!(found, [(b, 0.95), (a, 0.9), (c, 0.7)]);
        assert_eq!(rescored(vec![(c, 0.7), (a, 0.7)], &HashMap::new()), [(a, 0.7), (c, 0.7)], "ties by id");
    }

    /// The primary store's side: live records and outbox entries, with a hook that changes a
    /// memory right after the first state read (a concurrent writer).
    #[derive(Default)]
    struct FakeOutbox {
        records: Mutex<HashMap<Uuid, VectorRecord>>,
        entries: Mutex<Vec<(i64, Uuid)>>,
        change_after_first_read: Mutex<Option<VectorRecord>>,
    }

    impl FakeOutbox {
        fn write(&self, record: Option<VectorRecord>, id: Uuid) {
            match record {
                Some(record) => self.records.lock().unwrap().insert(id, record),
                None => self.records.lock().unwrap().remove(&id),
            };
            let mut entries = self.entries.lock().unwrap();
            let seq = entries.last().map_or(1, |(seq, _)| seq + 1);
            entries.push((seq, id));
        }
    }

    #[async_trait]
    impl VectorOutbox for FakeOutbox {
        async fn vector_state(&self, ids: &[Uuid]) -> Result<VectorState> {
            let records = self.records.lock().unwrap();
            let state = VectorState {
                records: ids.iter().filter_map(|id| records.get(id).cloned()).collect(),
                entries: self.entries.lock().unwrap().iter().filter(|(_, id)| ids.contains(id)).map(|e| e.0).collect(),
            };
            drop(records);
            if let Some(record) = self.change_after_first_read.lock().unwrap().take() {
                let id = record.memory_id;
                self.write(Some(record), id);
            }
            Ok(state)
        }

        async fn ack_vector_entries(&self, entries: &[i64]) -> Result<()> {
            self.entries.lock().unwrap().retain(|(seq, _)| !entries.contains(seq));
            Ok(())
        }

        async fn pending_vector_memories(&self, _: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>> {
            let mut ids: Vec<Uuid> = Vec::new();
            for (_, id) in self.entries.lock().unwrap().iter() {
                if !ids.contains(id) && ids.len() < limit as usize {
                    ids.push(*id);
                }
            }
            Ok(ids)
        }

        async fn vector_records_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<VectorRecord>> {
            let mut records: Vec<VectorRecord> = self.records.lock().unwrap().values().cloned().collect();
            records.sort_by_key(|record| record.memory_id);
            Ok(records.into_iter().filter(|r| after.is_none_or(|a| r.memory_id > a)).take(limit as usize).collect())
        }
    }

    #[derive(Default)]
    struct FakeIndex {
        points: Mutex<HashMap<Uuid, VectorRecord>>,
        down: AtomicBool,
        upserts: AtomicUsize,
    }

    impl FakeIndex {
        fn check(&self) -> Result<()> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(Error::Unavailable),
                false => Ok(()),
            }
        }
    }

    #[async_trait]
    impl VectorIndex for FakeIndex {
        async fn ensure(&self, _: usize) -> Result<bool> {
            Ok(false)
        }
        async fn recreate(&self, _: usize) -> Result<()> {
            self.points.lock().unwrap().clear();
            Ok(())
        }
        async fn upsert(&self, records: &[VectorRecord]) -> Result<()> {
            self.check()?;
            self.upserts.fetch_add(1, Ordering::SeqCst);
            let mut points = self.points.lock().unwrap();
            records.iter().for_each(|record| drop(points.insert(record.memory_id, record.clone())));
            Ok(())
        }
        async fn remove(&self, ids: &[Uuid]) -> Result<()> {
            self.check()?;
            let mut points = self.points.lock().unwrap();
            ids.iter().for_each(|id| drop(points.remove(id)));
            Ok(())
        }
        async fn search(&self, _: &OrgId, _: &str, _: &[f32], _: usize) -> Result<Vec<(Uuid, f64)>> {
            self.check()?;
            Ok(Vec::new())
        }
        async fn count(&self) -> Result<u64> {
            Ok(self.points.lock().unwrap().len() as u64)
        }
    }

    use crate::Error;

    fn record(id: Uuid, x: f32) -> VectorRecord {
        VectorRecord {
            memory_id: id,
            org_id: OrgId::default_org(),
            scope_key: "u1".to_owned(),
            embedding: vec![x, 1.0],
        }
    }

    #[tokio::test]
    async fn a_sync_mirrors_the_current_state_and_clears_the_outbox() {
        let (outbox, index) = (FakeOutbox::default(), FakeIndex::default());
        let (kept, gone) = (Uuid::now_v7(), Uuid::now_v7());
        outbox.write(Some(record(kept, 1.0)), kept);
        outbox.write(Some(record(gone, 2.0)), gone);
        assert!(sync_memories(&outbox, &index, &[kept, gone]).await.unwrap());
        outbox.write(None, gone);
        assert!(sync_memories(&outbox, &index, &[gone]).await.unwrap());
        assert_eq!(index.points.lock().unwrap().keys().collect::<Vec<_>>(), [&kept]);
        assert!(outbox.entries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_change_made_while_mirroring_is_mirrored_too() {
        let (outbox, index) = (FakeOutbox::default(), FakeIndex::default());
        let id = Uuid::now_v7();
        outbox.write(Some(record(id, 1.0)), id);
        *outbox.change_after_first_read.lock().unwrap() = Some(record(id, 5.0));
        assert!(sync_memories(&outbox, &index, &[id]).await.unwrap());
        assert_eq!(index.points.lock().unwrap()[&id], record(id, 5.0), "the newer state wins");
        assert_eq!(index.upserts.load(Ordering::SeqCst), 2);
        assert!(outbox.entries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn what_the_index_missed_stays_in_the_outbox_until_the_relay_syncs_it() {
        let (outbox, index) = (Arc::new(FakeOutbox::default()), Arc::new(FakeIndex::default()));
        let id = Uuid::now_v7();
        index.down.store(true, Ordering::SeqCst);
        outbox.write(Some(record(id, 1.0)), id);
        assert!(sync_memories(outbox.as_ref(), index.as_ref(), &[id]).await.is_err());
        assert_eq!(outbox.entries.lock().unwrap().len(), 1, "kept for the relay");
        assert!(sync_pending(outbox.as_ref(), index.as_ref(), Utc::now(), chrono::Duration::zero(), 10).await.is_err());
        index.down.store(false, Ordering::SeqCst);
        assert_eq!(
            sync_pending(outbox.as_ref(), index.as_ref(), Utc::now(), chrono::Duration::zero(), 10).await.unwrap(),
            1
        );
        assert_eq!(index.count().await.unwrap(), 1);
        assert!(outbox.entries.lock().unwrap().is_empty());
        let copied = copy_all_vectors(outbox.as_ref(), index.as_ref(), 1, &|_| {}).await.unwrap();
        assert_eq!(copied, 1);
    }
}
