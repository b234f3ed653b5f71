//! `SessionStore` on PostgreSQL. Appends reserve their sequence numbers with one
//! `UPDATE ... RETURNING` on the session row, whose row lock orders concurrent appends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::session::{AppendTotals, SessionPatch, apply_event_state, check_state_size};
use contextiq_core::{
    Appended, Error, Event, NewEvent, OrgId, Result, Session, SessionFilter, SessionPage, SessionStore, StateHistory,
    StatePatch,
};
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::rows::{event_from_row, record, session_from_row};
use crate::{PostgresStore, applied_at, cut_page, push_page};

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, session: Session) -> Result<Session> {
        let result = insert_session(&session).execute(&self.pool).await;
        record("insert", "sessions", result)?;
        Ok(session)
    }

    async fn get_session(
        &self,
        org: &OrgId,
        id: Uuid,
        events_limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        // The session and its events come from one snapshot.
        let mut snapshot = read_snapshot(&self.pool).await?;
        let row = sqlx::query(
            "SELECT * FROM sessions WHERE org_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(org.as_str())
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *snapshot)
        .await;
        let row = record("select", "sessions", row)?.ok_or_else(Error::session_not_found)?;
        let mut session = session_from_row(&row)?;
        if let Some(limit) = events_limit {
            let rows = sqlx::query("SELECT * FROM events WHERE session_id = $1 ORDER BY seq LIMIT $2")
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&mut *snapshot)
                .await;
            session.events = Some(record("select", "events", rows)?.iter().map(event_from_row).collect::<Result<_>>()?);
        }
        record("commit", "sessions", snapshot.commit().await)?;
        Ok(session)
    }

    async fn list_sessions(&self, org: &OrgId, filter: &SessionFilter, now: DateTime<Utc>) -> Result<SessionPage> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT * FROM sessions WHERE org_id = ");
        query.push_bind(org.as_str());
        query.push(" AND (expires_at IS NULL OR expires_at > ").push_bind(now).push(")");
        if let Some(user_id) = &filter.user_id {
            query.push(" AND user_id = ").push_bind(user_id.as_str());
        }
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.as_str());
        }
        if let Some(parent_id) = filter.parent_session_id {
            query.push(" AND parent_session_id = ").push_bind(parent_id);
        }
        if let Some(scope) = &filter.scope {
            // Containment: the session's scope holds every pair of the constraint.
            query.push(" AND scope @> ").push_bind(sqlx::types::Json(scope));
        }
        push_page(&mut query, filter.cursor, filter.limit);
        let rows = record("select", "sessions", query.build().fetch_all(&self.pool).await)?;
        let mut sessions = rows.iter().map(session_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = cut_page(&mut sessions, filter.limit, |last| (last.created_at, last.id));
        Ok(SessionPage { sessions, next_cursor })
    }

    async fn append_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        new_events: Vec<NewEvent>,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Appended> {
        let mut tx = record("begin", "events", self.pool.begin().await)?;
        let now = applied_at(now);
        let n_events = new_events.len() as i64;
        // The state first, under the row lock the append takes anyway: a delta that outgrows the
        // limit refuses the append before any write.
        if new_events.iter().any(NewEvent::changes_state) {
            let current: sqlx::Result<Option<(sqlx::types::Json<Map<String, Value>>,)>> = sqlx::query_as(
                "SELECT state FROM sessions WHERE org_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3) \
                 FOR UPDATE",
            )
            .bind(org.as_str())
            .bind(session_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await;
            let Some((sqlx::types::Json(mut state),)) = record("select", "sessions", current)? else {
                return Err(Error::session_not_found());
            };
            for event in &new_events {
                apply_event_state(&mut state, &event.state_delta, &event.kind);
            }
            check_state_size(&state, max_state_bytes)?;
            let updated = sqlx::query("UPDATE sessions SET state = $1 WHERE org_id = $2 AND id = $3")
                .bind(sqlx::types::Json(&state))
                .bind(org.as_str())
                .bind(session_id)
                .execute(&mut *tx)
                .await;
            record("update", "sessions", updated)?;
        }
        let AppendTotals { tokens: n_tokens, messages: n_messages, message_tokens, compacted_through } =
            AppendTotals::of(&new_events);
        // Checks the session is alive and reserves the sequence numbers; the row lock it takes
        // holds concurrent appends to the same session until this transaction ends.
        let reserved: sqlx::Result<Option<(i64,)>> = sqlx::query_as(concat!(
            "UPDATE sessions SET event_count = event_count + $1, updated_at = $2, token_count = token_count + $5, ",
            "uncompacted_events = uncompacted_events + $6, uncompacted_tokens = uncompacted_tokens + $7 ",
            "WHERE org_id = $3 AND id = $4 AND (expires_at IS NULL OR expires_at > $2) RETURNING event_count"
        ))
        .bind(n_events)
        .bind(now)
        .bind(org.as_str())
        .bind(session_id)
        .bind(n_tokens)
        .bind(n_messages)
        .bind(message_tokens)
        .fetch_optional(&mut *tx)
        .await;
        let Some((last_seq,)) = record("update", "sessions", reserved)? else {
            return Err(Error::session_not_found());
        };
        let events: Vec<Event> = new_events
            .into_iter()
            .zip(last_seq - n_events + 1..)
            .map(|(new, seq)| new.into_event(session_id, seq, now))
            .collect();
        let mut insert = QueryBuilder::<Postgres>::new(concat!(
            "INSERT INTO events (session_id, seq, org_id, id, author, role, content, metadata, timestamp, ",
            "invocation_id, token_count, state_delta, kind, detail) "
        ));
        insert.push_values(&events, |mut row, event| {
            row.push_bind(session_id)
                .push_bind(event.seq)
                .push_bind(org.as_str())
                .push_bind(event.id)
                .push_bind(event.author.as_str())
                .push_bind(event.role.as_str())
                .push_bind(sqlx::types::Json(&event.content))
                .push_bind(sqlx::types::Json(&event.metadata))
                .push_bind(event.timestamp)
                .push_bind(event.invocation_id.as_deref())
                .push_bind(i64::from(event.token_count))
                .push_bind(sqlx::types::Json(&event.state_delta))
                .push_bind(event.kind.name())
                .push_bind(event.kind.detail());
        });
        record("insert", "events", insert.build().execute(&mut *tx).await)?;
        if let Some(end_seq) = compacted_through {
            // What the next compaction reads: the message events after the furthest one.
            let recounted = sqlx::query(concat!(
                "UPDATE sessions SET compacted_through_seq = greatest(compacted_through_seq, $1), ",
                "uncompacted_events = counts.n, uncompacted_tokens = counts.tokens ",
                "FROM (SELECT count(*) AS n, coalesce(sum(e.token_count), 0)::BIGINT AS tokens FROM events e ",
                "JOIN sessions s ON s.id = e.session_id WHERE e.session_id = $2 ",
                "AND e.seq > greatest(s.compacted_through_seq, $1) AND e.kind = 'message') AS counts ",
                "WHERE sessions.id = $2"
            ))
            .bind(end_seq)
            .bind(session_id)
            .execute(&mut *tx)
            .await;
            record("update", "sessions", recounted)?;
        }
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1").bind(session_id).fetch_one(&mut *tx).await;
        let session = session_from_row(&record("select", "sessions", row)?)?;
        record("commit", "events", tx.commit().await)?;
        Ok(Appended { events, session })
    }

    async fn marker_events(&self, org: &OrgId, session_id: Uuid, limit: u32, now: DateTime<Utc>) -> Result<Vec<Event>> {
        let rows = sqlx::query(concat!(
            "SELECT e.* FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = $1 AND s.id = $2 AND (s.expires_at IS NULL OR s.expires_at > $3) ",
            "AND e.kind <> 'message' ORDER BY e.seq DESC LIMIT $4"
        ))
        .bind(org.as_str())
        .bind(session_id)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await;
        record("select", "events", rows)?.iter().map(event_from_row).collect()
    }

    async fn list_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        // The join makes events of an expired or foreign session invisible like the session.
        let rows = sqlx::query(concat!(
            "SELECT e.* FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = $1 AND s.id = $2 AND (s.expires_at IS NULL OR s.expires_at > $3) ",
            "AND e.seq > $4 ORDER BY e.seq LIMIT $5"
        ))
        .bind(org.as_str())
        .bind(session_id)
        .bind(now)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await;
        record("select", "events", rows)?.iter().map(event_from_row).collect()
    }

    async fn patch_state(
        &self,
        org: &OrgId,
        session_id: Uuid,
        patch: SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let mut tx = record("begin", "sessions", self.pool.begin().await)?;
        let now = applied_at(now);
        type Objects = (sqlx::types::Json<Map<String, Value>>, sqlx::types::Json<Map<String, Value>>);
        let current: sqlx::Result<Option<Objects>> = sqlx::query_as(
            "SELECT state, metadata FROM sessions WHERE org_id = $1 AND id = $2 \
             AND (expires_at IS NULL OR expires_at > $3) FOR UPDATE",
        )
        .bind(org.as_str())
        .bind(session_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await;
        let Some((sqlx::types::Json(state), sqlx::types::Json(metadata))) = record("select", "sessions", current)?
        else {
            return Err(Error::session_not_found());
        };
        let (state, metadata) = patch.apply(state, metadata, max_state_bytes)?;
        // The state log: what rebuilds the state at an earlier event.
        if patch.state.as_object().is_some_and(|changes| !changes.is_empty()) {
            let logged = sqlx::query(
                "INSERT INTO state_patches (session_id, after_seq, patch) SELECT id, event_count, $2 FROM sessions WHERE id = $1",
            )
            .bind(session_id)
            .bind(sqlx::types::Json(&patch.state))
            .execute(&mut *tx)
            .await;
            record("insert", "state_patches", logged)?;
        }
        let updated = sqlx::query(
            "UPDATE sessions SET state = $1, metadata = $2, updated_at = $3 WHERE org_id = $4 AND id = $5 RETURNING *",
        )
        .bind(sqlx::types::Json(&state))
        .bind(sqlx::types::Json(&metadata))
        .bind(now)
        .bind(org.as_str())
        .bind(session_id)
        .fetch_one(&mut *tx)
        .await;
        let row = record("update", "sessions", updated)?;
        let session = session_from_row(&row)?;
        record("commit", "sessions", tx.commit().await)?;
        Ok(session)
    }

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        // The session (if alive) and its descendants, whatever their expiry.
        let deleted: sqlx::Result<Vec<(Uuid,)>> = sqlx::query_as(concat!(
            "WITH RECURSIVE doomed(id) AS (SELECT id FROM sessions WHERE org_id = $1 AND id = $2 ",
            "AND (expires_at IS NULL OR expires_at > $3) ",
            "UNION SELECT s.id FROM sessions s JOIN doomed d ON s.parent_session_id = d.id WHERE s.org_id = $1) ",
            "DELETE FROM sessions WHERE id IN (SELECT id FROM doomed) RETURNING id"
        ))
        .bind(org.as_str())
        .bind(id)
        .bind(applied_at(now))
        .fetch_all(&self.pool)
        .await;
        let deleted: Vec<Uuid> = record("delete", "sessions", deleted)?.into_iter().map(|(id,)| id).collect();
        if deleted.is_empty() {
            return Err(Error::session_not_found());
        }
        Ok(deleted)
    }

    async fn state_history(
        &self,
        org: &OrgId,
        session_id: Uuid,
        through_seq: i64,
        now: DateTime<Utc>,
    ) -> Result<StateHistory> {
        use sqlx::types::Json;
        let mut snapshot = read_snapshot(&self.pool).await?;
        type Row = (Option<Json<Map<String, Value>>>, Json<Map<String, Value>>, i64);
        let row: sqlx::Result<Option<Row>> = sqlx::query_as(concat!(
            "SELECT initial_state, state, event_count FROM sessions WHERE org_id = $1 AND id = $2 ",
            "AND (expires_at IS NULL OR expires_at > $3)"
        ))
        .bind(org.as_str())
        .bind(session_id)
        .bind(now)
        .fetch_optional(&mut *snapshot)
        .await;
        let (initial, Json(current), event_count) =
            record("select", "sessions", row)?.ok_or_else(Error::session_not_found)?;
        let events = sqlx::query(concat!(
            "SELECT * FROM events WHERE session_id = $1 AND seq <= $2 ",
            "AND (state_delta <> '{}'::jsonb OR kind = 'rewind') ORDER BY seq"
        ))
        .bind(session_id)
        .bind(through_seq)
        .fetch_all(&mut *snapshot)
        .await;
        let events = record("select", "events", events)?.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        let patches: sqlx::Result<Vec<(i64, Json<Value>)>> = sqlx::query_as(
            "SELECT after_seq, patch FROM state_patches WHERE session_id = $1 AND after_seq <= $2 ORDER BY id",
        )
        .bind(session_id)
        .bind(through_seq)
        .fetch_all(&mut *snapshot)
        .await;
        let patches = record("select", "state_patches", patches)?
            .into_iter()
            .map(|(after_seq, Json(patch))| StatePatch { after_seq, patch })
            .collect();
        record("commit", "sessions", snapshot.commit().await)?;
        Ok(StateHistory { initial: initial.map(|Json(state)| state), current, event_count, events, patches })
    }

    async fn fork_session(
        &self,
        org: &OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Session,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let mut tx = record("begin", "sessions", self.pool.begin().await)?;
        let now = applied_at(now);
        let source: sqlx::Result<Option<(i64,)>> = sqlx::query_as(
            "SELECT event_count FROM sessions WHERE org_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3) \
             FOR SHARE",
        )
        .bind(org.as_str())
        .bind(source_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await;
        match record("select", "sessions", source)? {
            Some((event_count,)) if event_count >= through_seq => {}
            _ => return Err(Error::session_not_found()),
        }
        record("insert", "sessions", insert_session(&fork).execute(&mut *tx).await)?;
        // The fork's history rebuilds like its source's: the same initial state and state log.
        let statements = [
            concat!(
                "UPDATE sessions SET initial_state = (SELECT initial_state FROM sessions WHERE id = $2) ",
                "WHERE id = $1"
            ),
            concat!(
                "INSERT INTO events (session_id, seq, org_id, id, author, role, content, metadata, timestamp, ",
                "invocation_id, token_count, state_delta, kind, detail) ",
                "SELECT $1, seq, org_id, gen_random_uuid(), author, role, content, metadata, timestamp, ",
                "invocation_id, token_count, state_delta, kind, detail FROM events ",
                "WHERE session_id = $2 AND seq <= $3 ORDER BY seq"
            ),
            concat!(
                "INSERT INTO state_patches (session_id, after_seq, patch) SELECT $1, after_seq, patch ",
                "FROM state_patches WHERE session_id = $2 AND after_seq <= $3 ORDER BY id"
            ),
            concat!(
                "UPDATE sessions SET token_count = totals.tokens, compacted_through_seq = totals.through ",
                "FROM (SELECT coalesce(sum(token_count), 0)::BIGINT AS tokens, ",
                "coalesce(max((detail->>'end_seq')::BIGINT) FILTER (WHERE kind = 'compaction'), 0) AS through ",
                "FROM events WHERE session_id = $1) AS totals WHERE sessions.id = $1"
            ),
            concat!(
                "UPDATE sessions SET uncompacted_events = counts.n, uncompacted_tokens = counts.tokens ",
                "FROM (SELECT count(*) AS n, coalesce(sum(e.token_count), 0)::BIGINT AS tokens FROM events e ",
                "JOIN sessions s ON s.id = e.session_id WHERE e.session_id = $1 ",
                "AND e.seq > s.compacted_through_seq AND e.kind = 'message') AS counts WHERE sessions.id = $1"
            ),
        ];
        for statement in statements {
            let done = sqlx::query(statement).bind(fork.id).bind(source_id).bind(through_seq).execute(&mut *tx).await;
            record("fork", "sessions", done)?;
        }
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1").bind(fork.id).fetch_one(&mut *tx).await;
        let session = session_from_row(&record("select", "sessions", row)?)?;
        record("commit", "sessions", tx.commit().await)?;
        Ok(session)
    }

    async fn invocation_span(
        &self,
        org: &OrgId,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, i64)>> {
        let span: sqlx::Result<(Option<i64>, Option<i64>)> = sqlx::query_as(concat!(
            "SELECT min(e.seq), max(e.seq) FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = $1 AND s.id = $2 AND (s.expires_at IS NULL OR s.expires_at > $3) ",
            "AND e.invocation_id = $4"
        ))
        .bind(org.as_str())
        .bind(session_id)
        .bind(now)
        .bind(invocation_id)
        .fetch_one(&self.pool)
        .await;
        Ok(match record("select", "events", span)? {
            (Some(first), Some(last)) => Some((first, last)),
            _ => None,
        })
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        let result = sqlx::query(concat!(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ",
            "WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)"
        ))
        .bind(now)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await;
        Ok(record("purge", "sessions", result)?.rows_affected())
    }

    async fn ping(&self) -> Result<()> {
        record("ping", "sessions", sqlx::query("SELECT 1").execute(&self.pool).await).map(|_| ())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A read-only repeatable-read transaction: every read in it sees one snapshot.
async fn read_snapshot(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
    let mut snapshot = record("begin", "sessions", pool.begin().await)?;
    let isolated =
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *snapshot).await;
    record("begin", "sessions", isolated)?;
    Ok(snapshot)
}

/// The insert of a new session row (created, or forked with its event count).
fn insert_session(session: &Session) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(concat!(
        "INSERT INTO sessions (org_id, id, user_id, agent_id, scope, state, metadata, ",
        "created_at, updated_at, expires_at, event_count, compaction_policy, parent_session_id, ",
        "forked_from_session_id, forked_from_seq, initial_state) ",
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $6)"
    ))
    .bind(session.org_id.as_str())
    .bind(session.id)
    .bind(session.user_id.as_str())
    .bind(session.agent_id.as_deref())
    .bind(sqlx::types::Json(&session.scope))
    .bind(sqlx::types::Json(&session.state))
    .bind(sqlx::types::Json(&session.metadata))
    .bind(session.created_at)
    .bind(session.updated_at)
    .bind(session.expires_at)
    .bind(session.event_count)
    .bind(session.compaction.policy.as_ref().map(sqlx::types::Json))
    .bind(session.parent_session_id)
    .bind(session.forked_from.map(|origin| origin.session_id))
    .bind(session.forked_from.map(|origin| origin.seq))
}
