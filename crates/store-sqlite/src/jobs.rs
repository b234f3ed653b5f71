//! `JobStore` on SQLite: the job table is the queue. Every state change goes through the one
//! writer, so claiming a job (and the check that its scope is free) is atomic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::generation::{
    CommitResult, Job, JobCompletion, JobOutcome, JobStatus, JobStore, LlmUsage, MemoryChange,
};
use contextiq_core::memory::scope_key;
use contextiq_core::{OrgId, Result};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::{corrupt, micros, record, timestamp};
use crate::writer::{Completion, Reply, WriteOp, Writer, complete, json_text};

const TABLE: &str = "memory_generation_jobs";

/// The condition that job `j` may run at `?1`: due (pending and past its retry time, or running
/// under a lapsed lease) and the oldest unfinished job of its scope, so jobs of a scope run one
/// at a time, in the order they were submitted.
macro_rules! runnable_at_1 {
    () => {
        concat!(
            "j.status IN ('pending', 'running') ",
            "AND ((j.status = 'pending' AND j.run_after <= ?1) OR (j.status = 'running' AND j.lease_until < ?1)) ",
            "AND NOT EXISTS (SELECT 1 FROM memory_generation_jobs o WHERE o.org_id = j.org_id ",
            "AND o.scope = j.scope AND o.status IN ('pending', 'running') ",
            "AND (o.created_at, o.id) < (j.created_at, j.id)) "
        )
    };
}

/// A job write waiting for the writer.
pub(crate) enum JobWrite {
    Enqueue {
        job: Box<Job>,
        reply: Reply<Job>,
    },
    Claim {
        /// Only this job, if it is runnable.
        only: Option<Uuid>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        reply: Reply<Option<Job>>,
    },
    Renew {
        id: Uuid,
        attempt: u32,
        lease_until: DateTime<Utc>,
        reply: Reply<bool>,
    },
    Complete {
        completion: Box<JobCompletion>,
        reply: Reply<CommitResult>,
    },
    MarkPublished {
        ids: Vec<Uuid>,
        at: DateTime<Utc>,
        reply: Reply<()>,
    },
    Purge {
        finished_before: DateTime<Utc>,
        batch: u32,
        reply: Reply<Vec<Uuid>>,
    },
    Fail {
        id: Uuid,
        attempt: u32,
        error: String,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        reply: Reply<bool>,
    },
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue_job(&self, job: Job) -> Result<Job> {
        self.write(|reply| WriteOp::Job(JobWrite::Enqueue { job: Box::new(job), reply })).await
    }

    async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM memory_generation_jobs WHERE org_id = ? AND id = ?")
            .bind(org.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await;
        record("select", TABLE, row)?.as_ref().map(job_from_row).transpose()
    }

    async fn claim_job(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<Job>> {
        self.write(|reply| WriteOp::Job(JobWrite::Claim { only: None, now, lease_until, reply })).await
    }

    async fn claim_job_by_id(&self, id: Uuid, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<Job>> {
        self.write(|reply| WriteOp::Job(JobWrite::Claim { only: Some(id), now, lease_until, reply })).await
    }

    async fn jobs_to_publish(&self, now: DateTime<Utc>, stale_before: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT j.* FROM memory_generation_jobs j WHERE ",
            runnable_at_1!(),
            "AND (j.published_at IS NULL OR j.published_at < ?2 OR j.published_at < ",
            "CASE WHEN j.status = 'pending' THEN j.run_after ELSE j.lease_until END) ",
            "ORDER BY j.run_after, j.created_at, j.id LIMIT ?3"
        ))
        .bind(micros(now))
        .bind(micros(stale_before))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await;
        // An unreadable row is failed by the claim that meets it; it is not announced.
        Ok(record("select", TABLE, rows)?.iter().filter_map(|row| job_from_row(row).ok()).collect())
    }

