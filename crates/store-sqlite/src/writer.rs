//! The one writer: applies queued writes in groups, one transaction per group.

use chrono::{DateTime, Utc};
use contextiq_core::session::check_state_size;
use std::sync::Arc;

use contextiq_core::memory::scope_key;
use contextiq_core::{
    ApiKey, Error, Event, Memory, NewEvent, OrgId, Result, Revision, Session, merge_patch, to_micros,
};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::memories::scope_tag;
use crate::rows::{count, key_from_row, micros, session_from_row};
use crate::vectors::{VectorCache, VectorChange, encode};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

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
        reply: Reply<Vec<ApiKey>>,
    },
    TouchKey {
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
    InsertMemory {
        memory: Memory,
        embedding: Vec<f32>,
        revision: Revision,
        reply: Reply<Memory>,
    },
    UpdateMemory {
        memory: Memory,
        embedding: Option<Vec<f32>>,
        revision: Revision,
        now: DateTime<Utc>,
        reply: Reply<Memory>,
    },
    DeleteMemory {
        org: OrgId,
        id: Uuid,
        revision: Revision,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
    RestoreMemory {
        memory: Memory,
        embedding: Vec<f32>,
        revision: Revision,
        reply: Reply<Memory>,
    },
    PurgeMemory {
        org: OrgId,
        id: Uuid,
        reply: Reply<()>,
    },
    PurgeExpiredMemories {
        now: DateTime<Utc>,
        batch: u32,
        reply: Reply<u64>,
    },
    SetEmbeddingModel {
        model_id: String,
        dimension: usize,
        reply: Reply<()>,
    },
    SetEmbeddings {
        embeddings: Vec<(Uuid, Vec<f32>)>,
        reply: Reply<()>,
    },
    Job(crate::jobs::JobWrite),
    AckVectorEntries {
        entries: Vec<i64>,
        reply: Reply<()>,
    },
}

/// The group holding a write failed and was rolled back.
#[derive(Debug, thiserror::Error)]
#[error("the write was not committed")]
pub(crate) struct NotCommitted;

/// Whether the last group that failed failed because SQLite could not serve (busy, disk full,
/// I/O): the writes of a failed group get no reply, so their waiters learn the cause here.
#[derive(Debug, Default)]
pub(crate) struct LastFailure(std::sync::atomic::AtomicBool);

impl LastFailure {
    pub(crate) fn was_outage(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn record(&self, err: &sqlx::Error) {
        self.0.store(crate::rows::is_outage(err), std::sync::atomic::Ordering::Release);
    }
}

/// Sends a write's outcome; run only once its group has committed.
pub(crate) type Completion = Box<dyn FnOnce() + Send>;

pub(crate) fn complete<T: Send + 'static>(reply: Reply<T>, outcome: Result<T>) -> Completion {
    Box::new(move || {
        // The client may have gone away; the write stands either way.
        let _ = reply.send(outcome);
    })
}

pub(crate) struct Writer {
    pub(crate) last_failure: Arc<LastFailure>,
    pub(crate) conn: SqliteConnection,
    max_batch: usize,
    vectors: Arc<VectorCache>,
}

impl Writer {
    pub(crate) fn new(
        conn: SqliteConnection,
        max_batch: usize,
        vectors: Arc<VectorCache>,
        last_failure: Arc<LastFailure>,
    ) -> Writer {
        Writer { last_failure, conn, max_batch, vectors }
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

    async fn commit_group(&mut self, mut writes: impl Iterator<Item = WriteOp>) -> sqlx::Result<Vec<Completion>> {
        let mut completions = Vec::with_capacity(writes.size_hint().0);
        let outcome = self.apply_group(&mut writes, &mut completions).await;
        if let Err(err) = &outcome {
            // Before the replies are dropped with `writes` and `completions`: their waiters
            // read it as soon as they see the drop.
            self.last_failure.record(err);
        }
        outcome.map(|()| completions)
    }

    async fn apply_group(
        &mut self,
        writes: &mut impl Iterator<Item = WriteOp>,
        completions: &mut Vec<Completion>,
    ) -> sqlx::Result<()> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await?;
        for write in writes {
            completions.push(self.apply(write).await?);
        }
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        Ok(())
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
                // The parent's revocation goes through this same writer, so the check and the
                // insert cannot interleave with it.
                if let Some(parent_id) = key.parent_id {
                    let parent: sqlx::Result<Option<(Option<i64>,)>> =
                        sqlx::query_as("SELECT revoked_at FROM api_keys WHERE id = ?")
                            .bind(parent_id.to_string())
                            .fetch_optional(&mut self.conn)
                            .await;
                    if !matches!(count("select", "api_keys", parent)?, Some((None,))) {
                        return Ok(complete(
                            reply,
                            Err(Error::Forbidden("the key minting a key has been revoked".to_owned())),
                        ));
                    }
                }
                let result = sqlx::query(concat!(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, permissions, scope, ",
                    "rate_limit_per_second, created_at, expires_at, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
                .bind(key.parent_id.map(|id| id.to_string()))
                .execute(&mut self.conn)
                .await;
                count("insert", "api_keys", result)?;
                complete(reply, Ok(key))
            }
            WriteOp::RevokeKey { org, id, now, reply } => {
                let result = sqlx::query(concat!(
                    "WITH RECURSIVE minted (id) AS (",
                    "SELECT id FROM api_keys WHERE id = ?2 AND (?3 IS NULL OR org_id = ?3) ",
                    "UNION SELECT child.id FROM api_keys AS child JOIN minted ON child.parent_id = minted.id) ",
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) ",
                    "WHERE id IN (SELECT id FROM minted) RETURNING *"
                ))
                .bind(micros(applied_at(now)))
                .bind(id.to_string())
                .bind(org.as_ref().map(OrgId::as_str))
                .fetch_all(&mut self.conn)
                .await;
                let revoked = count("update", "api_keys", result)?;
                let keys = revoked.iter().map(key_from_row).collect::<Result<Vec<_>>>().and_then(|mut keys| {
                    keys.sort_by_key(|key| key.id != id);
                    if keys.is_empty() { Err(Error::key_not_found()) } else { Ok(keys) }
                });
                complete(reply, keys)
            }
            WriteOp::InsertMemory { memory, embedding, revision, reply } => {
                let change = self.insert_memory(&memory, embedding, &revision).await?;
                self.complete_with(vec![change], reply, Ok(memory))
            }
            WriteOp::UpdateMemory { memory, embedding, revision, now, reply } => {
                let live_at = Some(applied_at(now));
                match self.rewrite_memory(&memory, embedding, &revision, live_at, None).await? {
                    Some(changes) => self.complete_with(changes, reply, Ok(memory)),
                    None => complete(reply, Err(Error::memory_not_found())),
                }
            }
            WriteOp::DeleteMemory { org, id, revision, now, reply } => {
                match self.delete_memory(&org, id, &revision, applied_at(now), None).await? {
                    Some(change) => self.complete_with(vec![change], reply, Ok(())),
                    None => complete(reply, Err(Error::memory_not_found())),
                }
            }
            WriteOp::RestoreMemory { memory, embedding, revision, reply } => {
                match self.rewrite_memory(&memory, Some(embedding), &revision, None, None).await? {
                    Some(changes) => self.complete_with(changes, reply, Ok(memory)),
                    None => complete(reply, Err(Error::memory_not_found())),
                }
            }
            WriteOp::PurgeMemory { org, id, reply } => {
                let purged = sqlx::query("DELETE FROM memories WHERE org_id = ? AND id = ? RETURNING rowid, scope")
                    .bind(org.as_str())
                    .bind(id.to_string())
                    .fetch_optional(&mut self.conn)
                    .await;
                let Some(row) = count("purge", "memories", purged)? else {
                    return Ok(complete(reply, Err(Error::memory_not_found())));
                };
                let (rowid, scope): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
                self.unindex_fact(rowid).await?;
                self.erase_history(org.as_str(), &id.to_string()).await?;
                let change = VectorChange::Remove { scope_tag: scope_tag(&org, &scope), id };
                self.complete_with(vec![change], reply, Ok(()))
            }
            WriteOp::PurgeExpiredMemories { now, batch, reply } => {
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
                if n_purged == 0 {
                    complete(reply, Ok(0))
                } else {
                    self.complete_with(vec![VectorChange::Reset], reply, Ok(n_purged))
                }
            }
            WriteOp::SetEmbeddingModel { model_id, dimension, reply } => {
                let result = sqlx::query(
                    "INSERT OR REPLACE INTO embedding_model (singleton, model_id, dimension) VALUES (1, ?, ?)",
                )
                .bind(model_id)
                .bind(dimension as i64)
                .execute(&mut self.conn)
                .await;
                count("upsert", "embedding_model", result)?;
                complete(reply, Ok(()))
            }
            WriteOp::SetEmbeddings { embeddings, reply } => {
                for (id, vector) in &embeddings {
                    let result = sqlx::query("UPDATE memories SET embedding = ? WHERE id = ?")
                        .bind(encode(vector))
                        .bind(id.to_string())
                        .execute(&mut self.conn)
                        .await;
                    count("update", "memories", result)?;
                }
                self.complete_with(vec![VectorChange::Reset], reply, Ok(()))
            }
            WriteOp::Job(write) => self.apply_job_write(write).await?,
            WriteOp::AckVectorEntries { entries, reply } => {
                let result = sqlx::query("DELETE FROM vector_outbox WHERE seq IN (SELECT value FROM json_each(?))")
                    .bind(json_text(&entries)?)
                    .execute(&mut self.conn)
                    .await;
                count("delete", "vector_outbox", result)?;
                complete(reply, Ok(()))
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

impl Writer {
    /// Inserts a new memory with its revision and indexes; returns the vector change to apply
    /// after the commit.
    pub(crate) async fn insert_memory(
        &mut self,
        memory: &Memory,
        embedding: Vec<f32>,
        revision: &Revision,
    ) -> sqlx::Result<VectorChange> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO memories (org_id, id, scope, fact, topic, confidence, source_session_id, ",
            "source_event_ids, metadata, embedding, created_at, updated_at, expires_at) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rowid"
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
        .bind(encode(&embedding))
        .bind(micros(memory.created_at))
        .bind(micros(memory.updated_at))
        .bind(memory.expires_at.map(micros))
        .fetch_one(&mut self.conn)
        .await;
        let rowid: i64 = count("insert", "memories", inserted)?.try_get(0)?;
        self.index_fact(rowid, memory).await?;
        self.insert_revision(revision).await?;
        Ok(VectorChange::Upsert { scope_tag: memory_scope_tag(memory), id: memory.id, vector: embedding })
    }

    /// Replaces a memory's fields (and its vector, when given) and records the revision.
    /// With `live_at`, only a memory live at that time qualifies (an update); without, a
    /// deleted or expired one does too, and comes back to life (a restore). With
    /// `expected_updated_at`, only a memory not changed since qualifies. `None`: nothing
    /// qualified and nothing was written.
    pub(crate) async fn rewrite_memory(
        &mut self,
        memory: &Memory,
        embedding: Option<Vec<f32>>,
        revision: &Revision,
        live_at: Option<DateTime<Utc>>,
        expected_updated_at: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Option<Vec<VectorChange>>> {
        let rewritten = sqlx::query(concat!(
            "UPDATE memories SET fact = ?, topic = ?, confidence = ?, source_session_id = ?, ",
            "source_event_ids = ?, metadata = ?, embedding = COALESCE(?, embedding), updated_at = ?, ",
            "expires_at = ?, deleted_at = NULL WHERE org_id = ? AND id = ? ",
            "AND (?12 IS NULL OR (deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?12))) ",
            "AND (?13 IS NULL OR updated_at = ?13) RETURNING rowid"
        ))
        .bind(memory.fact.as_str())
        .bind(memory.topic.as_deref())
        .bind(memory.confidence)
        .bind(memory.source_session_id.map(|id| id.to_string()))
        .bind(json_text(&memory.source_event_ids)?)
        .bind(json_text(&memory.metadata)?)
        .bind(embedding.as_deref().map(encode))
        .bind(micros(memory.updated_at))
        .bind(memory.expires_at.map(micros))
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
            Some(vector) => {
                vec![VectorChange::Upsert { scope_tag: memory_scope_tag(memory), id: memory.id, vector }]
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

    /// After the commit: update the vector cache, then answer.
    pub(crate) fn complete_with<T: Send + 'static>(
        &self,
        changes: Vec<VectorChange>,
        reply: Reply<T>,
        outcome: Result<T>,
    ) -> Completion {
        let vectors = self.vectors.clone();
        Box::new(move || {
            changes.into_iter().for_each(|change| vectors.apply(change));
            let _ = reply.send(outcome);
        })
    }
}

fn memory_scope_tag(memory: &Memory) -> String {
    scope_tag(&memory.org_id, &scope_key(&memory.scope))
}

pub(crate) fn json_text(value: &impl Serialize) -> sqlx::Result<String> {
    serde_json::to_string(value).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}
