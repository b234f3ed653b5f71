//! `MemoryStore` on SQLite: records and revisions in tables, BM25 through FTS5, vectors in the
//! in-process cache of `vectors.rs`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::embed::best_similarity;
use contextiq_core::memory::{MemoryFilter, MemoryPage, StoredMemory, scope_key};
use contextiq_core::{
    Error, Memory, MemoryStore, MemoryVectors, OrgId, PageCursor, Resource, Result, Revision, Write, WriteOutcome,
    Written,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::rows::{count, memory_from_row, micros, record, revision_from_row};
use crate::vectors::{VectorChange, decode, encode, encode_passages, flatten, top_k};
use crate::writer::{Applied, WriteOp, Writer, json_text};
use crate::{SqliteStore, cut_page, push_page};

/// One FTS token per (org, scope): `s` and 32 hex digits of a SHA-256.
pub(crate) fn scope_tag(org: &OrgId, scope_key: &str) -> String {
    let hash = contextiq_core::auth::hash_key(&format!("{org}\u{0}{scope_key}"));
    format!("s{}", &hash[..32])
}

/// The FTS5 query for free text: its distinct words, each quoted (so nothing in the text is
/// FTS syntax), any of them matching, within one scope.
fn fts_query(scope_tag: &str, text: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == 64 {
            break;
        }
    }
    if words.is_empty() {
        return None;
    }
    let terms: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
    Some(format!("scope_tag:{scope_tag} AND ({})", terms.join(" OR ")))
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn write(&self, write: Write) -> Result<WriteOutcome> {
        let touched = write.touches();
        let written = self.submit(|reply| WriteOp::Store { write: Box::new(write), reply }).await?;
        Ok(WriteOutcome::new(touched, written))
    }

    async fn find_memory(&self, org: &OrgId, id: Uuid) -> Result<Option<StoredMemory>> {
        let row = sqlx::query("SELECT * FROM memories WHERE org_id = ? AND id = ?")
            .bind(org.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await;
        record("select", "memories", row)?.as_ref().map(memory_from_row).transpose()
    }

    async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Memory>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // `+org_id` keeps SQLite from choosing the (org, scope) index, which would scan every
        // memory of the org, over the primary key lookups of `id IN`.
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM memories WHERE id IN (");
        let mut separated = query.separated(", ");
        for id in ids {
            separated.push_bind(id.to_string());
        }
        query.push(") AND +org_id = ").push_bind(org.as_str());
        query.push(" AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ").push_bind(micros(now)).push(")");
        let rows = record("select", "memories", query.build().fetch_all(&self.readers).await)?;
        rows.iter().map(|row| memory_from_row(row).map(|stored| stored.memory)).collect()
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
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM memories WHERE org_id = ");
        query.push_bind(org.as_str());
        if let Some(scope_key) = scope_key {
            query.push(" AND scope = ").push_bind(scope_key.to_owned());
        }
        query.push(" AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ").push_bind(micros(now)).push(")");
        if let Some(topic) = &filter.topic {
            query.push(" AND topic = ").push_bind(topic.clone());
        }
        for (column, bound, greater) in [
            ("created_at", filter.created_after, true),
            ("created_at", filter.created_before, false),
            ("updated_at", filter.updated_after, true),
            ("updated_at", filter.updated_before, false),
            ("said_at", filter.said_after, true),
            ("said_at", filter.said_before, false),
        ] {
            if let Some(at) = bound {
                query.push(format!(" AND {column} {} ", if greater { ">" } else { "<" })).push_bind(micros(at));
            }
        }
        for (key, value) in &filter.metadata {
            query
                .push(" AND EXISTS (SELECT 1 FROM json_each(memories.metadata) WHERE json_each.key = ")
                .push_bind(key.clone());
            query.push(" AND json_quote(json_each.value) = json(").push_bind(value.to_string()).push("))");
        }
        push_page(&mut query, cursor, limit);
        let rows = record("select", "memories", query.build().fetch_all(&self.readers).await)?;
        let mut memories =
            rows.iter().map(|row| memory_from_row(row).map(|stored| stored.memory)).collect::<Result<Vec<_>>>()?;
        let next_cursor = cut_page(&mut memories, limit, |last| (last.created_at, last.id));
        Ok(MemoryPage { memories, next_cursor })
    }

    async fn list_revisions(&self, org: &OrgId, memory_id: Uuid) -> Result<Vec<Revision>> {
        let rows =
            sqlx::query("SELECT * FROM memory_revisions WHERE org_id = ? AND memory_id = ? ORDER BY created_at, id")
                .bind(org.as_str())
                .bind(memory_id.to_string())
                .fetch_all(&self.readers)
                .await;
        record("select", "memory_revisions", rows)?.iter().map(revision_from_row).collect()
    }

    async fn lexical_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        query: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, f64)>> {
        let Some(fts) = fts_query(&scope_tag(org, scope_key), query) else { return Ok(Vec::new()) };
        // bm25() is lower-is-better; the scope_tag column weighs nothing. The FTS query runs
        // first, on its own: joined directly, SQLite may drive the join from `memories` and
        // scan every row of every scope.
        let rows = sqlx::query(concat!(
            "SELECT m.id AS id, ranked.rank AS rank FROM (SELECT rowid, bm25(memories_fts, 1.0, 0.0) AS rank ",
            "FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS ranked ",
            "JOIN memories m ON m.rowid = ranked.rowid ",
            "WHERE m.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > ?) ORDER BY ranked.rank"
        ))
        .bind(fts)
        .bind(limit as i64)
        .bind(micros(now))
        .fetch_all(&self.readers)
        .await;
        record("search", "memories_fts", rows)?
            .iter()
            .map(|row| {
                let id: String = row.try_get("id").map_err(Error::store)?;
                let rank: f64 = row.try_get("rank").map_err(Error::store)?;
                Ok((Uuid::parse_str(&id).map_err(Error::store)?, -rank))
            })
            .collect()
    }

    async fn vector_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        let tag = scope_tag(org, scope_key);
        if let Some(found) = self.vectors.search(&tag, vector, limit) {
            return Ok(found);
        }
        let generation = self.vectors.generation(&tag);
        let rows = sqlx::query(
            "SELECT id, embedding, passages FROM memories WHERE org_id = ? AND scope = ? AND deleted_at IS NULL",
        )
        .bind(org.as_str())
        .bind(scope_key)
        .fetch_all(&self.readers)
        .await;
        let mut loaded = HashMap::new();
        for row in record("select", "memories", rows)? {
            let (id, vectors) = vectors_of(&row)?;
            loaded.insert(id, vectors);
        }
        let found = top_k(loaded.iter().map(|(id, vector)| (*id, vector.as_slice())), vector, limit);
        // A write that landed during the load makes it stale: answer from it, cache it not.
        self.vectors.insert_if_current(&tag, generation, loaded);
        Ok(found)
    }

    async fn passage_similarities(&self, org: &OrgId, ids: &[Uuid], vector: &[f32]) -> Result<HashMap<Uuid, f64>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new("SELECT id, passages FROM memories WHERE org_id = ");
        query.push_bind(org.as_str()).push(" AND passages IS NOT NULL AND id IN (");
        let mut separated = query.separated(", ");
        for id in ids {
            separated.push_bind(id.to_string());
        }
        query.push(")");
        let rows = query.build().fetch_all(&self.readers).await;
        let mut best: HashMap<Uuid, f64> = HashMap::new();
        for row in record("select", "memories", rows)? {
            let id: String = row.try_get("id").map_err(Error::store)?;
            let passages: Vec<u8> = row.try_get("passages").map_err(Error::store)?;
            best.insert(
                Uuid::parse_str(&id).map_err(Error::store)?,
                f64::from(best_similarity(&decode(&passages), vector)),
            );
        }
        Ok(best)
    }

    async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let row: sqlx::Result<Option<(String, i64)>> =
            sqlx::query_as("SELECT model_id, dimension FROM embedding_model").fetch_optional(&self.readers).await;
        Ok(record("select", "embedding_model", row)?.map(|(model, dimension)| (model, dimension.max(0) as usize)))
    }

    async fn count_memories(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> =
            sqlx::query_as("SELECT count(*) FROM memories").fetch_one(&self.readers).await;
        Ok(record("select", "memories", count)?.0.max(0) as u64)
    }

    async fn memory_facts_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<(Uuid, String)>> {
        let rows: sqlx::Result<Vec<(String, String)>> =
            sqlx::query_as("SELECT id, fact FROM memories WHERE id > ? ORDER BY id LIMIT ?")
                .bind(after.map_or(String::new(), |id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await;
        record("select", "memories", rows)?
            .into_iter()
            .map(|(id, fact)| Ok((Uuid::parse_str(&id).map_err(Error::store)?, fact)))
            .collect()
    }
}

/// The memory writes, applied by the writer inside its group's transaction.
impl Writer {
    pub(crate) async fn insert_memory_write(
        &mut self,
        memory: Memory,
        embedding: MemoryVectors,
        revision: &Revision,
    ) -> sqlx::Result<Applied> {
        // A client may name the memory it creates; the one writer makes this check race-free.
        let existing = sqlx::query("SELECT 1 FROM memories WHERE id = ?")
            .bind(memory.id.to_string())
            .fetch_optional(&mut self.conn)
            .await;
        if count("select", "memories", existing)?.is_some() {
            return Ok(Applied::refused(Error::AlreadyExists { resource: Resource::Memory }));
        }
        let change = self.insert_memory(&memory, embedding, revision).await?;
        Ok(Applied::written(Written::Memory(Box::new(memory))).with_vectors(vec![change]))
    }

    pub(crate) async fn update_memory_write(
        &mut self,
        memory: Memory,
        embedding: Option<MemoryVectors>,
        revision: &Revision,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Applied> {
        Ok(match self.rewrite_memory(&memory, embedding, revision, Some(now), None).await? {
            Some(changes) => Applied::written(Written::Memory(Box::new(memory))).with_vectors(changes),
            None => Applied::refused(Error::memory_not_found()),
        })
    }

    pub(crate) async fn delete_memory_write(
        &mut self,
        org: &OrgId,
        id: Uuid,
        revision: &Revision,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Applied> {
        Ok(match self.delete_memory(org, id, revision, now, None).await? {
            Some(change) => Applied::written(Written::Done).with_vectors(vec![change]),
            None => Applied::refused(Error::memory_not_found()),
        })
    }

    pub(crate) async fn restore_memory_write(
        &mut self,
        memory: Memory,
        embedding: MemoryVectors,
        revision: &Revision,
    ) -> sqlx::Result<Applied> {
        Ok(match self.rewrite_memory(&memory, Some(embedding), revision, None, None).await? {
            Some(changes) => Applied::written(Written::Memory(Box::new(memory))).with_vectors(changes),
            None => Applied::refused(Error::memory_not_found()),
        })
    }

    pub(crate) async fn purge_memory(&mut self, org: &OrgId, id: Uuid) -> sqlx::Result<Applied> {
        let purged = sqlx::query("DELETE FROM memories WHERE org_id = ? AND id = ? RETURNING rowid, scope")
            .bind(org.as_str())
            .bind(id.to_string())
            .fetch_optional(&mut self.conn)
            .await;
        let Some(row) = count("purge", "memories", purged)? else {
            return Ok(Applied::refused(Error::memory_not_found()));
        };
        let (rowid, scope): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        self.unindex_fact(rowid).await?;
        self.erase_history(org.as_str(), &id.to_string()).await?;
        let change = VectorChange::Remove { scope_tag: scope_tag(org, &scope), id };
        Ok(Applied::written(Written::Done).with_vectors(vec![change]))
    }

    pub(crate) async fn purge_expired_memories(&mut self, now: DateTime<Utc>, batch: u32) -> sqlx::Result<Applied> {
        let expired = sqlx::query(concat!(
            "DELETE FROM memories WHERE rowid IN (SELECT rowid FROM memories ",
            "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?) RETURNING rowid, id, org_id"
        ))
        .bind(micros(now))
        .bind(i64::from(batch))
        .fetch_all(&mut self.conn)
        .await;
        let expired = count("purge", "memories", expired)?;
        for row in &expired {
            let (rowid, id, org): (i64, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            self.unindex_fact(rowid).await?;
            self.erase_history(&org, &id).await?;
        }
        let n_purged = expired.len() as u64;
        let applied = Applied::written(Written::Count(n_purged));
        Ok(if n_purged == 0 { applied } else { applied.with_vectors(vec![VectorChange::Reset]) })
    }

    pub(crate) async fn set_embedding_model(&mut self, model_id: &str, dimension: usize) -> sqlx::Result<Applied> {
        let result =
            sqlx::query("INSERT OR REPLACE INTO embedding_model (singleton, model_id, dimension) VALUES (1, ?, ?)")
                .bind(model_id)
                .bind(dimension as i64)
                .execute(&mut self.conn)
                .await;
        count("upsert", "embedding_model", result)?;
        Ok(Applied::written(Written::Done))
    }

    pub(crate) async fn set_embeddings(&mut self, embeddings: &[(Uuid, MemoryVectors)]) -> sqlx::Result<Applied> {
        for (id, vectors) in embeddings {
            let result = sqlx::query("UPDATE memories SET embedding = ?, passages = ? WHERE id = ?")
                .bind(encode(&vectors.fact))
                .bind(encode_passages(vectors))
                .bind(id.to_string())
                .execute(&mut self.conn)
                .await;
            count("update", "memories", result)?;
        }
        Ok(Applied::written(Written::Done).with_vectors(vec![VectorChange::Reset]))
    }
}

impl Writer {
    /// Inserts a new memory with its revision and indexes; returns the vector change to apply
    /// after the commit.
    pub(crate) async fn insert_memory(
        &mut self,
        memory: &Memory,
        embedding: MemoryVectors,
        revision: &Revision,
    ) -> sqlx::Result<VectorChange> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO memories (org_id, id, scope, fact, topic, confidence, source_session_id, ",
            "source_event_ids, metadata, embedding, passages, created_at, updated_at, expires_at, said_at) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rowid"
        ))
        .bind(memory.org_id.as_str())
        .bind(memory.id.to_string())
        .bind(scope_key(&memory.scope))
        .bind(memory.fact.as_str())
        .bind(memory.topic.as_deref())
        .bind(memory.confidence)
        .bind(memory.source_session_id.map(|id| id.to_string()))
        .bind(json_text(&memory.source_event_ids)?)
        .bind(json_text(&memory.metadata)?)
        .bind(encode(&embedding.fact))
        .bind(encode_passages(&embedding))
        .bind(micros(memory.created_at))
        .bind(micros(memory.updated_at))
        .bind(memory.expires_at.map(micros))
        .bind(micros(memory.said_at))
        .fetch_one(&mut self.conn)
        .await;
        let rowid: i64 = count("insert", "memories", inserted)?.try_get(0)?;
        self.index_fact(rowid, memory).await?;
        self.insert_revision(revision).await?;
        Ok(VectorChange::Upsert { scope_tag: memory_scope_tag(memory), id: memory.id, vector: flatten(&embedding) })
    }

    /// Replaces a memory's fields (and its vector, when given) and records the revision.
    /// With `live_at`, only a memory live at that time qualifies (an update); without, a
    /// deleted or expired one does too, and comes back to life (a restore). With
    /// `expected_updated_at`, only a memory not changed since qualifies. `None`: nothing
    /// qualified and nothing was written.
    pub(crate) async fn rewrite_memory(
        &mut self,
        memory: &Memory,
        embedding: Option<MemoryVectors>,
        revision: &Revision,
        live_at: Option<DateTime<Utc>>,
        expected_updated_at: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Option<Vec<VectorChange>>> {
        let rewritten = sqlx::query(concat!(
            "UPDATE memories SET fact = ?, topic = ?, confidence = ?, source_session_id = ?, ",
            "source_event_ids = ?, metadata = ?, embedding = COALESCE(?, embedding), ",
            "passages = CASE WHEN ? THEN ? ELSE passages END, updated_at = ?, ",
            "expires_at = ?, said_at = ?, deleted_at = NULL WHERE org_id = ? AND id = ? ",
            "AND (?15 IS NULL OR (deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?15))) ",
            "AND (?16 IS NULL OR updated_at = ?16) RETURNING rowid"
        ))
        .bind(memory.fact.as_str())
        .bind(memory.topic.as_deref())
        .bind(memory.confidence)
        .bind(memory.source_session_id.map(|id| id.to_string()))
        .bind(json_text(&memory.source_event_ids)?)
        .bind(json_text(&memory.metadata)?)
        .bind(embedding.as_ref().map(|vectors| encode(&vectors.fact)))
        .bind(embedding.is_some())
        .bind(embedding.as_ref().and_then(encode_passages))
        .bind(micros(memory.updated_at))
        .bind(memory.expires_at.map(micros))
        .bind(micros(memory.said_at))
        .bind(memory.org_id.as_str())
        .bind(memory.id.to_string())
        .bind(live_at.map(micros))
        .bind(expected_updated_at.map(micros))
        .fetch_optional(&mut self.conn)
        .await;
        let Some(row) = count("update", "memories", rewritten)? else {
            return Ok(None);
        };
        let rowid: i64 = row.try_get(0)?;
        self.unindex_fact(rowid).await?;
        self.index_fact(rowid, memory).await?;
        self.insert_revision(revision).await?;
        Ok(Some(match embedding {
            Some(vectors) => {
                vec![VectorChange::Upsert {
                    scope_tag: memory_scope_tag(memory),
                    id: memory.id,
                    vector: flatten(&vectors),
                }]
            }
            None => Vec::new(),
        }))
    }

    /// Marks a live memory deleted (not changed since `expected_updated_at`, when given) and
    /// records the revision. `None`: nothing qualified and nothing was written.
    pub(crate) async fn delete_memory(
        &mut self,
        org: &OrgId,
        id: Uuid,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Option<VectorChange>> {
        let deleted = sqlx::query(concat!(
            "UPDATE memories SET deleted_at = ?1 WHERE org_id = ?2 AND id = ?3 AND deleted_at IS NULL ",
            "AND (expires_at IS NULL OR expires_at > ?1) AND (?4 IS NULL OR updated_at = ?4) RETURNING rowid, scope"
        ))
        .bind(micros(now))
        .bind(org.as_str())
        .bind(id.to_string())
        .bind(expected_updated_at.map(micros))
        .fetch_optional(&mut self.conn)
        .await;
        let Some(row) = count("delete", "memories", deleted)? else {
            return Ok(None);
        };
        let (rowid, scope): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        self.unindex_fact(rowid).await?;
        self.insert_revision(revision).await?;
        Ok(Some(VectorChange::Remove { scope_tag: scope_tag(org, &scope), id }))
    }

    async fn index_fact(&mut self, rowid: i64, memory: &Memory) -> sqlx::Result<()> {
        let result = sqlx::query("INSERT INTO memories_fts (rowid, fact, scope_tag) VALUES (?, ?, ?)")
            .bind(rowid)
            .bind(memory.fact.as_str())
            .bind(memory_scope_tag(memory))
            .execute(&mut self.conn)
            .await;
        count("insert", "memories_fts", result).map(|_| ())
    }

    async fn unindex_fact(&mut self, rowid: i64) -> sqlx::Result<()> {
        let result = sqlx::query("DELETE FROM memories_fts WHERE rowid = ?").bind(rowid).execute(&mut self.conn).await;
        count("delete", "memories_fts", result).map(|_| ())
    }

    /// Erases every revision of a memory being purged.
    async fn erase_history(&mut self, org: &str, memory_id: &str) -> sqlx::Result<()> {
        let result = sqlx::query("DELETE FROM memory_revisions WHERE org_id = ? AND memory_id = ?")
            .bind(org)
            .bind(memory_id)
            .execute(&mut self.conn)
            .await;
        count("purge", "memory_revisions", result).map(|_| ())
    }

    async fn insert_revision(&mut self, revision: &Revision) -> sqlx::Result<()> {
        let result = sqlx::query(concat!(
            "INSERT INTO memory_revisions (id, memory_id, org_id, action, before, after, actor, job_id, cause, created_at) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(revision.id.to_string())
        .bind(revision.memory_id.to_string())
        .bind(revision.org_id.as_str())
        .bind(revision.action.as_str())
        .bind(revision.before.as_ref().map(json_text).transpose()?)
        .bind(revision.after.as_ref().map(json_text).transpose()?)
        .bind(revision.actor.as_str())
        .bind(revision.job_id.map(|id| id.to_string()))
        .bind(revision.cause.as_ref().map(json_text).transpose()?)
        .bind(micros(revision.created_at))
        .execute(&mut self.conn)
        .await;
        count("insert", "memory_revisions", result).map(|_| ())
    }
}

fn memory_scope_tag(memory: &Memory) -> String {
    scope_tag(&memory.org_id, &scope_key(&memory.scope))
}

/// A memory's id and its vectors one after another (the fact's, then its passages'), from a
/// row with `id`, `embedding` and `passages`.
fn vectors_of(row: &sqlx::sqlite::SqliteRow) -> Result<(Uuid, Vec<f32>)> {
    let id: String = row.try_get("id").map_err(Error::store)?;
    let mut vectors = decode(&row.try_get::<Vec<u8>, _>("embedding").map_err(Error::store)?);
    if let Some(passages) = row.try_get::<Option<Vec<u8>>, _>("passages").map_err(Error::store)? {
        vectors.extend(decode(&passages));
    }
    Ok((Uuid::parse_str(&id).map_err(Error::store)?, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_becomes_a_safe_fts_query() {
        assert_eq!(
            fts_query("sabc", r#"What did "Caroline" do -- NEAR(x) OR *?"#).unwrap(),
            r#"scope_tag:sabc AND ("what" OR "did" OR "caroline" OR "do" OR "near" OR "x" OR "or")"#
        );
        assert_eq!(fts_query("sabc", "  ?! "), None);
        assert_eq!(scope_tag(&OrgId::new("a"), "{}").len(), 33);
        assert_ne!(scope_tag(&OrgId::new("a"), "{}"), scope_tag(&OrgId::new("b"), "{}"));
    }
}