    async fn mark_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
        let ids = ids.to_vec();
        self.write(|reply| WriteOp::Job(JobWrite::MarkPublished { ids, at, reply })).await
    }

    async fn renew_lease(&self, id: Uuid, attempt: u32, lease_until: DateTime<Utc>) -> Result<bool> {
        self.write(|reply| WriteOp::Job(JobWrite::Renew { id, attempt, lease_until, reply })).await
    }

    async fn complete_job(&self, completion: JobCompletion) -> Result<CommitResult> {
        self.write(|reply| WriteOp::Job(JobWrite::Complete { completion: Box::new(completion), reply })).await
    }

    async fn fail_job(
        &self,
        id: Uuid,
        attempt: u32,
        error: &str,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let error = error.to_owned();
        self.write(|reply| WriteOp::Job(JobWrite::Fail { id, attempt, error, llm_usage, retry_at, now, reply })).await
    }

    async fn generation_watermark(&self, org: &OrgId, session_id: Uuid, scope_key: &str) -> Result<i64> {
        let row =
            sqlx::query("SELECT last_seq FROM generation_watermarks WHERE org_id = ? AND session_id = ? AND scope = ?")
                .bind(org.as_str())
                .bind(session_id.to_string())
                .bind(scope_key)
                .fetch_optional(&self.readers)
                .await;
        Ok(record("select", "generation_watermarks", row)?.map(|row| row.get::<i64, _>(0)).unwrap_or(0))
    }

    async fn purge_finished_jobs(&self, finished_before: DateTime<Utc>, batch: u32) -> Result<Vec<Uuid>> {
        self.write(|reply| WriteOp::Job(JobWrite::Purge { finished_before, batch, reply })).await
    }

    async fn count_unfinished_jobs(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM memory_generation_jobs WHERE status IN ('pending', 'running')")
            .fetch_one(&self.readers)
            .await;
        Ok(record("select", TABLE, row)?.get::<i64, _>(0) as u64)
    }
}

