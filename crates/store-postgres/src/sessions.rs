//! `SessionStore` on PostgreSQL. Appends reserve their sequence numbers with one
//! `UPDATE ... RETURNING` on the session row, whose row lock orders concurrent appends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::session::{SessionPatch, apply_state_delta, check_state_size};
use contextiq_core::{
    Appended, Error, Event, EventKind, NewEvent, OrgId, Result, Session, SessionFilter, SessionPage, SessionStore,
};
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::rows::{event_from_row, record, session_from_row};
use crate::{PostgresStore, applied_at, cut_page, push_page};

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, session: Session) -> Result<Session> {
        let result = sqlx::query(concat!(
            "INSERT INTO sessions (org_id, id, user_id, agent_id, scope, state, metadata, ",
            "created_at, updated_at, expires_at, event_count, compaction_policy) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11)"
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
        .bind(session.compaction.policy.as_ref().map(sqlx::types::Json))
        .execute(&self.pool)
        .await;
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
        // One repeatable-read transaction: the session and its events come from one snapshot.
        let mut snapshot = record("begin", "sessions", self.pool.begin().await)?;
        record(
            "begin",
            "sessions",
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *snapshot).await,
        )?;
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
        let deltas: Vec<_> =
            new_events.iter().map(|event| &event.state_delta).filter(|delta| !delta.is_empty()).collect();
        // The state first, under the row lock the append takes anyway: a delta that outgrows the
        // limit refuses the append before any write.
        if !deltas.is_empty() {
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
            for delta in deltas {
                apply_state_delta(&mut state, delta);
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
        let n_tokens: i64 = new_events.iter().map(|event| i64::from(event.token_count)).sum();
        let messages = new_events.iter().filter(|event| event.kind == EventKind::Message);
        let (n_messages, message_tokens) =
            messages.fold((0i64, 0i64), |(n, tokens), event| (n + 1, tokens + i64::from(event.token_count)));
        let compacted_through = new_events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::Compaction(compaction) => Some(compaction.end_seq),
                EventKind::Message => None,
            })
            .max();
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
                .push_bind(match &event.kind {
                    EventKind::Message => None,
                    EventKind::Compaction(compaction) => Some(sqlx::types::Json(compaction)),
                });
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

    async fn compaction_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
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

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let result = sqlx::query(
            "DELETE FROM sessions WHERE org_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(org.as_str())
        .bind(id)
        .bind(applied_at(now))
        .execute(&self.pool)
        .await;
        if record("delete", "sessions", result)?.rows_affected() == 0 {
            return Err(Error::session_not_found());
        }
        Ok(())
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
