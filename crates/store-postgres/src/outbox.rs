//! `VectorOutbox` on PostgreSQL. The trigger of migration 0002 fills `vector_outbox` in the
//! transaction of every memory write made on a connection whose `contextiq.vector_outbox`
//! setting is `on`, which a store opened with the `vector_outbox` option gives each of its
//! connections; this module reads the memories' vector records (pgvector cast to `real[]`) and
//! the entries.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{OrgId, Result, VectorOutbox, VectorRecord, VectorState};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::PostgresStore;
use crate::rows::{corrupt, record};

const TABLE: &str = "vector_outbox";
const MEMORIES: &str = "memories";

/// Sets whether the memory writes made on `conn` record entries, for the rest of its session;
/// run on every new connection of the pool. Explicit either way, so a default set for the
/// database or role (`ALTER DATABASE ... SET`) cannot turn on the outbox of a store opened
/// without it. Other connections are unaffected.
pub(crate) async fn record_writes(conn: &mut PgConnection, enabled: bool) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('contextiq.vector_outbox', $1, false)")
        .bind(if enabled { "on" } else { "off" })
        .execute(conn)
        .await
        .map(|_| ())
}

/// A row of [`VectorOutbox::vector_state`]: a record (the first four) or an entry (the last).
type StateRow = (Option<Uuid>, Option<String>, Option<String>, Option<Vec<f32>>, Option<i64>);

#[async_trait]
impl VectorOutbox for PostgresStore {
    async fn vector_state(&self, ids: &[Uuid]) -> Result<VectorState> {
        if ids.is_empty() {
            return Ok(VectorState::default());
        }
        // One statement, so one snapshot, even under READ COMMITTED.
        let rows: sqlx::Result<Vec<StateRow>> = sqlx::query_as(concat!(
            "SELECT id, org_id, scope_key, embedding::real[], NULL::bigint FROM memories ",
            "WHERE id = ANY($1) AND deleted_at IS NULL ",
            "UNION ALL SELECT NULL, NULL, NULL, NULL, seq FROM vector_outbox WHERE memory_id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await;
        let mut state = VectorState::default();
        for row in record("select", TABLE, rows)? {
            match row {
                (Some(memory_id), Some(org_id), Some(scope_key), Some(embedding), None) => {
                    state.records.push(VectorRecord { memory_id, org_id: OrgId::new(org_id), scope_key, embedding });
                }
                (None, None, None, None, Some(seq)) => state.entries.push(seq),
                row => return Err(corrupt(MEMORIES, format!("unexpected vector state row {row:?}"))),
            }
        }
        state.records.sort_by_key(|record| record.memory_id);
        state.entries.sort_unstable();
        Ok(state)
    }

    async fn ack_vector_entries(&self, entries: &[i64]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let deleted =
            sqlx::query("DELETE FROM vector_outbox WHERE seq = ANY($1)").bind(entries).execute(&self.pool).await;
        record("delete", TABLE, deleted).map(|_| ())
    }

    async fn pending_vector_memories(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>> {
        // Walks the entries in seq order, a page at a time, until `limit` memories turned up:
        // a backlog is never read whole (nor grouped) to find the oldest few.
        let limit = limit as usize;
        let page_size = limit.saturating_mul(4).clamp(64, 4096);
        let (mut ids, mut seen, mut after_seq) = (Vec::new(), HashSet::new(), 0);
        while ids.len() < limit {
            let rows: sqlx::Result<Vec<(i64, Uuid)>> = sqlx::query_as(
                "SELECT seq, memory_id FROM vector_outbox WHERE seq > $1 AND created_at < $2 ORDER BY seq LIMIT $3",
            )
            .bind(after_seq)
            .bind(before)
            .bind(page_size as i64)
            .fetch_all(&self.pool)
            .await;
            let rows = record("select", TABLE, rows)?;
            for (seq, memory_id) in &rows {
                after_seq = *seq;
                if ids.len() < limit && seen.insert(*memory_id) {
                    ids.push(*memory_id);
                }
            }
            if rows.len() < page_size {
                break;
            }
        }
        Ok(ids)
    }

    async fn vector_records_after(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<VectorRecord>> {
        // Two forms rather than `$1 IS NULL OR id > $1`, which a generic plan cannot turn into
        // a range of the primary key.
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT id, org_id, scope_key, embedding::real[] FROM memories WHERE ");
        if let Some(after) = after {
            query.push("id > ").push_bind(after).push(" AND ");
        }
        query.push("deleted_at IS NULL ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows = query.build_query_as::<(Uuid, String, String, Vec<f32>)>().fetch_all(&self.pool).await;
        Ok(record("select", MEMORIES, rows)?
            .into_iter()
            .map(|(memory_id, org_id, scope_key, embedding)| VectorRecord {
                memory_id,
                org_id: OrgId::new(org_id),
                scope_key,
                embedding,
            })
            .collect())
    }
}
