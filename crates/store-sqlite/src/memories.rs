//! `MemoryStore` on SQLite: records and revisions in tables, BM25 through FTS5, vectors in the
//! in-process cache of `vectors.rs`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::memory::{MemoryFilter, MemoryPage, StoredMemory};
use contextiq_core::{Error, Memory, MemoryStore, OrgId, PageCursor, Result, Revision};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::rows::{memory_from_row, micros, record, revision_from_row};
use crate::vectors::{decode, top_k};
use crate::writer::WriteOp;
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
    async fn insert_memory(&self, memory: Memory, embedding: Vec<f32>, revision: Revision) -> Result<Memory> {
        self.write(|reply| WriteOp::InsertMemory { memory, embedding, revision, reply }).await
    }

    async fn update_memory(
        &self,
        memory: Memory,
        embedding: Option<Vec<f32>>,
        revision: Revision,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        self.write(|reply| WriteOp::UpdateMemory { memory, embedding, revision, now, reply }).await
    }

    async fn delete_memory(&self, org: &OrgId, id: Uuid, revision: Revision, now: DateTime<Utc>) -> Result<()> {
        let org = org.clone();
        self.write(|reply| WriteOp::DeleteMemory { org, id, revision, now, reply }).await
    }

    async fn restore_memory(&self, memory: Memory, embedding: Vec<f32>, revision: Revision) -> Result<Memory> {
        self.write(|reply| WriteOp::RestoreMemory { memory, embedding, revision, reply }).await
    }

    async fn purge_memory(&self, org: &OrgId, id: Uuid) -> Result<()> {
        let org = org.clone();
        self.write(|reply| WriteOp::PurgeMemory { org, id, reply }).await
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
        scope_key: &str,
        filter: &MemoryFilter,
        cursor: Option<PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<MemoryPage> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM memories WHERE org_id = ");
        query.push_bind(org.as_str()).push(" AND scope = ").push_bind(scope_key.to_owned());
        query.push(" AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ").push_bind(micros(now)).push(")");
        if let Some(topic) = &filter.topic {
            query.push(" AND topic = ").push_bind(topic.clone());
        }
        for (column, bound, greater) in [
            ("created_at", filter.created_after, true),
            ("created_at", filter.created_before, false),
            ("updated_at", filter.updated_after, true),
            ("updated_at", filter.updated_before, false),
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
        let rows =
            sqlx::query("SELECT id, embedding FROM memories WHERE org_id = ? AND scope = ? AND deleted_at IS NULL")
                .bind(org.as_str())
                .bind(scope_key)
                .fetch_all(&self.readers)
                .await;
        let mut loaded = HashMap::new();
        for row in record("select", "memories", rows)? {
            let id: String = row.try_get("id").map_err(Error::store)?;
            let bytes: Vec<u8> = row.try_get("embedding").map_err(Error::store)?;
            loaded.insert(Uuid::parse_str(&id).map_err(Error::store)?, decode(&bytes));
        }
        let found = top_k(loaded.iter().map(|(id, vector)| (*id, vector.as_slice())), vector, limit);
        // A write that landed during the load makes it stale: answer from it, cache it not.
        self.vectors.insert_if_current(&tag, generation, loaded);
        Ok(found)
    }

    async fn purge_expired_memories(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        self.write(|reply| WriteOp::PurgeExpiredMemories { now, batch, reply }).await
    }

    async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let row: sqlx::Result<Option<(String, i64)>> =
            sqlx::query_as("SELECT model_id, dimension FROM embedding_model").fetch_optional(&self.readers).await;
        Ok(record("select", "embedding_model", row)?.map(|(model, dimension)| (model, dimension.max(0) as usize)))
    }

    async fn set_embedding_model(&self, model_id: &str, dimension: usize) -> Result<()> {
        let model_id = model_id.to_owned();
        self.write(|reply| WriteOp::SetEmbeddingModel { model_id, dimension, reply }).await
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

    async fn set_embeddings(&self, embeddings: Vec<(Uuid, Vec<f32>)>) -> Result<()> {
        self.write(|reply| WriteOp::SetEmbeddings { embeddings, reply }).await
    }
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
