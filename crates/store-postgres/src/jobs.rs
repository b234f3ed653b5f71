//! `JobStore` on PostgreSQL: the job table is the queue. A claim is one `UPDATE` whose
//! subquery locks its row with `FOR UPDATE SKIP LOCKED`, so concurrent workers take different
//! jobs; leases are compared with this process's clock, the clock that set them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::generation::{self, CommitResult, CompletionTx, Job, JobCompletion, JobStatus, JobStore, LlmUsage};
use contextiq_core::memory::scope_key;
use contextiq_core::{Memory, MemoryVectors, OrgId, Result, Revision, Written};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::PostgresStore;
use crate::memories::{delete_memory, insert_memory, rewrite_memory};
use crate::rows::{corrupt, get, json, record};

const TABLE: &str = "memory_generation_jobs";

/// The condition that job `j` may run at `$1`: due (pending and past its retry time, or running
/// under a lapsed lease) and the oldest unfinished job of its scope, so jobs of a scope run one
/// at a time, in the order they were submitted. A job another worker is claiming is skipped by
/// `SKIP LOCKED`, and the jobs behind it in its scope wait, since it is still unfinished.
macro_rules! runnable_at_1 {
    () => {
        concat!(
            "j.status IN ('pending', 'running') ",
            "AND ((j.status = 'pending' AND j.run_after <= $1) OR (j.status = 'running' AND j.lease_until < $1)) ",
            "AND NOT EXISTS (SELECT 1 FROM memory_generation_jobs o WHERE o.org_id = j.org_id ",
            "AND o.scope_key = j.scope_key AND o.status IN ('pending', 'running') ",
            "AND (o.created_at, o.id) < (j.created_at, j.id)) "
        )
    };
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn get_job(&self, org: &OrgId, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM memory_generation_jobs WHERE org_id = $1 AND id = $2")
            .bind(org.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await;
        record("select", TABLE, row)?.as_ref().map(job_from_row).transpose()
    }

    async fn jobs_to_publish(&self, now: DateTime<Utc>, stale_before: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT j.* FROM memory_generation_jobs j WHERE ",
            runnable_at_1!(),
            "AND (j.published_at IS NULL OR j.published_at < $2 OR j.published_at < ",
            "CASE WHEN j.status = 'pending' THEN j.run_after ELSE j.lease_until END) ",
            "ORDER BY j.run_after, j.created_at, j.id LIMIT $3"
        ))
        .bind(now)
        .bind(stale_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await;
        // An unreadable row is failed by the claim that meets it; it is not announced.
        Ok(record("select", TABLE, rows)?.iter().filter_map(|row| job_from_row(row).ok()).collect())
    }

    async fn generation_watermark(&self, org: &OrgId, session_id: Uuid, scope_key: &str) -> Result<i64> {
        let row: sqlx::Result<Option<(i64,)>> = sqlx::query_as(
            "SELECT last_seq FROM generation_watermarks WHERE org_id = $1 AND session_id = $2 AND scope_key = $3",
        )
        .bind(org.as_str())
        .bind(session_id)
        .bind(scope_key)
        .fetch_optional(&self.pool)
        .await;
        Ok(record("select", "generation_watermarks", row)?.map_or(0, |(last_seq,)| last_seq))
    }

    async fn count_unfinished_jobs(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> =
            sqlx::query_as("SELECT count(*) FROM memory_generation_jobs WHERE status IN ('pending', 'running')")
                .fetch_one(&self.pool)
                .await;
        Ok(record("select", TABLE, count)?.0.max(0) as u64)
    }
}

/// The job writes.
impl PostgresStore {
    pub(crate) async fn enqueue(&self, job: Job) -> Result<Written> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO memory_generation_jobs (id, org_id, scope, scope_key, status, source, config, actor, ",
            "attempts, max_attempts, error, outcome, created_at, updated_at, started_at, finished_at, run_after, ",
            "lease_until, trace_context) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .bind(job.id)
        .bind(job.org_id.as_str())
        .bind(Json(&job.scope))
        .bind(scope_key(&job.scope))
        .bind(job.status.as_str())
        .bind(Json(&job.source))
        .bind(Json(&job.config))
        .bind(job.actor.as_str())
        .bind(i64::from(job.attempts))
        .bind(i64::from(job.max_attempts))
        .bind(job.error.as_deref())
        .bind(Json(&job.outcome))
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(job.started_at)
        .bind(job.finished_at)
        .bind(job.run_after)
        .bind(job.lease_until)
        .bind(Json(&job.trace_context))
        .execute(&self.pool)
        .await;
        record("insert", TABLE, inserted)?;
        Ok(Written::Job(Box::new(job)))
    }

