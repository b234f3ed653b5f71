//! `MemoryStore` on PostgreSQL: records and revisions in tables, lexical relevance through
//! full-text search on the `fact_search` column, vectors in pgvector behind an HNSW index of
//! the model's dimension.
//!
//! The write helpers take a connection, not the pool, so that the memory methods and
//! `complete_job` share every statement and each caller chooses its transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::memory::{MemoryFilter, MemoryPage, MemorySnapshot, StoredMemory, scope_key};
use contextiq_core::{
    Error, Memory, MemoryStore, MemoryVectors, OrgId, PageCursor, Result, Revision, RevisionAction, Write,
    WriteOutcome, Written,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::rows::{corrupt, get, json, record};
use crate::{PostgresStore, applied_at, cut_page, push_page};

const TABLE: &str = "memories";
const REVISIONS: &str = "memory_revisions";

/// pgvector indexes vectors of at most this many dimensions; larger ones are searched exactly.
const MAX_HNSW_DIMENSIONS: usize = 2000;

/// Name prefix of the HNSW indexes; the suffix is the dimension they cast vectors to.
const HNSW_INDEX_PREFIX: &str = "memories_embedding_hnsw_";

/// The columns of a memory record, without its vector and its search document, which no
/// reader needs.
macro_rules! memory_columns {
    () => {
        "org_id, id, scope, fact, topic, confidence, source_session_id, source_event_ids, metadata, \
         said_at, created_at, updated_at, expires_at, deleted_at"
    };
}

#[async_trait]
impl MemoryStore for PostgresStore {
    async fn write(&self, write: Write) -> Result<WriteOutcome> {
        let touched = write.touches();
        let written = match write {
            Write::InsertMemory { memory, embedding, revision } => self.insert(memory, &embedding, &revision).await?,
            Write::UpdateMemory { memory, embedding, revision, now } => {
                self.update(memory, embedding.as_ref(), &revision, now).await?
            }
            Write::DeleteMemory { org, id, revision, now } => self.delete(&org, id, &revision, now).await?,
            Write::RestoreMemory { memory, embedding, revision } => self.restore(memory, &embedding, &revision).await?,
            Write::PurgeMemory { org, id } => self.purge(&org, id).await?,
            Write::PurgeExpiredMemories { now, batch } => self.purge_expired(now, batch).await?,
            Write::SetEmbeddingModel { model_id, dimension } => {
                self.store_embedding_model(&model_id, dimension).await?
            }
            Write::SetEmbeddings { embeddings } => self.store_embeddings(&embeddings).await?,
            Write::EnqueueJob { job } => self.enqueue(*job).await?,
            Write::ClaimJob { only, now, lease_until } => self.claim(only, now, lease_until).await?,
            Write::MarkPublished { ids, at } => self.mark_jobs_published(&ids, at).await?,
            Write::RenewLease { id, attempt, lease_until } => self.renew(id, attempt, lease_until).await?,
            Write::CompleteJob { completion } => self.complete(&completion).await?,
            Write::FailJob { id, attempt, error, llm_usage, retry_at, now } => {
                self.fail(id, attempt, &error, llm_usage, retry_at, now).await?
            }
            Write::PurgeFinishedJobs { finished_before, batch } => self.purge_finished(finished_before, batch).await?,
        };
        Ok(WriteOutcome::new(touched, written))
    }

    async fn find_memory(&self, org: &OrgId, id: Uuid) -> Result<Option<StoredMemory>> {
        let row = sqlx::query(concat!("SELECT ", memory_columns!(), " FROM memories WHERE org_id = $1 AND id = $2"))
            .bind(org.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await;
        record("select", TABLE, row)?.as_ref().map(memory_from_row).transpose()
    }

    async fn get_memories(&self, org: &OrgId, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Memory>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            memory_columns!(),
            " FROM memories WHERE id = ANY($1) AND org_id = $2 ",
            "AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $3)"
        ))
        .bind(ids)
        .bind(org.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await;
        record("select", TABLE, rows)?.iter().map(|row| memory_from_row(row).map(|stored| stored.memory)).collect()
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
        let mut query =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", memory_columns!(), " FROM memories WHERE org_id = "));
        query.push_bind(org.as_str());
        if let Some(scope_key) = scope_key {
            query.push(" AND scope_key = ").push_bind(scope_key);
        }
        query.push(" AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ").push_bind(now).push(")");
        if let Some(topic) = &filter.topic {
            query.push(" AND topic = ").push_bind(topic.as_str());
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
                query.push(format!(" AND {column} {} ", if greater { ">" } else { "<" })).push_bind(at);
            }
        }
        for (key, value) in &filter.metadata {
            // JSONB equality of the one value, not containment: `{"a": [1, 2]}` contains `[1]`.
            query.push(" AND metadata -> ").push_bind(key.as_str()).push(" = ").push_bind(Json(value));
        }
        push_page(&mut query, cursor, limit);
        let rows = record("select", TABLE, query.build().fetch_all(&self.pool).await)?;
        let mut memories =
            rows.iter().map(|row| memory_from_row(row).map(|stored| stored.memory)).collect::<Result<Vec<_>>>()?;
        let next_cursor = cut_page(&mut memories, limit, |last| (last.created_at, last.id));
        Ok(MemoryPage { memories, next_cursor })
    }

    async fn list_revisions(&self, org: &OrgId, memory_id: Uuid) -> Result<Vec<Revision>> {
        let rows =
            sqlx::query("SELECT * FROM memory_revisions WHERE org_id = $1 AND memory_id = $2 ORDER BY created_at, id")
                .bind(org.as_str())
                .bind(memory_id)
                .fetch_all(&self.pool)
                .await;
        record("select", REVISIONS, rows)?.iter().map(revision_from_row).collect()
    }

    async fn lexical_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        query: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, f64)>> {
        let Some(tsquery) = any_word_query(query) else { return Ok(Vec::new()) };
        let rows: sqlx::Result<Vec<(Uuid, f64)>> = sqlx::query_as(concat!(
            "SELECT id, ts_rank_cd(fact_search, words)::float8 AS rank ",
            "FROM memories, to_tsquery('english', $1) AS words ",
            "WHERE fact_search @@ words AND org_id = $2 AND scope_key = $3 ",
            "AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $4) ",
            "ORDER BY rank DESC, id LIMIT $5"
        ))
        .bind(tsquery)
        .bind(org.as_str())
        .bind(scope_key)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await;
        record("search", TABLE, rows)
    }

    async fn vector_candidates(
        &self,
        org: &OrgId,
        scope_key: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(Uuid, f64)>> {
        if vector.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let dimension = vector.len();
        // A small scope is compared exactly: pgvector's filtered HNSW scan walks the graph until
        // enough rows pass the filter, which for a scope holding a sliver of the table is most
        // of the graph, while a few thousand distances cost less and are exact.
        let in_scope: sqlx::Result<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM memories WHERE org_id = $1 AND scope_key = $2 \
             AND deleted_at IS NULL LIMIT $3) AS scope",
        )
        .bind(org.as_str())
        .bind(scope_key)
        .bind(self.exact_scan_max + 1)
        .fetch_one(&self.pool)
        .await;
        // A memory scores as its best vector: its fact's or one of its passages'.
        let best_passage = best_passage_similarity(dimension);
        let sql = if record("count", TABLE, in_scope)? <= self.exact_scan_max {
            // Materialised, so the planner cannot turn the scope's rows back into an index scan.
            format!(
                "WITH scoped AS MATERIALIZED (SELECT id, embedding, passages FROM memories WHERE org_id = $2 \
                 AND scope_key = $3 AND deleted_at IS NULL AND vector_dims(embedding) = {dimension}) \
                 SELECT id, GREATEST(1 - (embedding::vector({dimension}) <=> $1::vector({dimension})), \
                 {best_passage}) AS similarity FROM scoped ORDER BY similarity DESC, id LIMIT $4"
            )
        } else {
            // The distance is written as the HNSW index of this dimension indexes it, so the
            // planner can use the index. Vectors of another dimension (a re-embedding in
            // progress) are filtered out before the cast, which would fail on them. The
            // iterative scan may return rows slightly out of order: the outer query orders them.
            // The index holds the facts' vectors: it finds the candidates, and their passages
            // score them again.
            format!(
                "WITH nearest AS MATERIALIZED (SELECT id, passages, embedding::vector({dimension}) <=> \
                 $1::vector({dimension}) AS distance FROM memories WHERE org_id = $2 AND scope_key = $3 \
                 AND deleted_at IS NULL AND vector_dims(embedding) = {dimension} ORDER BY distance LIMIT $4) \
                 SELECT id, GREATEST(1 - distance, {best_passage}) AS similarity FROM nearest \
                 ORDER BY similarity DESC, id"
            )
        };
        let rows: sqlx::Result<Vec<(Uuid, f64)>> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(vector_text(vector))
            .bind(org.as_str())
            .bind(scope_key)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await;
        record("search", TABLE, rows)
    }

    async fn passage_similarities(&self, org: &OrgId, ids: &[Uuid], vector: &[f32]) -> Result<HashMap<Uuid, f64>> {
        if ids.is_empty() || vector.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, {} AS similarity FROM memories WHERE org_id = $2 AND id = ANY($3) AND passages IS NOT NULL",
            best_passage_similarity(vector.len())
        );
        let rows: sqlx::Result<Vec<(Uuid, Option<f64>)>> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(vector_text(vector))
            .bind(org.as_str())
            .bind(ids.to_vec())
            .fetch_all(&self.pool)
            .await;
        Ok(record("search", TABLE, rows)?.into_iter().filter_map(|(id, best)| Some((id, best?))).collect())
    }

    async fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let row: sqlx::Result<Option<(String, i32)>> =
            sqlx::query_as("SELECT model_id, dimension FROM embedding_model").fetch_optional(&self.pool).await;
        Ok(record("select", "embedding_model", row)?
            .map(|(model, dimension)| (model, usize::try_from(dimension).unwrap_or(0))))
    }

    async fn count_memories(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> = sqlx::query_as("SELECT count(*) FROM memories").fetch_one(&self.pool).await;
        Ok(record("select", TABLE, count)?.0.max(0) as u64)
    }

    async fn memory_facts_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<(Uuid, String)>> {
        let rows: sqlx::Result<Vec<(Uuid, String)>> =
            sqlx::query_as("SELECT id, fact FROM memories WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2")
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await;
        record("select", TABLE, rows)
    }
}

