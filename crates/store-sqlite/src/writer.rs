//! The one writer: applies queued writes in groups, one transaction per group.

use chrono::{DateTime, Utc};
use contextiq_core::session::check_state_size;
use contextiq_core::{ApiKey, Error, Event, NewEvent, OrgId, Result, Session, merge_patch, to_micros};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::rows::{count, key_from_row, micros, session_from_row};

type Reply<T> = oneshot::Sender<Result<T>>;

/// A write waiting for the writer, with where to send its outcome.
pub(crate) enum WriteOp {
    CreateSession {
        session: Session,
        reply: Reply<Session>,
    },
    AppendEvents {
        org: OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
        reply: Reply<Vec<Event>>,
    },
    PatchState {
        org: OrgId,
        session_id: Uuid,
        patch: Value,
        max_state_bytes: u64,
        now: DateTime<Utc>,
        reply: Reply<Session>,
    },
    DeleteSession {
        org: OrgId,
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
    PurgeExpiredSessions {
        now: DateTime<Utc>,
        batch: u32,
        reply: Reply<u64>,
    },
    CreateKey {
        key: ApiKey,
        reply: Reply<ApiKey>,
    },
    RevokeKey {
        org: Option<OrgId>,
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<ApiKey>,
    },
    TouchKey {
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
}

/// The group holding a write failed and was rolled back.
#[derive(Debug, thiserror::Error)]
#[error("the write was not committed")]
pub(crate) struct NotCommitted;

/// Sends a write's outcome; run only once its group has committed.
type Completion = Box<dyn FnOnce() + Send>;

fn complete<T: Send + 'static>(reply: Reply<T>, outcome: Result<T>) -> Completion {
    Box::new(move || {
        // The client may have gone away; the write stands either way.
        let _ = reply.send(outcome);
    })
}

pub(crate) struct Writer {
    conn: SqliteConnection,
    max_batch: usize,
}

impl Writer {
    pub(crate) fn new(conn: SqliteConnection, max_batch: usize) -> Writer {
        Writer { conn, max_batch }
    }

    /// Runs until every sender is dropped and the queue is drained, then closes the
    /// connection (which checkpoints the WAL).
    pub(crate) async fn run(mut self, mut receiver: mpsc::Receiver<WriteOp>) {
        let mut group = Vec::with_capacity(self.max_batch);
        while receiver.recv_many(&mut group, self.max_batch).await > 0 {
            let n_writes = group.len();
            metrics::histogram!("db_write_group_size").record(n_writes as f64);
            match self.commit_group(group.drain(..)).await {
                Ok(completions) => completions.into_iter().for_each(|complete| complete()),
                Err(err) => {
                    // The group's replies were dropped with it: each waiting request fails
                    // and none of them was acknowledged.
                    tracing::error!(error = %err, n_writes, "SQLite write group failed and was rolled back");
                    if let Err(err) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                        tracing::debug!(error = %err, "nothing to roll back");
                    }
                }
            }
        }
        if let Err(err) = self.conn.close().await {
            tracing::error!(error = %err, "closing the SQLite write connection failed");
        }
    }

