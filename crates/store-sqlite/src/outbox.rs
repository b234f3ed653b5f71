//! `VectorOutbox` on SQLite. A store opened with the `vector_outbox` option creates TEMP
//! triggers on its writer connection that fill `vector_outbox` (migration 0006) in the
//! transaction of every memory write; this module creates them, reads the memories' vector
//! records and the entries, and acknowledges entries through the writer.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{Error, OrgId, Result, VectorOutbox, VectorRecord, VectorState};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::{corrupt, micros, record, uuid};
use crate::vectors::decode;
use crate::writer::WriteOp;

const TABLE: &str = "vector_outbox";
const MEMORIES: &str = "memories";

/// The triggers recording memory writes in the outbox: TEMP, so they live and fire on the one
/// connection that created them (the writer's) and nothing of them is stored in the database.
/// A TEMP trigger may watch a table of `main`; the unqualified `vector_outbox` of its body is
/// `main`'s, as `temp` has none.
const TRIGGERS: &str = "
CREATE TEMP TRIGGER memories_vector_outbox_insert AFTER INSERT ON main.memories
BEGIN
    INSERT INTO vector_outbox (memory_id, created_at)
    VALUES (NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TEMP TRIGGER memories_vector_outbox_update
AFTER UPDATE OF org_id, scope, embedding, deleted_at ON main.memories
BEGIN
    INSERT INTO vector_outbox (memory_id, created_at)
    VALUES (NEW.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TEMP TRIGGER memories_vector_outbox_delete AFTER DELETE ON main.memories
BEGIN
    INSERT INTO vector_outbox (memory_id, created_at)
    VALUES (OLD.id, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;
";

/// Makes every later memory write on `conn` record an entry, in the write's own transaction.
/// Other connections, of this process or another, are unaffected: they record only if they
/// did this too.
pub(crate) async fn record_writes(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::raw_sql(TRIGGERS).execute(conn).await.map(|_| ()).map_err(Error::store)
}

#[async_trait]
impl VectorOutbox for SqliteStore {
    async fn vector_state(&self, ids: &[Uuid]) -> Result<VectorState> {
        if ids.is_empty() {
            return Ok(VectorState::default());
        }
        let ids = id_list(ids)?;
        // One read transaction: in WAL mode both reads see the snapshot the first one took.
        let mut snapshot = record("begin", TABLE, self.readers.begin().await)?;
        let rows = sqlx::query(concat!(
            "SELECT id, org_id, scope, embedding FROM memories WHERE id IN (SELECT value FROM json_each(?)) ",
            "AND deleted_at IS NULL AND length(embedding) > 0 ORDER BY id"
        ))
        .bind(&ids)
        .fetch_all(&mut *snapshot)
        .await;
        let records = record("select", MEMORIES, rows)?.iter().map(record_from_row).collect::<Result<_>>()?;
        let entries: sqlx::Result<Vec<(i64,)>> = sqlx::query_as(
            "SELECT seq FROM vector_outbox WHERE memory_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
        )
        .bind(&ids)
        .fetch_all(&mut *snapshot)
        .await;
        let entries = record("select", TABLE, entries)?.into_iter().map(|(seq,)| seq).collect();
        Ok(VectorState { records, entries })
    }

    async fn ack_vector_entries(&self, entries: &[i64]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write(|reply| WriteOp::AckVectorEntries { entries, reply }).await
    }

    async fn pending_vector_memories(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>> {
        // Walks the entries in seq order, a page at a time, until `limit` memories turned up:
        // a backlog is never read whole (nor grouped) to find the oldest few.
        let limit = limit as usize;
        let page_size = limit.saturating_mul(4).clamp(64, 4096);
        let (mut ids, mut seen, mut after_seq) = (Vec::new(), HashSet::new(), 0);
        while ids.len() < limit {
            let rows: sqlx::Result<Vec<(i64, String)>> = sqlx::query_as(
                "SELECT seq, memory_id FROM vector_outbox WHERE seq > ? AND created_at < ? ORDER BY seq LIMIT ?",
            )
            .bind(after_seq)
            .bind(micros(before))
            .bind(page_size as i64)
            .fetch_all(&self.readers)
            .await;
            let rows = record("select", TABLE, rows)?;
            for (seq, memory_id) in &rows {
                after_seq = *seq;
                if ids.len() < limit && seen.insert(memory_id.clone()) {
                    ids.push(uuid(TABLE, memory_id)?);
                }
            }
            if rows.len() < page_size {
                break;
            }
        }
        Ok(ids)
    }

    async fn vector_records_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<VectorRecord>> {
        // Ids are lowercase hyphenated text, whose order is the UUIDs' byte order.
        let rows = sqlx::query(concat!(
            "SELECT id, org_id, scope, embedding FROM memories WHERE id > ? ",
            "AND deleted_at IS NULL AND length(embedding) > 0 ORDER BY id LIMIT ?"
        ))
        .bind(after.map_or(String::new(), |id| id.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await;
        record("select", MEMORIES, rows)?.iter().map(record_from_row).collect()
    }
}

/// The ids as a JSON array of their text, for `json_each`: one parameter however many.
fn id_list(ids: &[Uuid]) -> Result<String> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    serde_json::to_string(&ids).map_err(Error::store)
}

/// A memory's record in the index. The `scope` column holds the canonical scope key.
fn record_from_row(row: &SqliteRow) -> Result<VectorRecord> {
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(MEMORIES, err));
    let embedding: Vec<u8> = row.try_get("embedding").map_err(|err| corrupt(MEMORIES, err))?;
    Ok(VectorRecord {
        memory_id: uuid(MEMORIES, &get_text("id")?)?,
        org_id: OrgId::new(get_text("org_id")?),
        scope_key: get_text("scope")?,
        embedding: decode(&embedding),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::Duration;
    use contextiq_core::memory::{MemorySnapshot, scope_key};
    use contextiq_core::{Memory, MemoryStore, Revision, RevisionAction, Scope, SessionStore};

    use super::*;
    use crate::SqliteOptions;

    async fn open(path: &Path, vector_outbox: bool) -> SqliteStore {
        SqliteStore::open(&SqliteOptions { vector_outbox, ..SqliteOptions::new(path) }).await.unwrap()
    }

    fn scope(user: &str) -> Scope {
        [("user_id".to_owned(), user.to_owned()), ("agent_id".to_owned(), "a1".to_owned())].into()
    }

    fn memory(org: &OrgId, scope: &Scope, fact: &str, expires_at: Option<DateTime<Utc>>) -> Memory {
        let now = contextiq_core::to_micros(Utc::now());
        Memory {
            org_id: org.clone(),
            id: Uuid::now_v7(),
            scope: scope.clone(),
            fact: fact.to_owned(),
            topic: None,
            confidence: 1.0,
            source_session_id: None,
            source_event_ids: Vec::new(),
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
            expires_at,
        }
    }

    fn revision(memory: &Memory, action: RevisionAction) -> Revision {
        Revision {
            id: Uuid::now_v7(),
            memory_id: memory.id,
            org_id: memory.org_id.clone(),
            action,
            before: None,
            after: Some(MemorySnapshot::from(memory)),
            actor: "test".to_owned(),
            job_id: None,
            cause: None,
            created_at: contextiq_core::to_micros(Utc::now()),
        }
    }

    fn vector_record(memory: &Memory, embedding: &[f32]) -> VectorRecord {
        VectorRecord {
            memory_id: memory.id,
            org_id: memory.org_id.clone(),
            scope_key: scope_key(&memory.scope),
            embedding: embedding.to_vec(),
        }
    }

    async fn insert(store: &SqliteStore, memory: &Memory, embedding: &[f32]) {
        store
            .insert_memory(memory.clone(), embedding.to_vec(), revision(memory, RevisionAction::Created))
            .await
            .unwrap();
    }

    async fn n_entries(store: &SqliteStore) -> i64 {
        let (n_entries,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM vector_outbox").fetch_one(&store.readers).await.unwrap();
        n_entries
    }

    /// Checks the memory's state after a write: its record (`None`: the index must not hold
    /// it) and one entry or more; then acknowledges them.
    async fn check_synced(store: &SqliteStore, id: Uuid, expect: Option<VectorRecord>, write: &str) {
        let state = store.vector_state(&[id]).await.unwrap();
        assert_eq!(state.records, Vec::from_iter(expect), "{write}");
        assert!(!state.entries.is_empty(), "{write} leaves an entry");
        store.ack_vector_entries(&state.entries).await.unwrap();
        assert!(store.vector_state(&[id]).await.unwrap().entries.is_empty(), "{write}: acknowledged");
    }

    #[tokio::test]
    async fn every_memory_write_leaves_an_entry_and_the_state_follows_the_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("test.db"), true).await;
        let org = OrgId::new("acme");
        let scope = scope("u1");
        let tea = memory(&org, &scope, "User likes tea", None);
        insert(&store, &tea, &[1.0, 0.0]).await;
        check_synced(&store, tea.id, Some(vector_record(&tea, &[1.0, 0.0])), "insert").await;

        let mut updated = tea.clone();
        updated.fact = "User likes green tea".to_owned();
        let update = |embedding: Vec<f32>| {
            let (store, updated) = (&store, updated.clone());
            async move {
                let revision = revision(&updated, RevisionAction::Updated);
                store.update_memory(updated, Some(embedding), revision, Utc::now()).await.unwrap();
            }
        };
        update(vec![0.0, 1.0]).await;
        check_synced(&store, tea.id, Some(vector_record(&tea, &[0.0, 1.0])), "update").await;

        // An entry written after the state was read survives the acknowledgement of that state.
        update(vec![0.6, 0.8]).await;
        let read = store.vector_state(&[tea.id]).await.unwrap();
        update(vec![0.8, 0.6]).await;
        store.ack_vector_entries(&read.entries).await.unwrap();
        let state = store.vector_state(&[tea.id]).await.unwrap();
        assert_eq!(state.records, [vector_record(&tea, &[0.8, 0.6])]);
        assert_eq!(state.entries.len(), 1, "the later write's entry");
        assert!(state.entries.iter().all(|seq| !read.entries.contains(seq)));
        store.ack_vector_entries(&state.entries).await.unwrap();
        store.ack_vector_entries(&[]).await.unwrap();

        store.delete_memory(&org, tea.id, revision(&tea, RevisionAction::Deleted), Utc::now()).await.unwrap();
        check_synced(&store, tea.id, None, "delete").await;
        let restore = revision(&tea, RevisionAction::Restored);
        store.restore_memory(tea.clone(), vec![1.0, 0.0], restore).await.unwrap();
        check_synced(&store, tea.id, Some(vector_record(&tea, &[1.0, 0.0])), "restore").await;
        store.set_embeddings(vec![(tea.id, vec![0.0, 1.0])]).await.unwrap();
        check_synced(&store, tea.id, Some(vector_record(&tea, &[0.0, 1.0])), "set_embeddings").await;
        store.purge_memory(&org, tea.id).await.unwrap();
        check_synced(&store, tea.id, None, "purge").await;

        // An expired memory stays in the index until it is purged.
        let now = contextiq_core::to_micros(Utc::now());
        let brief = memory(&org, &scope, "User is at the airport", Some(now - Duration::seconds(1)));
        insert(&store, &brief, &[1.0, 0.0]).await;
        check_synced(&store, brief.id, Some(vector_record(&brief, &[1.0, 0.0])), "insert of an expired one").await;
        assert_eq!(store.purge_expired_memories(now, 10).await.unwrap(), 1);
        check_synced(&store, brief.id, None, "purge of expired memories").await;

        // Memories that never existed: no record, no entry.
        assert_eq!(store.vector_state(&[Uuid::now_v7()]).await.unwrap(), VectorState::default());
        assert_eq!(store.vector_state(&[]).await.unwrap(), VectorState::default());
        assert_eq!(n_entries(&store).await, 0);
        store.close().await;
    }

    #[tokio::test]
    async fn pending_memories_are_those_written_before_the_cutoff_oldest_first_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("test.db"), true).await;
        let org = OrgId::default_org();
        let (first, second) = (memory(&org, &scope("u1"), "a", None), memory(&org, &scope("u2"), "b", None));
        insert(&store, &first, &[1.0, 0.0]).await;
        insert(&store, &second, &[1.0, 0.0]).await;
        // More entries of the first memory than a page of the walk holds.
        store.set_embeddings(vec![(first.id, vec![0.0, 1.0]); 300]).await.unwrap();
        // Entries carry milliseconds: the cutoff lies clear of both sides.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let cutoff = Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let third = memory(&org, &scope("u3"), "c", None);
        insert(&store, &third, &[1.0, 0.0]).await;

        assert_eq!(store.pending_vector_memories(cutoff, 10).await.unwrap(), [first.id, second.id]);
        assert_eq!(store.pending_vector_memories(cutoff, 1).await.unwrap(), [first.id]);
        assert!(store.pending_vector_memories(cutoff, 0).await.unwrap().is_empty());
        let later = Utc::now() + Duration::seconds(1);
        assert_eq!(store.pending_vector_memories(later, 10).await.unwrap(), [first.id, second.id, third.id]);
        let state = store.vector_state(&[first.id]).await.unwrap();
        assert_eq!(state.entries.len(), 301);
        store.ack_vector_entries(&state.entries).await.unwrap();
        assert_eq!(store.pending_vector_memories(later, 10).await.unwrap(), [second.id, third.id]);
        store.close().await;
    }

    #[tokio::test]
    async fn records_after_page_through_the_memories_the_index_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("test.db"), false).await;
        let (org, other) = (OrgId::default_org(), OrgId::new("other"));
        let past = Some(contextiq_core::to_micros(Utc::now()) - Duration::seconds(1));
        let mut memories = vec![
            memory(&org, &scope("u1"), "a", None),
            memory(&org, &scope("u2"), "b", past),
            memory(&other, &scope("u1"), "c", None),
            memory(&org, &scope("u1"), "deleted", None),
            memory(&org, &scope("u1"), "purged", None),
            memory(&other, &scope("u3"), "d", None),
        ];
        for (idx, memory) in memories.iter().enumerate() {
            insert(&store, memory, &[idx as f32, 1.0]).await;
        }
        let deleted = memories.remove(3);
        store.delete_memory(&org, deleted.id, revision(&deleted, RevisionAction::Deleted), Utc::now()).await.unwrap();
        let purged = memories.remove(3);
        store.purge_memory(&org, purged.id).await.unwrap();
        let mut expected: Vec<VectorRecord> = [0, 1, 2, 5]
            .into_iter()
            .zip(&memories)
            .map(|(idx, memory)| vector_record(memory, &[idx as f32, 1.0]))
            .collect();
        expected.sort_by_key(|record| record.memory_id);

        let (mut found, mut after) = (Vec::new(), None);
        loop {
            let page = store.vector_records_after(after, 3).await.unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = Some(last.memory_id);
            found.extend(page);
        }
        assert_eq!(found, expected);
        assert_eq!(n_entries(&store).await, 0, "the outbox is off");
        store.close().await;
    }

    /// Writes a new memory through `store`: an insert, then a re-embedding.
    async fn insert_and_reembed(store: &SqliteStore, fact: &str) -> Memory {
        let memory = memory(&OrgId::default_org(), &scope("u1"), fact, None);
        insert(store, &memory, &[1.0, 0.0]).await;
        store.set_embeddings(vec![(memory.id, vec![0.0, 1.0])]).await.unwrap();
        memory
    }

    /// The switch is the store's: of two stores open on one database at once, the one opened
    /// with the option records its own writes and the other records nothing, and opening,
    /// writing through or closing the other never turns the first one's off.
    #[tokio::test]
    async fn only_the_store_opened_with_the_outbox_records_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let org = OrgId::default_org();
        let on = open(&path, true).await;
        let off = open(&path, false).await;

        let by_off = insert_and_reembed(&off, "a").await;
        off.purge_memory(&org, by_off.id).await.unwrap();
        assert_eq!(n_entries(&on).await, 0, "the store without the option records nothing");
        let by_on = insert_and_reembed(&on, "b").await;
        assert_eq!(on.vector_state(&[by_on.id]).await.unwrap().entries.len(), 2, "insert and re-embedding");
        off.set_embeddings(vec![(by_on.id, vec![1.0, 0.0])]).await.unwrap();
        assert_eq!(n_entries(&off).await, 2, "not even of a memory the other recorded");

        // Closing the store without the option leaves the other's on, and a store reopened
        // without it finds the entries recorded for the relay.
        off.close().await;
        let later = insert_and_reembed(&on, "c").await;
        assert_eq!(on.vector_state(&[later.id]).await.unwrap().entries.len(), 2);
        on.close().await;
        let off = open(&path, false).await;
        insert_and_reembed(&off, "d").await;
        assert_eq!(n_entries(&off).await, 4);
        let cutoff = Utc::now() + Duration::seconds(1);
        assert_eq!(off.pending_vector_memories(cutoff, 10).await.unwrap(), [by_on.id, later.id]);
        off.close().await;
    }
}