/// The memory writes, each in a transaction of its own.
impl PostgresStore {
    async fn insert(&self, memory: Memory, embedding: &MemoryVectors, revision: &Revision) -> Result<Written> {
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        insert_memory(&mut tx, &memory, embedding, revision).await?;
        record("commit", TABLE, tx.commit().await)?;
        Ok(Written::Memory(Box::new(memory)))
    }

    async fn update(
        &self,
        memory: Memory,
        embedding: Option<&MemoryVectors>,
        revision: &Revision,
        now: DateTime<Utc>,
    ) -> Result<Written> {
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        let live_at = Some(applied_at(now));
        if !rewrite_memory(&mut tx, &memory, embedding, revision, live_at, None).await? {
            return Err(Error::memory_not_found());
        }
        record("commit", TABLE, tx.commit().await)?;
        Ok(Written::Memory(Box::new(memory)))
    }

    async fn delete(&self, org: &OrgId, id: Uuid, revision: &Revision, now: DateTime<Utc>) -> Result<Written> {
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        if !delete_memory(&mut tx, org, id, revision, applied_at(now), None).await? {
            return Err(Error::memory_not_found());
        }
        record("commit", TABLE, tx.commit().await)?;
        Ok(Written::Done)
    }

    async fn restore(&self, memory: Memory, embedding: &MemoryVectors, revision: &Revision) -> Result<Written> {
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        if !rewrite_memory(&mut tx, &memory, Some(embedding), revision, None, None).await? {
            return Err(Error::memory_not_found());
        }
        record("commit", TABLE, tx.commit().await)?;
        Ok(Written::Memory(Box::new(memory)))
    }