    async fn commit_group(&mut self, writes: impl Iterator<Item = WriteOp>) -> sqlx::Result<Vec<Completion>> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await?;
        let mut completions = Vec::with_capacity(writes.size_hint().0);
        for write in writes {
            completions.push(self.apply(write).await?);
        }
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        Ok(completions)
    }

    /// Applies one write inside the open transaction. A domain failure (not found, too large)
    /// writes nothing and becomes that write's outcome; a database failure fails the group.
    async fn apply(&mut self, write: WriteOp) -> sqlx::Result<Completion> {
        // The time the write applies, not the time it was queued: see `SessionStore`.
        let applied_at = |queued_at: DateTime<Utc>| to_micros(queued_at.max(Utc::now()));
        Ok(match write {
            WriteOp::CreateSession { session, reply } => {
                let result = sqlx::query(concat!(
                    "INSERT INTO sessions (org_id, id, user_id, agent_id, scope, state, metadata, ",
                    "created_at, updated_at, expires_at, event_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
                ))
                .bind(session.org_id.as_str())
                .bind(session.id.to_string())
                .bind(session.user_id.as_str())
                .bind(session.agent_id.as_deref())
                .bind(json_text(&session.scope)?)
                .bind(json_text(&session.state)?)
                .bind(json_text(&session.metadata)?)
                .bind(micros(session.created_at))
                .bind(micros(session.updated_at))
                .bind(session.expires_at.map(micros))
                .execute(&mut self.conn)
                .await;
                count("insert", "sessions", result)?;
                complete(reply, Ok(session))
            }
            WriteOp::AppendEvents { org, session_id, events, now, reply } => {
                let outcome = self.append_events(&org, session_id, events, applied_at(now)).await?;
                complete(reply, outcome)
            }
            WriteOp::PatchState { org, session_id, patch, max_state_bytes, now, reply } => {
                let outcome = self.patch_state(&org, session_id, &patch, max_state_bytes, applied_at(now)).await?;
                complete(reply, outcome)
            }
            WriteOp::DeleteSession { org, id, now, reply } => {
                let now = applied_at(now);
                let result = sqlx::query(
                    "DELETE FROM sessions WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
                )
                .bind(org.as_str())
                .bind(id.to_string())
                .bind(micros(now))
                .execute(&mut self.conn)
                .await;
                let n_deleted = count("delete", "sessions", result)?.rows_affected();
                complete(reply, if n_deleted == 0 { Err(Error::session_not_found()) } else { Ok(()) })
            }
            WriteOp::PurgeExpiredSessions { now, batch, reply } => {
                let result = sqlx::query(concat!(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ",
                    "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)"
                ))
                .bind(micros(now))
                .bind(i64::from(batch))
                .execute(&mut self.conn)
                .await;
                complete(reply, Ok(count("purge", "sessions", result)?.rows_affected()))
            }
            WriteOp::CreateKey { key, reply } => {
                let result = sqlx::query(concat!(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, permissions, scope, ",
                    "rate_limit_per_second, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(key.id.to_string())
                .bind(key.org_id.as_str())
                .bind(key.name.as_str())
                .bind(key.key_hash.as_str())
                .bind(key.prefix.as_str())
                .bind(json_text(&key.permissions)?)
                .bind(key.scope.as_ref().map(json_text).transpose()?)
                .bind(key.rate_limit_per_second.map(i64::from))
                .bind(micros(key.created_at))
                .bind(key.expires_at.map(micros))
                .execute(&mut self.conn)
                .await;
                count("insert", "api_keys", result)?;
                complete(reply, Ok(key))
            }
            WriteOp::RevokeKey { org, id, now, reply } => {
                let result = sqlx::query(concat!(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) ",
                    "WHERE id = ?2 AND (?3 IS NULL OR org_id = ?3) RETURNING *"
                ))
                .bind(micros(applied_at(now)))
                .bind(id.to_string())
                .bind(org.as_ref().map(OrgId::as_str))
                .fetch_optional(&mut self.conn)
                .await;
                let revoked = count("update", "api_keys", result)?;
                complete(reply, revoked.as_ref().map_or_else(|| Err(Error::key_not_found()), key_from_row))
            }
            WriteOp::TouchKey { id, now, reply } => {
                let result = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                    .bind(micros(now))
                    .bind(id.to_string())
                    .execute(&mut self.conn)
                    .await;
                count("update", "api_keys", result)?;
                complete(reply, Ok(()))
            }
        })
    }

    async fn append_events(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        new_events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Vec<Event>>> {
        let n_events = new_events.len() as i64;
        // Checks the session is alive and reserves the sequence numbers in one statement; the
        // single writer makes the reservation race-free.
        let reserved: sqlx::Result<Option<(i64,)>> = sqlx::query_as(concat!(
            "UPDATE sessions SET event_count = event_count + ?, updated_at = ? ",
            "WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?) RETURNING event_count"
        ))
        .bind(n_events)
        .bind(micros(now))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut self.conn)
        .await;
        let Some((last_seq,)) = count("update", "sessions", reserved)? else {
            return Ok(Err(Error::session_not_found()));
        };
        let events: Vec<Event> = new_events
            .into_iter()
            .zip(last_seq - n_events + 1..)
            .map(|(new, seq)| Event {
                id: Uuid::now_v7(),
                session_id,
                seq,
                author: new.author,
                role: new.role,
                content: new.content,
                metadata: new.metadata,
                timestamp: new.timestamp.unwrap_or(now),
                invocation_id: new.invocation_id,
            })
            .collect();
        let mut encoded = Vec::with_capacity(events.len());
        for event in &events {
            encoded.push((json_text(&event.content)?, json_text(&event.metadata)?));
        }
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (session_id, seq, org_id, id, author, role, content, metadata, timestamp, invocation_id) ",
        );
        insert.push_values(events.iter().zip(encoded), |mut row, (event, (content, metadata))| {
            row.push_bind(session_id.to_string())
                .push_bind(event.seq)
                .push_bind(org.as_str())
                .push_bind(event.id.to_string())
                .push_bind(event.author.as_str())
                .push_bind(event.role.as_str())
                .push_bind(content)
                .push_bind(metadata)
                .push_bind(micros(event.timestamp))
                .push_bind(event.invocation_id.as_deref());
        });
        count("insert", "events", insert.build().execute(&mut self.conn).await)?;
        Ok(Ok(events))
    }

    async fn patch_state(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        patch: &Value,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Session>> {
        let current: sqlx::Result<Option<(String,)>> = sqlx::query_as(
            "SELECT state FROM sessions WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut self.conn)
        .await;
        let Some((state_text,)) = count("select", "sessions", current)? else {
            return Ok(Err(Error::session_not_found()));
        };
        let mut state: Value = serde_json::from_str(&state_text).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
        merge_patch::apply(&mut state, patch);
        let Value::Object(state) = state else {
            return Ok(Err(Error::validation("state", "a merge patch of the state must be a JSON object")));
        };
        if let Err(err) = check_state_size(&state, max_state_bytes) {
            return Ok(Err(err));
        }
        let updated =
            sqlx::query("UPDATE sessions SET state = ?, updated_at = ? WHERE org_id = ? AND id = ? RETURNING *")
                .bind(json_text(&state)?)
                .bind(micros(now))
                .bind(org.as_str())
                .bind(session_id.to_string())
                .fetch_one(&mut self.conn)
                .await;
        let row = count("update", "sessions", updated)?;
        Ok(session_from_row(&row))
    }
}

fn json_text(value: &impl Serialize) -> sqlx::Result<String> {
    serde_json::to_string(value).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}