    /// Claims the next runnable job, or job `only` if it is runnable.
    pub(crate) async fn claim(
        &self,
        only: Option<Uuid>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Written> {
        // The next job skips rows other transactions hold, so concurrent workers take different
        // jobs. A named job waits for them instead: the lock may be the relay recording that
        // the job's message was published, and skipping the job then would drop the message.
        let sql = match only {
            None => concat!(
                "UPDATE memory_generation_jobs SET status = 'running', attempts = attempts + 1, ",
                "lease_until = $2, started_at = COALESCE(started_at, $1), updated_at = $1 WHERE id = (",
                "SELECT j.id FROM memory_generation_jobs j WHERE ",
                runnable_at_1!(),
                "AND $3::uuid IS NULL ",
                "ORDER BY j.run_after, j.created_at, j.id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *"
            ),
            Some(_) => concat!(
                "UPDATE memory_generation_jobs SET status = 'running', attempts = attempts + 1, ",
                "lease_until = $2, started_at = COALESCE(started_at, $1), updated_at = $1 WHERE id = (",
                "SELECT j.id FROM memory_generation_jobs j WHERE ",
                runnable_at_1!(),
                "AND j.id = $3 FOR UPDATE) ",
                "AND status IN ('pending', 'running') AND (status = 'pending' OR lease_until < $1) RETURNING *"
            ),
        };
        let claimed = sqlx::query(sql).bind(now).bind(lease_until).bind(only).fetch_optional(&self.pool).await;
        let Some(row) = record("claim", TABLE, claimed)? else { return Ok(Written::Claimed(None)) };
        match job_from_row(&row) {
            Ok(job) => Ok(Written::Claimed(Some(Box::new(job)))),
            Err(err) => {
                // A row this version cannot read would be claimed again at every lease:
                // dead-letter it with the reason instead.
                let id: Uuid = get(&row, TABLE, "id")?;
                tracing::error!(job_id = %id, error = %err, "an unreadable generation job was marked failed");
                let failed = sqlx::query(concat!(
                    "UPDATE memory_generation_jobs SET status = 'failed', error = $1, lease_until = NULL, ",
                    "finished_at = $2, updated_at = $2 WHERE id = $3"
                ))
                .bind(format!("the job record cannot be read: {err}"))
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await;
                record("fail", TABLE, failed)?;
                Ok(Written::Claimed(None))
            }
        }
    }

    pub(crate) async fn mark_jobs_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> Result<Written> {
        let marked = sqlx::query("UPDATE memory_generation_jobs SET published_at = $1 WHERE id = ANY($2)")
            .bind(at)
            .bind(ids)
            .execute(&self.pool)
            .await;
        record("publish", TABLE, marked)?;
        Ok(Written::Done)
    }

    pub(crate) async fn renew(&self, id: Uuid, attempt: u32, lease_until: DateTime<Utc>) -> Result<Written> {
        let renewed = sqlx::query(concat!(
            "UPDATE memory_generation_jobs SET lease_until = $1 ",
            "WHERE id = $2 AND attempts = $3 AND status = 'running' AND lease_until >= $4"
        ))
        .bind(lease_until)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(Utc::now())
        .execute(&self.pool)
        .await;
        Ok(Written::Held(record("renew", TABLE, renewed)?.rows_affected() == 1))
    }

    /// [`generation::complete_job`] in one transaction, committed only if it committed.
    pub(crate) async fn complete(&self, completion: &JobCompletion) -> Result<Written> {
        let mut tx = record("begin", TABLE, self.pool.begin().await)?;
        let result = generation::complete_job(&mut TxCompletion(&mut tx), completion).await?;
        if result == CommitResult::Committed {
            record("commit", TABLE, tx.commit().await)?;
        } else {
            record("rollback", TABLE, tx.rollback().await)?;
        }
        Ok(Written::Commit(result))
    }

    pub(crate) async fn fail(
        &self,
        id: Uuid,
        attempt: u32,
        error: &str,
        llm_usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Written> {
        let (status, run_after, finished_at) = match retry_at {
            Some(at) => (JobStatus::Pending, Some(at), None),
            None => (JobStatus::Failed, None, Some(now)),
        };
        let failed = sqlx::query(concat!(
            "UPDATE memory_generation_jobs SET status = $1, error = $2, run_after = COALESCE($3, run_after), ",
            "finished_at = $4, lease_until = NULL, updated_at = $5, outcome = jsonb_set(outcome, '{llm_usage}', $6) ",
            "WHERE id = $7 AND attempts = $8 AND status = 'running'"
        ))
        .bind(status.as_str())
        .bind(error)
        .bind(run_after)
        .bind(finished_at)
        .bind(now)
        .bind(Json(llm_usage))
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await;
        Ok(Written::Held(record("fail", TABLE, failed)?.rows_affected() == 1))
    }

    pub(crate) async fn purge_finished(&self, finished_before: DateTime<Utc>, batch: u32) -> Result<Written> {
        // SKIP LOCKED: concurrent purgers take different rows instead of waiting on each other.
        let purged = sqlx::query(concat!(
            "DELETE FROM memory_generation_jobs WHERE id IN (SELECT id FROM memory_generation_jobs ",
            "WHERE status IN ('completed', 'failed') AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id"
        ))
        .bind(finished_before)
        .bind(i64::from(batch))
        .fetch_all(&self.pool)
        .await;
        Ok(Written::Purged(record("purge", TABLE, purged)?.iter().map(|row| row.get::<Uuid, _>(0)).collect()))
    }
}

/// A job's completion in a PostgreSQL transaction.
struct TxCompletion<'c>(&'c mut PgConnection);

#[async_trait]
impl CompletionTx for TxCompletion<'_> {
    type Error = contextiq_core::Error;

