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
use crate::writer::{WriteOp, Writer, json_text};

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
        self.submit(|reply| WriteOp::AckVectorEntries { entries, reply }).await
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

impl Writer {
    /// Removes acknowledged outbox entries.
    pub(crate) async fn ack_vector_entries(&mut self, entries: &[i64]) -> sqlx::Result<Result<()>> {
        let result = sqlx::query("DELETE FROM vector_outbox WHERE seq IN (SELECT value FROM json_each(?))")
            .bind(json_text(&entries)?)
            .execute(&mut self.conn)
            .await;
        crate::rows::count("delete", TABLE, result)?;
        Ok(Ok(()))
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
    use contextiq_core::{Memory, MemoryStore, MemoryVectors, RevisionAction, SessionStore};
    use contextiq_store_tests::{memory, revision, scope};

    use super::*;
    use crate::SqliteOptions;

    async fn open(path: &Path, vector_outbox: bool) -> SqliteStore {
        SqliteStore::open(&SqliteOptions { vector_outbox, ..SqliteOptions::new(path) }).await.unwrap()
    }

    async fn insert(store: &SqliteStore, memory: &Memory, embedding: &[f32]) {
        store
            .insert_memory(
                memory.clone(),
                MemoryVectors::of_fact(embedding.to_vec()),
                revision(memory, RevisionAction::Created, None),
            )
            .await
            .unwrap();
    }

    async fn n_entries(store: &SqliteStore) -> i64 {
        let (n_entries,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM vector_outbox").fetch_one(&store.readers).await.unwrap();
        n_entries
    }

    /// Writes a new memory through `store`: an insert, then a re-embedding.
    async fn insert_and_reembed(store: &SqliteStore, fact: &str) -> Memory {
        let memory = memory(&scope("u1"), fact, "T", Utc::now());
        insert(store, &memory, &[1.0, 0.0]).await;
        store.set_embeddings(vec![(memory.id, MemoryVectors::of_fact(vec![0.0, 1.0]))]).await.unwrap();
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
        off.set_embeddings(vec![(by_on.id, MemoryVectors::of_fact(vec![1.0, 0.0]))]).await.unwrap();
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