    async fn purge(&self, org: &OrgId, id: Uuid) -> Result<Written> {
        // The revisions go with the record: their foreign key cascades.
        let purged = sqlx::query("DELETE FROM memories WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id)
            .execute(&self.pool)
            .await;
        if record("purge", TABLE, purged)?.rows_affected() == 0 {
            return Err(Error::memory_not_found());
        }
        Ok(Written::Done)
    }

    async fn purge_expired(&self, now: DateTime<Utc>, batch: u32) -> Result<Written> {
        // SKIP LOCKED: concurrent purgers take different rows instead of waiting on each other.
        let purged = sqlx::query(concat!(
            "DELETE FROM memories WHERE id IN (SELECT id FROM memories ",
            "WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        ))
        .bind(now)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await;
        Ok(Written::Count(record("purge", TABLE, purged)?.rows_affected()))
    }

    async fn store_embedding_model(&self, model_id: &str, dimension: usize) -> Result<Written> {
        let mut tx = record("begin", "embedding_model", self.pool.begin().await)?;
        lock_vector_indexes(&mut tx).await?;
        let upserted = sqlx::query(concat!(
            "INSERT INTO embedding_model (singleton, model_id, dimension) VALUES (TRUE, $1, $2) ",
            "ON CONFLICT (singleton) DO UPDATE SET model_id = EXCLUDED.model_id, dimension = EXCLUDED.dimension"
        ))
        .bind(model_id)
        .bind(i64::try_from(dimension).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await;
        record("upsert", "embedding_model", upserted)?;
        drop_hnsw_indexes_except(&mut tx, Some(dimension)).await?;
        if (1..=MAX_HNSW_DIMENSIONS).contains(&dimension) {
            // Partial: the cast applies only to vectors of this dimension. An index build also
            // reads row versions a re-embedding just replaced, which may have another one.
            let sql = format!(
                "CREATE INDEX IF NOT EXISTS {HNSW_INDEX_PREFIX}{dimension} ON memories \
                 USING hnsw ((embedding::vector({dimension})) vector_cosine_ops) \
                 WHERE vector_dims(embedding) = {dimension}"
            );
            record("index", TABLE, sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await)?;
        } else {
            tracing::warn!(
                dimension,
                max = MAX_HNSW_DIMENSIONS,
                "pgvector cannot index vectors this large: vector search scans every memory of the scope"
            );
        }
        record("commit", "embedding_model", tx.commit().await)?;
        Ok(Written::Done)
    }

    async fn store_embeddings(&self, embeddings: &[(Uuid, MemoryVectors)]) -> Result<Written> {
        let Some((_, first)) = embeddings.first() else { return Ok(Written::Done) };
        // A re-embedding may change the dimension: an index casting to the old one would refuse
        // the new vectors, so it goes first (`set_embedding_model` builds the new one after).
        let first_dimension = first.fact.len();
        let same_dimension = embeddings.iter().all(|(_, vectors)| vectors.fact.len() == first_dimension);
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        lock_vector_indexes(&mut tx).await?;
        drop_hnsw_indexes_except(&mut tx, same_dimension.then_some(first_dimension)).await?;
        let ids: Vec<Uuid> = embeddings.iter().map(|(id, _)| *id).collect();
        let vectors: Vec<String> = embeddings.iter().map(|(_, vectors)| vector_text(&vectors.fact)).collect();
        let passages: Vec<Option<String>> = embeddings.iter().map(|(_, vectors)| passages_text(vectors)).collect();
        let updated = sqlx::query(concat!(
            "UPDATE memories SET embedding = new.embedding::vector, passages = new.passages::vector[] ",
            "FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS new (id, embedding, passages) ",
            "WHERE memories.id = new.id"
        ))
        .bind(ids)
        .bind(vectors)
        .bind(passages)
        .execute(&mut *tx)
        .await;
        record("update", TABLE, updated)?;
        record("commit", TABLE, tx.commit().await)?;
        Ok(Written::Done)
    }
}

/// Inserts a new memory with its revision.
pub(crate) async fn insert_memory(
    conn: &mut PgConnection,
    memory: &Memory,
    embedding: &MemoryVectors,
    revision: &Revision,
) -> Result<()> {
    let inserted = sqlx::query(concat!(
        "INSERT INTO memories (org_id, id, scope, scope_key, fact, topic, confidence, source_session_id, ",
        "source_event_ids, metadata, embedding, created_at, updated_at, expires_at, said_at, passages) ",
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::vector, $12, $13, $14, $15, $16::vector[])"
    ))
    .bind(memory.org_id.as_str())
    .bind(memory.id)
    .bind(Json(&memory.scope))
    .bind(scope_key(&memory.scope))
    .bind(memory.fact.as_str())
    .bind(memory.topic.as_deref())
    .bind(memory.confidence)
    .bind(memory.source_session_id)
    .bind(Json(&memory.source_event_ids))
    .bind(Json(&memory.metadata))
    .bind(vector_text(&embedding.fact))
    .bind(memory.created_at)
    .bind(memory.updated_at)
    .bind(memory.expires_at)
    .bind(memory.said_at)
    .bind(passages_text(embedding))
    .execute(&mut *conn)
    .await;
    record("insert", TABLE, inserted)?;
    insert_revision(conn, revision).await
}

/// Replaces a memory's fields (and its vector, when given) and records the revision.
/// With `live_at`, only a memory live at that time qualifies (an update); without, a deleted
/// or expired one does too, and comes back to life (a restore). With `expected_updated_at`,
/// only a memory not changed since qualifies. False: nothing qualified and nothing was written.
pub(crate) async fn rewrite_memory(
    conn: &mut PgConnection,
    memory: &Memory,
    embedding: Option<&MemoryVectors>,
    revision: &Revision,
    live_at: Option<DateTime<Utc>>,
    expected_updated_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let rewritten = sqlx::query(concat!(
        "UPDATE memories SET fact = $1, topic = $2, confidence = $3, source_session_id = $4, ",
        "source_event_ids = $5, metadata = $6, embedding = COALESCE($7::vector, embedding), updated_at = $8, ",
        "expires_at = $9, deleted_at = NULL, said_at = $14, ",
        "passages = CASE WHEN $15 THEN $16::vector[] ELSE passages END WHERE org_id = $10 AND id = $11 ",
        "AND ($12::timestamptz IS NULL OR (deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $12))) ",
        "AND ($13::timestamptz IS NULL OR updated_at = $13)"
    ))
    .bind(memory.fact.as_str())
    .bind(memory.topic.as_deref())
    .bind(memory.confidence)
    .bind(memory.source_session_id)
    .bind(Json(&memory.source_event_ids))
    .bind(Json(&memory.metadata))
    .bind(embedding.map(|vectors| vector_text(&vectors.fact)))
    .bind(memory.updated_at)
    .bind(memory.expires_at)
    .bind(memory.org_id.as_str())
    .bind(memory.id)
    .bind(live_at)
    .bind(expected_updated_at)
    .bind(memory.said_at)
    .bind(embedding.is_some())
    .bind(embedding.and_then(passages_text))
    .execute(&mut *conn)
    .await;
    if record("update", TABLE, rewritten)?.rows_affected() == 0 {
        return Ok(false);
    }
    insert_revision(conn, revision).await?;
    Ok(true)
}

/// Marks a live memory deleted at `now` (not changed since `expected_updated_at`, when given)
/// and records the revision. False: nothing qualified and nothing was written.
pub(crate) async fn delete_memory(
    conn: &mut PgConnection,
    org: &OrgId,
    id: Uuid,
    revision: &Revision,
    now: DateTime<Utc>,
    expected_updated_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let deleted = sqlx::query(concat!(
        "UPDATE memories SET deleted_at = $1 WHERE org_id = $2 AND id = $3 AND deleted_at IS NULL ",
        "AND (expires_at IS NULL OR expires_at > $1) AND ($4::timestamptz IS NULL OR updated_at = $4)"
    ))
    .bind(now)
    .bind(org.as_str())
    .bind(id)
    .bind(expected_updated_at)
    .execute(&mut *conn)
    .await;
    if record("delete", TABLE, deleted)?.rows_affected() == 0 {
        return Ok(false);
    }
    insert_revision(conn, revision).await?;
    Ok(true)
}

async fn insert_revision(conn: &mut PgConnection, revision: &Revision) -> Result<()> {
    let inserted = sqlx::query(concat!(
        "INSERT INTO memory_revisions (id, memory_id, org_id, action, before, after, actor, job_id, cause, created_at) ",
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(revision.id)
    .bind(revision.memory_id)
    .bind(revision.org_id.as_str())
    .bind(revision.action.as_str())
    .bind(revision.before.as_ref().map(Json))
    .bind(revision.after.as_ref().map(Json))
    .bind(revision.actor.as_str())
    .bind(revision.job_id)
    .bind(revision.cause.as_ref().map(Json))
    .bind(revision.created_at)
    .execute(&mut *conn)
    .await;
    record("insert", REVISIONS, inserted).map(|_| ())
}

/// Serialises changes to the HNSW indexes for the rest of the transaction: two servers that
/// start at once would otherwise race to create the same index.
async fn lock_vector_indexes(conn: &mut PgConnection) -> Result<()> {
    let locked =
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('contextiq.memories_embedding_hnsw'))").execute(conn).await;
    record("lock", TABLE, locked).map(|_| ())
}

/// Drops the HNSW indexes of every dimension but `keep` (all of them when `None`).
async fn drop_hnsw_indexes_except(conn: &mut PgConnection, keep: Option<usize>) -> Result<()> {
    let names: sqlx::Result<Vec<(String,)>> = sqlx::query_as(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'memories' \
         AND starts_with(indexname, $1)",
    )
    .bind(HNSW_INDEX_PREFIX)
    .fetch_all(&mut *conn)
    .await;
    for (name,) in record("select", "pg_indexes", names)? {
        let dimension = name.strip_prefix(HNSW_INDEX_PREFIX).and_then(|suffix| suffix.parse::<usize>().ok());
        if dimension.is_some() && dimension == keep {
            continue;
        }
        // The name comes from the catalog, quoted as an identifier.
        let sql = format!("DROP INDEX IF EXISTS \"{}\"", name.replace('"', "\"\""));
        record("index", TABLE, sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await)?;
    }
    Ok(())
}

/// The text form of a pgvector value, `[0.1,0.2]`, cast to `vector` in SQL.
fn vector_text(vector: &[f32]) -> String {
    let components: Vec<String> = vector.iter().map(f32::to_string).collect();
    format!("[{}]", components.join(","))
}

/// The text form of the passages' vectors, `{"[0.1,0.2]","[0.3,0.4]"}`, cast to `vector[]` in
/// SQL; `None` (NULL) when there are none.
fn passages_text(vectors: &MemoryVectors) -> Option<String> {
    let passages: Vec<String> = vectors.passages.iter().map(|vector| format!("\"{}\"", vector_text(vector))).collect();
    (!passages.is_empty()).then(|| format!("{{{}}}", passages.join(",")))
}

/// SQL for a row's best similarity to the query vector `$1` among its passages' vectors of
/// that dimension (NULL without any).
fn best_passage_similarity(dimension: usize) -> String {
    format!(
        "(SELECT max(1 - (passage <=> $1::vector({dimension}))) FROM unnest(passages) AS passage \
         WHERE vector_dims(passage) = {dimension})"
    )
}

/// The `to_tsquery` text for free text: its distinct words, any of them matching. Each word
/// is alphanumeric only, so nothing in the text is tsquery syntax. `None` without words.
fn any_word_query(text: &str) -> Option<String> {
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
    if words.is_empty() { None } else { Some(words.join(" | ")) }
}

fn memory_from_row(row: &PgRow) -> Result<StoredMemory> {
    let memory = Memory {
        org_id: OrgId::new(get::<String>(row, TABLE, "org_id")?),
        id: get(row, TABLE, "id")?,
        scope: json(row, TABLE, "scope")?,
        fact: get(row, TABLE, "fact")?,
        topic: get(row, TABLE, "topic")?,
        confidence: get(row, TABLE, "confidence")?,
        source_session_id: get(row, TABLE, "source_session_id")?,
        source_event_ids: json(row, TABLE, "source_event_ids")?,
        metadata: json(row, TABLE, "metadata")?,
        said_at: get(row, TABLE, "said_at")?,
        created_at: get(row, TABLE, "created_at")?,
        updated_at: get(row, TABLE, "updated_at")?,
        expires_at: get(row, TABLE, "expires_at")?,
    };
    Ok(StoredMemory { memory, deleted_at: get(row, TABLE, "deleted_at")? })
}

fn revision_from_row(row: &PgRow) -> Result<Revision> {
    let snapshot = |column: &str| -> Result<Option<MemorySnapshot>> {
        optional_json(row, column)?.map(serde_json::from_value).transpose().map_err(|err| corrupt(REVISIONS, err))
    };
    let action: String = get(row, REVISIONS, "action")?;
    Ok(Revision {
        id: get(row, REVISIONS, "id")?,
        memory_id: get(row, REVISIONS, "memory_id")?,
        org_id: OrgId::new(get::<String>(row, REVISIONS, "org_id")?),
        action: RevisionAction::parse(&action)
            .ok_or_else(|| corrupt(REVISIONS, format!("unknown action {action:?}")))?,
        before: snapshot("before")?,
        after: snapshot("after")?,
        actor: get(row, REVISIONS, "actor")?,
        job_id: get(row, REVISIONS, "job_id")?,
        cause: optional_json(row, "cause")?,
        created_at: get(row, REVISIONS, "created_at")?,
    })
}

/// A nullable JSONB column of a revision.
fn optional_json(row: &PgRow, column: &str) -> Result<Option<Value>> {
    row.try_get(column).map_err(|err| corrupt(REVISIONS, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_becomes_a_safe_tsquery() {
        assert_eq!(
            any_word_query(r#"What did "Caroline" do -- NEAR(x) | !x & 'y':*?"#).as_deref(),
            Some("what | did | caroline | do | near | x | y")
        );
        assert_eq!(any_word_query("  ?! "), None);
    }

    #[test]
    fn vectors_take_pgvector_text_form() {
        assert_eq!(vector_text(&[0.5, -1.0, 0.1]), "[0.5,-1,0.1]");
    }
}