    async fn finish_job(&mut self, completion: &JobCompletion) -> Result<bool> {
        let finished = sqlx::query(concat!(
            "UPDATE memory_generation_jobs SET status = 'completed', outcome = $1, error = NULL, lease_until = NULL, ",
            "finished_at = $2, updated_at = $2 WHERE id = $3 AND attempts = $4 AND status = 'running' ",
            "AND lease_until >= $5"
        ))
        .bind(Json(&completion.outcome))
        .bind(completion.now)
        .bind(completion.job_id)
        .bind(i64::from(completion.attempt))
        // A lapsed lease may already have let the next job of the scope start.
        .bind(Utc::now())
        .execute(&mut *self.0)
        .await;
        Ok(record("complete", TABLE, finished)?.rows_affected() == 1)
    }

    async fn insert_memory(&mut self, memory: &Memory, embedding: &MemoryVectors, revision: &Revision) -> Result<()> {
        insert_memory(self.0, memory, embedding, revision).await
    }

    async fn update_memory(
        &mut self,
        memory: &Memory,
        embedding: &MemoryVectors,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        rewrite_memory(self.0, memory, Some(embedding), revision, Some(now), Some(expected_updated_at)).await
    }

    async fn delete_memory(
        &mut self,
        org: &OrgId,
        id: Uuid,
        revision: &Revision,
        now: DateTime<Utc>,
        expected_updated_at: DateTime<Utc>,
    ) -> Result<bool> {
        delete_memory(self.0, org, id, revision, now, Some(expected_updated_at)).await
    }

    async fn advance_watermark(&mut self, org: &OrgId, session_id: Uuid, scope_key: &str, last_seq: i64) -> Result<()> {
        let advanced = sqlx::query(concat!(
            "INSERT INTO generation_watermarks (org_id, session_id, scope_key, last_seq) VALUES ($1, $2, $3, $4) ",
            "ON CONFLICT (org_id, session_id, scope_key) ",
            "DO UPDATE SET last_seq = GREATEST(generation_watermarks.last_seq, EXCLUDED.last_seq)"
        ))
        .bind(org.as_str())
        .bind(session_id)
        .bind(scope_key)
        .bind(last_seq)
        .execute(&mut *self.0)
        .await;
        record("upsert", "generation_watermarks", advanced)?;
        Ok(())
    }
}

fn job_from_row(row: &PgRow) -> Result<Job> {
    let status: String = get(row, TABLE, "status")?;
    let count = |column: &str| -> Result<u32> {
        u32::try_from(get::<i32>(row, TABLE, column)?).map_err(|err| corrupt(TABLE, err))
    };
    Ok(Job {
        id: get(row, TABLE, "id")?,
        org_id: OrgId::new(get::<String>(row, TABLE, "org_id")?),
        scope: json(row, TABLE, "scope")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt(TABLE, format!("status {status}")))?,
        source: json(row, TABLE, "source")?,
        config: json(row, TABLE, "config")?,
        actor: get(row, TABLE, "actor")?,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        error: get(row, TABLE, "error")?,
        outcome: json(row, TABLE, "outcome")?,
        created_at: get(row, TABLE, "created_at")?,
        updated_at: get(row, TABLE, "updated_at")?,
        started_at: get(row, TABLE, "started_at")?,
        finished_at: get(row, TABLE, "finished_at")?,
        run_after: get(row, TABLE, "run_after")?,
        lease_until: get(row, TABLE, "lease_until")?,
        // Only a lost link to the request's trace if unreadable.
        trace_context: row
            .try_get::<Option<Json<std::collections::BTreeMap<String, String>>>, _>("trace_context")
            .ok()
            .flatten()
            .map(|Json(context)| context)
            .unwrap_or_default(),
    })
}