impl Writer {
    pub(crate) async fn apply_job_write(&mut self, write: JobWrite) -> sqlx::Result<Completion> {
        Ok(match write {
            JobWrite::Enqueue { job, reply } => {
                let result = sqlx::query(concat!(
                    "INSERT INTO memory_generation_jobs (id, org_id, scope, status, source, config, actor, attempts, ",
                    "max_attempts, error, outcome, created_at, updated_at, started_at, finished_at, run_after, ",
                    "lease_until, trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(job.id.to_string())
                .bind(job.org_id.as_str())
                .bind(scope_key(&job.scope))
                .bind(job.status.as_str())
                .bind(json_text(&job.source)?)
                .bind(json_text(&job.config)?)
                .bind(job.actor.as_str())
                .bind(i64::from(job.attempts))
                .bind(i64::from(job.max_attempts))
                .bind(job.error.as_deref())
                .bind(json_text(&job.outcome)?)
                .bind(micros(job.created_at))
                .bind(micros(job.updated_at))
                .bind(job.started_at.map(micros))
                .bind(job.finished_at.map(micros))
                .bind(micros(job.run_after))
                .bind(job.lease_until.map(micros))
                .bind(json_text(&job.trace_context)?)
                .execute(&mut self.conn)
                .await;
                crate::rows::count("insert", TABLE, result)?;
                complete(reply, Ok(*job))
            }
            JobWrite::Claim { only, now, lease_until, reply } => {
                let claimed = sqlx::query(concat!(
                    "UPDATE memory_generation_jobs SET status = 'running', attempts = attempts + 1, ",
                    "lease_until = ?2, started_at = COALESCE(started_at, ?1), updated_at = ?1 WHERE id = (",
                    "SELECT j.id FROM memory_generation_jobs j WHERE ",
                    runnable_at_1!(),
                    "AND (?3 IS NULL OR j.id = ?3) ",
                    "ORDER BY j.run_after, j.created_at, j.id LIMIT 1) RETURNING *"
                ))
                .bind(micros(now))
                .bind(micros(lease_until))
                .bind(only.map(|id| id.to_string()))
                .fetch_optional(&mut self.conn)
                .await;
                let claimed = crate::rows::count("claim", TABLE, claimed)?;
                match claimed.as_ref().map(job_from_row) {
                    Some(Err(err)) => {
                        // A row this version cannot read would be claimed again at every lease:
                        // dead-letter it with the reason instead.
                        let id: String = claimed.as_ref().map(|row| row.try_get("id")).transpose()?.unwrap_or_default();
                        tracing::error!(job_id = %id, error = %err, "an unreadable generation job was marked failed");
                        let failed = sqlx::query(
                            "UPDATE memory_generation_jobs SET status = 'failed', error = ?, lease_until = NULL, \
                             finished_at = ?, updated_at = ? WHERE id = ?",
                        )
                        .bind(format!("the job record cannot be read: {err}"))
                        .bind(micros(now))
                        .bind(micros(now))
                        .bind(id)
                        .execute(&mut self.conn)
                        .await;
                        crate::rows::count("fail", TABLE, failed)?;
                        complete(reply, Ok(None))
                    }
                    claimed => complete(reply, claimed.transpose()),
                }
            }
            JobWrite::Renew { id, attempt, lease_until, reply } => {
                let renewed = sqlx::query(
                    "UPDATE memory_generation_jobs SET lease_until = ? WHERE id = ? AND attempts = ? AND status = 'running' \
                     AND lease_until >= ?",
                )
                .bind(micros(lease_until))
                .bind(id.to_string())
                .bind(i64::from(attempt))
                .bind(micros(Utc::now()))
                .execute(&mut self.conn)
                .await;
                let renewed = crate::rows::count("renew", TABLE, renewed)?.rows_affected() == 1;
                complete(reply, Ok(renewed))
            }
            JobWrite::Fail { id, attempt, error, llm_usage, retry_at, now, reply } => {
                let (status, run_after, finished_at) = match retry_at {
                    Some(at) => (JobStatus::Pending, Some(micros(at)), None),
                    None => (JobStatus::Failed, None, Some(micros(now))),
                };
                let failed = sqlx::query(concat!(
                    "UPDATE memory_generation_jobs SET status = ?, error = ?, run_after = COALESCE(?, run_after), ",
                    "finished_at = ?, lease_until = NULL, updated_at = ?, outcome = json_set(outcome, '$.llm_usage', json(?)) ",
                    "WHERE id = ? AND attempts = ? AND status = 'running'"
                ))
                .bind(status.as_str())
                .bind(error)
                .bind(run_after)
                .bind(finished_at)
                .bind(micros(now))
                .bind(json_text(&llm_usage)?)
                .bind(id.to_string())
                .bind(i64::from(attempt))
                .execute(&mut self.conn)
                .await;
                let failed = crate::rows::count("fail", TABLE, failed)?.rows_affected() == 1;
                complete(reply, Ok(failed))
            }
            JobWrite::MarkPublished { ids, at, reply } => {
                let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
                let marked = sqlx::query(
                    "UPDATE memory_generation_jobs SET published_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
                )
                .bind(micros(at))
                .bind(ids)
                .execute(&mut self.conn)
                .await;
                crate::rows::count("publish", TABLE, marked)?;
                complete(reply, Ok(()))
            }
            JobWrite::Purge { finished_before, batch, reply } => {
                let purged = sqlx::query(concat!(
                    "DELETE FROM memory_generation_jobs WHERE id IN (SELECT id FROM memory_generation_jobs ",
                    "WHERE status IN ('completed', 'failed') AND finished_at < ? LIMIT ?) RETURNING id"
                ))
                .bind(micros(finished_before))
                .bind(i64::from(batch))
                .fetch_all(&mut self.conn)
                .await;
                let ids = crate::rows::count("purge", TABLE, purged)?
                    .iter()
                    .filter_map(|row| row.get::<String, _>(0).parse::<Uuid>().ok())
                    .collect();
                complete(reply, Ok(ids))
            }
            JobWrite::Complete { completion, reply } => self.complete_job(*completion, reply).await?,
        })
    }

    /// Everything the job changes, in a savepoint inside the group's transaction: a conflict
    /// or a lost lease rolls back to it and writes nothing.
    async fn complete_job(
        &mut self,
        completion: JobCompletion,
        reply: Reply<CommitResult>,
    ) -> sqlx::Result<Completion> {
        sqlx::query("SAVEPOINT complete_job").execute(&mut self.conn).await?;
        let finished = sqlx::query(concat!(
            "UPDATE memory_generation_jobs SET status = 'completed', outcome = ?, error = NULL, lease_until = NULL, ",
            "finished_at = ?, updated_at = ? WHERE id = ? AND attempts = ? AND status = 'running' AND lease_until >= ?"
        ))
        .bind(json_text(&completion.outcome)?)
        .bind(micros(completion.now))
        .bind(micros(completion.now))
        .bind(completion.job_id.to_string())
        .bind(i64::from(completion.attempt))
        // A lapsed lease may already have let the next job of the scope start.
        .bind(micros(Utc::now()))
        .execute(&mut self.conn)
        .await;
        if crate::rows::count("complete", TABLE, finished)?.rows_affected() != 1 {
            return self.abandon_job_commit(reply, CommitResult::LeaseLost).await;
        }
        let mut vector_changes = Vec::new();
        for change in completion.changes {
            let applied = match change {
                MemoryChange::Insert { memory, embedding, revision } => {
                    Some(vec![self.insert_memory(&memory, embedding, &revision).await?])
                }
                MemoryChange::Update { memory, expected_updated_at, embedding, revision } => {
                    let live_at = Some(completion.now);
                    self.rewrite_memory(&memory, Some(embedding), &revision, live_at, Some(expected_updated_at)).await?
                }
                MemoryChange::Delete { id, expected_updated_at, revision } => self
                    .delete_memory(&completion.org_id, id, &revision, completion.now, Some(expected_updated_at))
                    .await?
                    .map(|change| vec![change]),
            };
            match applied {
                Some(changes) => vector_changes.extend(changes),
                None => return self.abandon_job_commit(reply, CommitResult::Conflict).await,
            }
        }
        if let Some((session_id, scope, last_seq)) = completion.watermark {
            let advanced = sqlx::query(concat!(
                "INSERT INTO generation_watermarks (org_id, session_id, scope, last_seq) VALUES (?, ?, ?, ?) ",
                "ON CONFLICT (org_id, session_id, scope) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)"
            ))
            .bind(completion.org_id.as_str())
            .bind(session_id.to_string())
            .bind(scope)
            .bind(last_seq)
            .execute(&mut self.conn)
            .await;
            crate::rows::count("upsert", "generation_watermarks", advanced)?;
        }
        sqlx::query("RELEASE complete_job").execute(&mut self.conn).await?;
        Ok(self.complete_with(vector_changes, reply, Ok(CommitResult::Committed)))
    }

    async fn abandon_job_commit(
        &mut self,
        reply: Reply<CommitResult>,
        result: CommitResult,
    ) -> sqlx::Result<Completion> {
        sqlx::query("ROLLBACK TO complete_job").execute(&mut self.conn).await?;
        sqlx::query("RELEASE complete_job").execute(&mut self.conn).await?;
        Ok(complete(reply, Ok(result)))
    }
}

pub(crate) fn job_from_row(row: &SqliteRow) -> Result<Job> {
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_int = |column: &str| row.try_get::<i64, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_time = |column: &str| {
        row.try_get::<Option<i64>, _>(column)
            .map_err(|err| corrupt(TABLE, err))?
            .map(|at| timestamp(TABLE, at))
            .transpose()
    };
    let json = |column: &str| -> Result<serde_json::Value> {
        serde_json::from_str(&get_text(column)?).map_err(|err| corrupt(TABLE, err))
    };
    let status = get_text("status")?;
    let outcome: JobOutcome = serde_json::from_value(json("outcome")?).map_err(|err| corrupt(TABLE, err))?;
    Ok(Job {
        id: Uuid::parse_str(&get_text("id")?).map_err(|err| corrupt(TABLE, err))?,
        org_id: OrgId::new(get_text("org_id")?),
        scope: serde_json::from_value(json("scope")?).map_err(|err| corrupt(TABLE, err))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt(TABLE, format!("status {status}")))?,
        source: serde_json::from_value(json("source")?).map_err(|err| corrupt(TABLE, err))?,
        config: serde_json::from_value(json("config")?).map_err(|err| corrupt(TABLE, err))?,
        actor: get_text("actor")?,
        attempts: u32::try_from(get_int("attempts")?).map_err(|err| corrupt(TABLE, err))?,
        max_attempts: u32::try_from(get_int("max_attempts")?).map_err(|err| corrupt(TABLE, err))?,
        error: row.try_get("error").map_err(|err| corrupt(TABLE, err))?,
        outcome,
        created_at: timestamp(TABLE, get_int("created_at")?)?,
        updated_at: timestamp(TABLE, get_int("updated_at")?)?,
        started_at: get_opt_time("started_at")?,
        finished_at: get_opt_time("finished_at")?,
        run_after: timestamp(TABLE, get_int("run_after")?)?,
        lease_until: get_opt_time("lease_until")?,
        // Absent on jobs queued before traces were kept, and unreadable ones are only a lost link.
        trace_context: row
            .try_get::<Option<String>, _>("trace_context")
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use contextiq_core::generation::{GenerationConfig, InlineEvent, Source};
    use contextiq_core::{Role, Scope, SessionStore};

    use super::*;
    use crate::SqliteOptions;

    fn job(scope: &Scope, created_at: DateTime<Utc>) -> Job {
        Job {
            id: Uuid::now_v7(),
            org_id: OrgId::default_org(),
            scope: scope.clone(),
            status: JobStatus::Pending,
            source: Source::Events {
                events: vec![InlineEvent {
                    id: Uuid::now_v7(),
                    author: "u".into(),
                    role: Role::User,
                    content: "x".into(),
                }],
            },
            config: GenerationConfig::default(),
            actor: "test".to_owned(),
            attempts: 0,
            max_attempts: 3,
            error: None,
            outcome: JobOutcome::default(),
            created_at,
            updated_at: created_at,
            started_at: None,
            finished_at: None,
            run_after: created_at,
            lease_until: None,
            trace_context: Default::default(),
        }
    }

    fn completion(job: &Job, attempt: u32) -> JobCompletion {
        JobCompletion {
            job_id: job.id,
            org_id: job.org_id.clone(),
            attempt,
            changes: Vec::new(),
            watermark: None,
            outcome: JobOutcome::default(),
            now: Utc::now(),
        }
    }

    /// Jobs of one scope run one at a time and in submission order; a lapsed lease hands the
    /// job to the next claim, and the attempt that lost it can no longer commit.
    #[tokio::test]
    async fn leases_serialize_a_scope_and_a_lapsed_attempt_cannot_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("jobs.db"))).await.unwrap();
        let now = Utc::now();
        let scope: Scope = [("user_id".to_owned(), "u1".to_owned())].into();
        let other: Scope = [("user_id".to_owned(), "u2".to_owned())].into();
        let first = store.enqueue_job(job(&scope, now - Duration::seconds(3))).await.unwrap();
        let second = store.enqueue_job(job(&scope, now - Duration::seconds(2))).await.unwrap();
        let elsewhere = store.enqueue_job(job(&other, now - Duration::seconds(1))).await.unwrap();

        // A lease that has already lapsed (as if the worker stalled).
        let claimed = store.claim_job(now, now - Duration::milliseconds(1)).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.attempts), (first.id, 1));
        assert!(
            !store.renew_lease(first.id, 1, now + Duration::seconds(60)).await.unwrap(),
            "a lapsed lease stays lapsed"
        );
        assert_eq!(store.complete_job(completion(&first, 1)).await.unwrap(), CommitResult::LeaseLost);

        // The next claim takes the first job over, not the second: order within the scope holds.
        let retaken = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
        assert_eq!((retaken.id, retaken.attempts), (first.id, 2));
        // While it runs, its scope is busy; another scope is not.
        let next = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
        assert_eq!(next.id, elsewhere.id);
        assert!(store.claim_job(now, now + Duration::seconds(60)).await.unwrap().is_none());
        assert_eq!(store.complete_job(completion(&first, 1)).await.unwrap(), CommitResult::LeaseLost);
        assert_eq!(store.complete_job(completion(&first, 2)).await.unwrap(), CommitResult::Committed);
        let after = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
        assert_eq!(after.id, second.id);

        // A failed attempt keeps its usage and waits for its retry time.
        let usage = LlmUsage { calls: 2, input_tokens: 10, output_tokens: 5, repairs: 1 };
        let retry_at = Utc::now() + Duration::seconds(3600);
        assert!(store.fail_job(second.id, 1, "boom", usage, Some(retry_at), Utc::now()).await.unwrap());
        let failed = store.get_job(&OrgId::default_org(), second.id).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.error.as_deref(), failed.outcome.llm_usage),
            (JobStatus::Pending, Some("boom"), usage)
        );
        assert!(store.claim_job(Utc::now(), Utc::now() + Duration::seconds(60)).await.unwrap().is_none());
        store.close().await;
    }

    /// With the vector outbox on, a job's memory changes are recorded with them: a completion
    /// that rolls back (a conflict) records nothing.
    #[tokio::test]
    async fn a_job_records_its_memory_changes_in_the_vector_outbox_only_when_it_commits() {
        use contextiq_core::memory::MemorySnapshot;
        use contextiq_core::{Memory, MemoryStore, Revision, RevisionAction, VectorOutbox};

        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions { vector_outbox: true, ..SqliteOptions::new(dir.path().join("jobs.db")) };
        let store = SqliteStore::open(&options).await.unwrap();
        let now = contextiq_core::to_micros(Utc::now());
        let scope: Scope = [("user_id".to_owned(), "u1".to_owned())].into();
        let memory = |fact: &str| Memory {
            org_id: OrgId::default_org(),
            id: Uuid::now_v7(),
            scope: scope.clone(),
            fact: fact.to_owned(),
            topic: None,
            confidence: 1.0,
            source_session_id: None,
            source_event_ids: Vec::new(),
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
            expires_at: None,
        };
        let revision = |memory: &Memory, action| Revision {
            id: Uuid::now_v7(),
            memory_id: memory.id,
            org_id: memory.org_id.clone(),
            action,
            before: None,
            after: Some(MemorySnapshot::from(memory)),
            actor: "test".to_owned(),
            job_id: None,
            cause: None,
            created_at: now,
        };
        let existing = memory("User lives in Lyon");
        store
            .insert_memory(existing.clone(), vec![1.0, 0.0], revision(&existing, RevisionAction::Created))
            .await
            .unwrap();
        let state = store.vector_state(&[existing.id]).await.unwrap();
        store.ack_vector_entries(&state.entries).await.unwrap();

        let queued = store.enqueue_job(job(&scope, now)).await.unwrap();
        store.claim_job(now, Utc::now() + Duration::seconds(60)).await.unwrap().unwrap();
        let added = memory("User lives in Paris");
        let insert = MemoryChange::Insert {
            memory: added.clone(),
            embedding: vec![0.0, 1.0],
            revision: revision(&added, RevisionAction::Created),
        };
        let delete = |expected_updated_at| MemoryChange::Delete {
            id: existing.id,
            expected_updated_at,
            revision: revision(&existing, RevisionAction::Deleted),
        };
        let stale = JobCompletion {
            changes: vec![insert.clone(), delete(now - Duration::seconds(1))],
            ..completion(&queued, 1)
        };
        assert_eq!(store.complete_job(stale).await.unwrap(), CommitResult::Conflict);
        assert!(store.vector_state(&[existing.id, added.id]).await.unwrap().entries.is_empty());
        let fresh = JobCompletion { changes: vec![insert, delete(now)], ..completion(&queued, 1) };
        assert_eq!(store.complete_job(fresh).await.unwrap(), CommitResult::Committed);
        let state = store.vector_state(&[existing.id, added.id]).await.unwrap();
        assert_eq!(state.records.iter().map(|record| record.memory_id).collect::<Vec<_>>(), [added.id]);
        assert_eq!(state.entries.len(), 2, "the insert and the delete");
        store.close().await;
    }

    /// A job is announced to the broker when it becomes runnable (queued, lease lapsed, retry come
    /// due, its scope freed) and not again while its message stands, unless the message went astray;
    /// `claim_job_by_id` takes only a runnable job.
    #[tokio::test]
    async fn runnable_jobs_are_announced_once_each_time_they_become_runnable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("jobs.db"))).await.unwrap();
        let now = Utc::now();
        let seconds = Duration::seconds;
        let scope: Scope = [("user_id".to_owned(), "publication".to_owned())].into();
        let first = store.enqueue_job(job(&scope, now - seconds(3))).await.unwrap();
        let second = store.enqueue_job(job(&scope, now - seconds(2))).await.unwrap();
        let announced = |at: DateTime<Utc>| {
            let store = &store;
            async move {
                let jobs = store.jobs_to_publish(at, at - seconds(60), 10).await.unwrap();
                jobs.iter().map(|job| job.id).collect::<Vec<_>>()
            }
        };

        // Only the first job of the scope may run, so only it is announced, and once.
        assert_eq!(announced(now).await, vec![first.id]);
        store.mark_published(&[first.id], now).await.unwrap();
        assert!(announced(now).await.is_empty(), "its message stands");
        // A message that stood a minute without the job being taken went astray.
        assert_eq!(announced(now + seconds(61)).await, vec![first.id]);

        assert!(store.claim_job_by_id(second.id, now, now + seconds(30)).await.unwrap().is_none(), "its scope waits");
        let claimed = store.claim_job_by_id(first.id, now, now + seconds(30)).await.unwrap().expect("runnable");
        assert_eq!(claimed.attempts, 1);
        assert!(store.claim_job_by_id(first.id, now, now + seconds(30)).await.unwrap().is_none(), "leased");
        assert!(announced(now + seconds(1)).await.is_empty(), "running under a live lease");
        // The lease lapses (its worker died): announced again, once.
        assert_eq!(announced(now + seconds(31)).await, vec![first.id]);
        store.mark_published(&[first.id], now + seconds(31)).await.unwrap();
        assert!(announced(now + seconds(32)).await.is_empty());

        // A failed attempt with a retry: announced when the retry comes due.
        assert!(store.fail_job(first.id, 1, "boom", LlmUsage::default(), Some(now + seconds(40)), now).await.unwrap());
        assert!(announced(now + seconds(35)).await.is_empty(), "not due yet");
        assert_eq!(announced(now + seconds(41)).await, vec![first.id]);
        let retried = store.claim_job_by_id(first.id, now + seconds(41), now + seconds(100)).await.unwrap().unwrap();
        assert_eq!(retried.attempts, 2);
        assert_eq!(store.complete_job(completion(&first, 2)).await.unwrap(), CommitResult::Committed);
        // The scope is free: the second job is announced.
        assert_eq!(announced(now + seconds(41)).await, vec![second.id]);
        assert!(
            store.claim_job_by_id(first.id, now + seconds(41), now + seconds(100)).await.unwrap().is_none(),
            "done"
        );
    }
}
