//! The one writer: applies queued writes in groups, one transaction per group. `apply` only
//! dispatches: the SQL of each kind of write lives in its module (`sessions.rs`, `keys.rs`,
//! `memories.rs`, `jobs.rs`, `outbox.rs`), in `impl Writer` blocks there, and the kinds of write
//! are declared here, so the writer depends on none of those modules.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use contextiq_core::session::SessionPatch;
use contextiq_core::{ApiKey, Error, NewEvent, OrgId, Result, Session, Write, Written, to_micros};
use serde::Serialize;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::vectors::{VectorCache, VectorChange};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A write waiting for the writer, with where to send its outcome.
pub(crate) enum WriteOp {
    Session(SessionWrite),
    Key(KeyWrite),
    /// A write of memories or jobs ([`contextiq_core::MemoryStore::write`]).
    Store {
        write: Box<Write>,
        reply: Reply<Written>,
    },
    AckVectorEntries {
        entries: Vec<i64>,
        reply: Reply<()>,
    },
}

/// A session write waiting for the writer.
pub(crate) enum SessionWrite {
    Create {
        session: Box<Session>,
        reply: Reply<Session>,
    },
    AppendEvents {
        org: OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        max_state_bytes: u64,
        now: DateTime<Utc>,
        reply: Reply<contextiq_core::Appended>,
    },
    PatchState {
        org: OrgId,
        session_id: Uuid,
        patch: SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
        reply: Reply<Session>,
    },
    Delete {
        org: OrgId,
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<Vec<Uuid>>,
    },
    Fork {
        org: OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Box<Session>,
        now: DateTime<Utc>,
        reply: Reply<Session>,
    },
    PurgeExpired {
        now: DateTime<Utc>,
        batch: u32,
        reply: Reply<u64>,
    },
}

/// A key write waiting for the writer.
pub(crate) enum KeyWrite {
    Create {
        key: Box<ApiKey>,
        reply: Reply<ApiKey>,
    },
    /// Revokes the key and every key minted under it.
    Revoke {
        org: Option<OrgId>,
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<Vec<ApiKey>>,
    },
    Touch {
        id: Uuid,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
}

/// What a memory or job write answers, and the changes of the vector cache to make once its
/// group committed.
pub(crate) struct Applied {
    pub(crate) outcome: Result<Written>,
    pub(crate) vectors: Vec<VectorChange>,
}

impl Applied {
    pub(crate) fn written(written: Written) -> Applied {
        Applied { outcome: Ok(written), vectors: Vec::new() }
    }

    /// Nothing was written: the write fails with `err`.
    pub(crate) fn refused(err: Error) -> Applied {
        Applied { outcome: Err(err), vectors: Vec::new() }
    }

    pub(crate) fn with_vectors(self, vectors: Vec<VectorChange>) -> Applied {
        Applied { vectors, ..self }
    }
}

/// The time a write applies, not the time it was queued: see `SessionStore`.
pub(crate) fn applied_at(queued_at: DateTime<Utc>) -> DateTime<Utc> {
    to_micros(queued_at.max(Utc::now()))
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
        Ok(match write {
            WriteOp::Session(write) => self.apply_session_write(write).await?,
            WriteOp::Key(write) => self.apply_key_write(write).await?,
            WriteOp::Store { write, reply } => {
                let applied = self.apply_store_write(*write).await?;
                self.complete_with(applied.vectors, reply, applied.outcome)
            }
            WriteOp::AckVectorEntries { entries, reply } => complete(reply, self.ack_vector_entries(&entries).await?),
        })
    }

    async fn apply_store_write(&mut self, write: Write) -> sqlx::Result<Applied> {
        match write {
            Write::InsertMemory { memory, embedding, revision } => {
                self.insert_memory_write(memory, embedding, &revision).await
            }
            Write::UpdateMemory { memory, embedding, revision, now } => {
                self.update_memory_write(memory, embedding, &revision, applied_at(now)).await
            }
            Write::DeleteMemory { org, id, revision, now } => {
                self.delete_memory_write(&org, id, &revision, applied_at(now)).await
            }
            Write::RestoreMemory { memory, embedding, revision } => {
                self.restore_memory_write(memory, embedding, &revision).await
            }
            Write::PurgeMemory { org, id } => self.purge_memory(&org, id).await,
            Write::PurgeExpiredMemories { now, batch } => self.purge_expired_memories(now, batch).await,
            Write::SetEmbeddingModel { model_id, dimension } => self.set_embedding_model(&model_id, dimension).await,
            Write::SetEmbeddings { embeddings } => self.set_embeddings(&embeddings).await,
            Write::EnqueueJob { job } => self.enqueue_job(*job).await,
            Write::ClaimJob { only, now, lease_until } => self.claim_job(only, now, lease_until).await,
            Write::MarkPublished { ids, at } => self.mark_published(&ids, at).await,
            Write::RenewLease { id, attempt, lease_until } => self.renew_lease(id, attempt, lease_until).await,
            Write::CompleteJob { completion } => self.complete_job(&completion).await,
            Write::FailJob { id, attempt, error, llm_usage, retry_at, now } => {
                self.fail_job(id, attempt, &error, llm_usage, retry_at, now).await
            }
            Write::PurgeFinishedJobs { finished_before, batch } => {
                self.purge_finished_jobs(finished_before, batch).await
            }
        }
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

pub(crate) fn json_text(value: &impl Serialize) -> sqlx::Result<String> {
    serde_json::to_string(value).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}
