//! The workers: each claims a job in the job store, keeps its lease alive while it runs, and
//! records the outcome. A worker that dies (the process is killed) stops renewing; once the
//! lease lapses another worker, in this process after a restart or in another, takes the job
//! over.
//!
//! Without a broker (the embedded deployment) workers poll the job store for the next due job,
//! woken early when a job is queued. With one (RabbitMQ) they take the job each delivered
//! message names, and a relay announces every runnable job from the job table (its own outbox):
//! new jobs, retries that came due, jobs whose worker died, and messages that went astray.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use contextiq_core::generation::broker::{JobBroker, JobMessage};
use contextiq_core::generation::{Attempt, GenerationService, Job};
use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// Starts `concurrency` workers, taking jobs from `broker` when there is one; they stop
/// between jobs once `cancel` fires.
pub fn spawn_workers(
    generation: GenerationService,
    broker: Option<Arc<dyn JobBroker>>,
    wake: Arc<Notify>,
    options: WorkerOptions,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..options.concurrency)
        .map(|worker| {
            let (generation, wake, cancel) = (generation.clone(), wake.clone(), cancel.clone());
            match &broker {
                Some(broker) => tokio::spawn(consume(worker, generation, broker.clone(), wake, options, cancel)),
                None => tokio::spawn(work(worker, generation, wake, options, cancel)),
            }
        })
        .collect()
}

/// A worker fed by the broker: claims the job each message names; acknowledges the message once
/// the job's attempt is recorded (or the job is not runnable: finished, or another worker's),
/// and dead-letters it when the job failed for good or the message is unreadable.
async fn consume(
    worker: usize,
    generation: GenerationService,
    broker: Arc<dyn JobBroker>,
    jobs_changed: Arc<Notify>,
    options: WorkerOptions,
    cancel: CancellationToken,
) {
    let jobs = generation.job_store().clone();
    let lease = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(60));
    loop {
        let delivery = tokio::select! {
            () = cancel.cancelled() => return,
            delivery = broker.next_delivery() => delivery,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::error!(error = %err, worker, "the broker closed; this worker stops");
                return;
            }
        };
        let message = match delivery.message {
            Ok(message) => message,
            Err(reason) => {
                tracing::error!(%reason, worker, "an unreadable job message goes to the dead-letter queue");
                if let Err(err) = delivery.acknowledger.dead_letter().await {
                    tracing::warn!(error = %err, "dead-lettering a message failed; the broker will deliver it again");
                }
                continue;
            }
        };
        tracing::debug!(job_id = %message.job_id, worker, "job message received");
        let now = Utc::now();
        let outcome = match jobs.claim_job_by_id(message.job_id, now, now + lease).await {
            Ok(Some(job)) => run_claimed(worker, &generation, job, options.lease).await,
            Ok(None) => "not_runnable",
            Err(err) => {
                // Acknowledged all the same: if the job stays runnable, its message goes stale
                // after a lease and the relay announces it again.
                tracing::warn!(error = %err, job_id = %message.job_id, "claiming a delivered job failed");
                "error"
            }
        };
        // The next job of the scope may be runnable now, or a retry scheduled: the relay looks.
        jobs_changed.notify_one();
        let settled = match outcome {
            "failed" => delivery.acknowledger.dead_letter().await,
            _ => delivery.acknowledger.ack().await,
        };
        tracing::debug!(job_id = %message.job_id, worker, outcome, "job message settled");
        if let Err(err) = settled {
            tracing::warn!(error = %err, job_id = %message.job_id, "settling a job message failed; it may be delivered again");
        }
    }
}

/// The relay: announces every runnable job on the broker, from the job table, whenever jobs
/// change (woken by `jobs_changed`) and every poll interval. A message is marked published
/// only once the broker confirmed it; a job whose message was not confirmed is announced again.
pub fn spawn_relay(
    generation: GenerationService,
    broker: Arc<dyn JobBroker>,
    jobs_changed: Arc<Notify>,
    options: WorkerOptions,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let jobs = generation.job_store().clone();
        // A runnable job still not taken this long after its message was confirmed: the
        // message went astray (taken by a worker that could not claim it yet); announce again.
        let stale_after = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(60));
        loop {
            let now = Utc::now();
            match jobs.jobs_to_publish(now, now - stale_after, RELAY_BATCH).await {
                Ok(due) if !due.is_empty() => {
                    let messages: Vec<JobMessage> = due.iter().map(JobMessage::of).collect();
                    let ids: Vec<uuid::Uuid> = due.iter().map(|job| job.id).collect();
                    match broker.publish(&messages).await {
                        Ok(()) => match jobs.mark_published(&ids, now).await {
                            Ok(()) => {
                                tracing::debug!(?ids, "announced runnable jobs");
                                // A full batch: more may be waiting.
                                if ids.len() == RELAY_BATCH as usize {
                                    continue;
                                }
                            }
                            Err(err) => tracing::warn!(error = %err, "recording published jobs failed"),
                        },
                        Err(err) => {
                            tracing::warn!(error = %err, n_jobs = ids.len(), "publishing jobs failed; will retry")
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "reading the jobs to publish failed; will retry"),
            }
            // Without a broker, idle workers report the depth; with one, the relay does.
            match jobs.count_unfinished_jobs().await {
                Ok(depth) => metrics::gauge!("memory_generation_queue_depth").set(depth as f64),
                Err(err) => tracing::debug!(error = %err, "counting unfinished jobs failed"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = jobs_changed.notified() => {}
                () = tokio::time::sleep(options.poll_interval) => {}
            }
        }
    })
}

const RELAY_BATCH: u32 = 100;

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

/// Runs one attempt of a claimed job and records it; the outcome's metric label.
async fn run_claimed(worker: usize, generation: &GenerationService, job: Job, lease: Duration) -> &'static str {
    // The job's span continues the trace of the request that queued it, across the queue.
    let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempts, worker);
    crate::trace_context::set_parent_from_map(&span, &job.trace_context);
    run_attempt(worker, generation, job, lease).instrument(span).await
}

async fn run_attempt(worker: usize, generation: &GenerationService, job: Job, lease: Duration) -> &'static str {
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
    outcome
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
