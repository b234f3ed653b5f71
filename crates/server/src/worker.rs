//! The in-process workers of the embedded deployment: each claims the next due job from the
//! job store, keeps its lease alive while it runs, and records the outcome. A worker that dies
//! (the process is killed) stops renewing; once the lease lapses another worker, in this
//! process after a restart or in another, takes the job over.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use contextiq_core::generation::{Attempt, GenerationService, Job};
use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// Starts `concurrency` workers; they stop between jobs once `cancel` fires.
pub fn spawn_workers(
    generation: GenerationService,
    wake: Arc<Notify>,
    options: WorkerOptions,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..options.concurrency)
        .map(|worker| tokio::spawn(work(worker, generation.clone(), wake.clone(), options, cancel.clone())))
        .collect()
}

async fn work(
    worker: usize,
    generation: GenerationService,
    wake: Arc<Notify>,
    options: WorkerOptions,
    cancel: CancellationToken,
) {
    let jobs = generation.job_store().clone();
    let lease = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(60));
    while !cancel.is_cancelled() {
        let now = Utc::now();
        match jobs.claim_job(now, now + lease).await {
            Ok(Some(job)) => {
                run_claimed(worker, &generation, job, options.lease).await;
                // More may be waiting behind this one.
                continue;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, worker, "claiming a generation job failed; will retry"),
        }
        if worker == 0 {
            match jobs.count_unfinished_jobs().await {
                Ok(depth) => metrics::gauge!("memory_generation_queue_depth").set(depth as f64),
                Err(err) => tracing::debug!(error = %err, "counting unfinished jobs failed"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(options.poll_interval) => {}
        }
    }
}

async fn run_claimed(worker: usize, generation: &GenerationService, job: Job, lease: Duration) {
    let started = Instant::now();
    // Stops renewing however this function ends: a lease renewed forever would block the
    // job's scope for good.
    let _heartbeat = AbortOnDrop(tokio::spawn(keep_lease(generation.clone(), job.id, job.attempts, lease)));
    tracing::info!(job_id = %job.id, attempt = job.attempts, worker, source_type = job.source.type_name(), "job started");
    let attempt = match AssertUnwindSafe(generation.run(&job, Utc::now)).catch_unwind().await {
        Ok(attempt) => attempt,
        Err(_) => {
            tracing::error!(job_id = %job.id, "a generation job panicked; it is marked failed");
            generation.abandon(&job, "internal error while running the job", Utc::now()).await
        }
    };
    let duration = started.elapsed();
    let outcome = match &attempt {
        Ok(Attempt::Completed(outcome)) => {
            metrics::counter!("llm_calls_total").increment(u64::from(outcome.llm_usage.calls));
            metrics::counter!("llm_tokens_total", "kind" => "input").increment(outcome.llm_usage.input_tokens);
            metrics::counter!("llm_tokens_total", "kind" => "output").increment(outcome.llm_usage.output_tokens);
            tracing::info!(
                job_id = %job.id,
                duration_ms = duration.as_millis() as u64,
                facts = outcome.facts_extracted,
                added = outcome.memories_added.len(),
                updated = outcome.memories_updated.len(),
                deleted = outcome.memories_deleted.len(),
                unchanged = outcome.unchanged,
                "job completed"
            );
            "completed"
        }
        Ok(Attempt::Retrying { error, retry_at }) => {
            metrics::counter!("extraction_failures_total").increment(1);
            tracing::warn!(job_id = %job.id, attempt = job.attempts, %error, %retry_at, "job attempt failed; will retry");
            "retrying"
        }
        Ok(Attempt::Failed { error }) => {
            metrics::counter!("extraction_failures_total").increment(1);
            tracing::error!(job_id = %job.id, attempt = job.attempts, %error, "job failed for good");
            "failed"
        }
        Ok(Attempt::LeaseLost) => {
            tracing::warn!(job_id = %job.id, "job lease lost to another worker; this attempt wrote nothing");
            "lease_lost"
        }
        Err(err) => {
            // The outcome could not be recorded; the lease will lapse and the job run again.
            tracing::error!(job_id = %job.id, error = %err, "recording the job's outcome failed");
            "error"
        }
    };
    metrics::counter!("memory_generation_jobs_total", "outcome" => outcome).increment(1);
    metrics::histogram!("memory_generation_job_duration_seconds", "outcome" => outcome).record(duration.as_secs_f64());
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease at a third of its length until aborted or the job is lost.
async fn keep_lease(generation: GenerationService, id: uuid::Uuid, attempt: u32, lease: Duration) {
    let lease_length = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    loop {
        tokio::time::sleep(lease / 3).await;
        match generation.job_store().renew_lease(id, attempt, Utc::now() + lease_length).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!(job_id = %id, error = %err, "renewing a job lease failed"),
        }
    }
}
