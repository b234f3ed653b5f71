//! `JobStore` on SQLite: the job table is the queue. Every state change goes through the one
//! writer, so claiming a job (and the check that its scope is free) is atomic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::generation::{
    self, CommitResult, CompletionTx, Job, JobCompletion, JobOutcome, JobStatus, JobStore, LlmUsage,
};
use contextiq_core::memory::scope_key;
use contextiq_core::{Memory, MemoryVectors, OrgId, Result, Revision, Written};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::{corrupt, count, micros, record, timestamp};
use crate::vectors::VectorChange;
use crate::writer::{Applied, Writer, json_text};

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

#[async_trait]
impl JobStore for SqliteStore {
    async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM memory_generation_jobs WHERE org_id = ? AND id = ?")
            .bind(org.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await;
        record("select", TABLE, row)?.as_ref().map(job_from_row).transpose()
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

    async fn count_unfinished_jobs(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM memory_generation_jobs WHERE status IN ('pending', 'running')")
            .fetch_one(&self.readers)
            .await;
        Ok(record("select", TABLE, row)?.get::<i64, _>(0) as u64)
    }
}

/// The job writes, applied by the writer inside its group's transaction.
impl Writer {
    pub(crate) async fn enqueue_job(&mut self, job: Job) -> sqlx::Result<Applied> {
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
        count("insert", TABLE, result)?;
        Ok(Applied::written(Written::Job(Box::new(job))))
    }

    /// Claims the next runnable job, or job `only` if it is runnable.
    pub(crate) async fn claim_job(
        &mut self,
        only: Option<Uuid>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> sqlx::Result<Applied> {
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
        let Some(row) = count("claim", TABLE, claimed)? else { return Ok(Applied::written(Written::Claimed(None))) };
        match job_from_row(&row) {
            Ok(job) => Ok(Applied::written(Written::Claimed(Some(Box::new(job))))),
            Err(err) => {
                // A row this version cannot read would be claimed again at every lease:
                // dead-letter it with the reason instead.
                let id: String = row.try_get("id")?;
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
                count("fail", TABLE, failed)?;
                Ok(Applied::written(Written::Claimed(None)))
            }
        }
    }

    pub(crate) async fn renew_lease(
        &mut self,
        id: Uuid,
        attempt: u32,
        lease_until: DateTime<Utc>,
    ) -> sqlx::Result<Applied> {
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
        Ok(Applied::written(Written::Held(count("renew", TABLE, renewed)?.rows_affected() == 1)))
    }

    pub(crate) async fn fail_job(
        &mut self,
        id: Uuid,
        attempt: u32,
        error: &str,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Applied> {
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
        Ok(Applied::written(Written::Held(count("fail", TABLE, failed)?.rows_affected() == 1)))
    }

    pub(crate) async fn mark_published(&mut self, ids: &[Uuid], at: DateTime<Utc>) -> sqlx::Result<Applied> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        let marked = sqlx::query(
            "UPDATE memory_generation_jobs SET published_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(micros(at))
        .bind(ids)
        .execute(&mut self.conn)
        .await;
        count("publish", TABLE, marked)?;
        Ok(Applied::written(Written::Done))
    }

    pub(crate) async fn purge_finished_jobs(
        &mut self,
        finished_before: DateTime<Utc>,
        batch: u32,
    ) -> sqlx::Result<Applied> {
        let purged = sqlx::query(concat!(
            "DELETE FROM memory_generation_jobs WHERE id IN (SELECT id FROM memory_generation_jobs ",
            "WHERE status IN ('completed', 'failed') AND finished_at < ? LIMIT ?) RETURNING id"
        ))
        .bind(micros(finished_before))
        .bind(i64::from(batch))
        .fetch_all(&mut self.conn)
        .await;
        let ids = count("purge", TABLE, purged)?
            .iter()
            .filter_map(|row| row.get::<String, _>(0).parse::<Uuid>().ok())
            .collect();
        Ok(Applied::written(Written::Purged(ids)))
    }

    /// [`generation::complete_job`] in a savepoint inside the group's transaction: a conflict
    /// or a lost lease rolls back to it and writes nothing.
    pub(crate) async fn complete_job(&mut self, completion: &JobCompletion) -> sqlx::Result<Applied> {
        sqlx::query("SAVEPOINT complete_job").execute(&mut self.conn).await?;
        let mut tx = SavepointCompletion { writer: self, vectors: Vec::new() };
        let result = generation::complete_job(&mut tx, completion).await?;
        let vectors = tx.vectors;
        if result != CommitResult::Committed {
            sqlx::query("ROLLBACK TO complete_job").execute(&mut self.conn).await?;
        }
        sqlx::query("RELEASE complete_job").execute(&mut self.conn).await?;
        let applied = Applied::written(Written::Commit(result));
        Ok(if result == CommitResult::Committed { applied.with_vectors(vectors) } else { applied })
    }
}

/// A job's completion inside the writer's savepoint, collecting the changes of the vector cache
/// to make after the commit.
struct SavepointCompletion<'w> {
    writer: &'w mut Writer,
    vectors: Vec<VectorChange>,
}

#[async_trait]
impl CompletionTx for SavepointCompletion<'_> {
    type Error = sqlx::Error;

    async fn finish_job(&mut self, completion: &JobCompletion) -> sqlx::Result<bool> {
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
        .execute(&mut self.writer.conn)
        .await;
        Ok(count("complete", TABLE, finished)?.rows_affected() == 1)
    }

    async fn insert_memory(
        &mut self,
        memory: &Memory,
        embedding: &MemoryVectors,
        revision: &Revision,
    ) -> sqlx::Result<()> {
        let change = self.writer.insert_memory(memory, embedding.clone(), revision).await?;
        self.vectors.push(change);
        Ok(())
    }

    async fn update_memory(
        &mut self,
        memory: &Memory,
        embedding: &MemoryVectors,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> sqlx::Result<bool> {
        let embedding = Some(embedding.clone());
        let rewritten =
            self.writer.rewrite_memory(memory, embedding, revision, Some(now), Some(expected_updated_at)).await?;
        Ok(rewritten.map(|changes| self.vectors.extend(changes)).is_some())
    }

    async fn delete_memory(
        &mut self,
        org: &OrgId,
        id: Uuid,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> sqlx::Result<bool> {
        let deleted = self.writer.delete_memory(org, id, revision, now, Some(expected_updated_at)).await?;
        Ok(deleted.map(|change| self.vectors.push(change)).is_some())
    }

    async fn advance_watermark(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        scope_key: &str,
        last_seq: i64,
    ) -> sqlx::Result<()> {
        let advanced = sqlx::query(concat!(
            "INSERT INTO generation_watermarks (org_id, session_id, scope, last_seq) VALUES (?, ?, ?, ?) ",
            "ON CONFLICT (org_id, session_id, scope) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(scope_key)
        .bind(last_seq)
        .execute(&mut self.writer.conn)
        .await;
        count("upsert", "generation_watermarks", advanced)?;
        Ok(())
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
