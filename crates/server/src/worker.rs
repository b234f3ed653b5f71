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

use contextiq_core::generation::broker::{JobBroker, JobMessage};
use contextiq_core::generation::{Attempt, GenerationService, Job};
use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::background::{Pass, Schedule, spawn_periodic};
use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// How one delivery or attempt ended; the `outcome` label of the job metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Failed; will run again after its retry delay.
    Retrying,
    /// Failed for good.
    Failed,
    /// Another worker took the job over; this attempt wrote nothing.
    LeaseLost,
    /// A delivered job that is finished, or another worker's.
    NotRunnable,
    /// The outcome could not be recorded, or the job not claimed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::LeaseLost => "lease_lost",
            Outcome::NotRunnable => "not_runnable",
            Outcome::Error => "error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Starts `concurrency` workers, taking jobs from `broker` when there is one; they stop
/// between jobs once `cancel` fires.
pub fn spawn_workers(
    generation: GenerationService,
    broker: Option<Arc<dyn JobBroker>>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    options: WorkerOptions,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..options.concurrency)
        .map(|worker| {
            let context =
                Worker { id: worker, generation: generation.clone(), clock: clock.clone(), lease: options.lease };
            let (wake, cancel) = (wake.clone(), cancel.clone());
            match &broker {
                Some(broker) => tokio::spawn(consume(context, broker.clone(), wake, cancel)),
                None => tokio::spawn(work(context, wake, options.poll_interval, cancel)),
            }
        })
        .collect()
}

/// One worker: what it runs jobs with.
struct Worker {
    id: usize,
    generation: GenerationService,
    clock: Arc<dyn Clock>,
    lease: Duration,
}

impl Worker {
    fn lease_length(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60))
    }
}

/// A worker fed by the broker: claims the job each message names; acknowledges the message once
/// the job's attempt is recorded (or the job is not runnable: finished, or another worker's),
/// and dead-letters it when the job failed for good or the message is unreadable.
async fn consume(context: Worker, broker: Arc<dyn JobBroker>, jobs_changed: Arc<Notify>, cancel: CancellationToken) {
    let worker = context.id;
    let jobs = context.generation.job_store().clone();
    let lease = context.lease_length();
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
        let now = context.clock.now();
        let outcome = match jobs.claim_job_by_id(message.job_id, now, now + lease).await {
            Ok(Some(job)) => run_claimed(&context, job).await,
            Ok(None) => Outcome::NotRunnable,
            Err(err) => {
                // Acknowledged all the same: if the job stays runnable, its message goes stale
                // after a lease and the relay announces it again.
                tracing::warn!(error = %err, job_id = %message.job_id, "claiming a delivered job failed");
                Outcome::Error
            }
        };
        // The next job of the scope may be runnable now, or a retry scheduled: the relay looks.
        jobs_changed.notify_one();
        let settled = match outcome {
            Outcome::Failed => delivery.acknowledger.dead_letter().await,
            _ => delivery.acknowledger.ack().await,
        };
        tracing::debug!(job_id = %message.job_id, worker, outcome = outcome.as_str(), "job message settled");
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
    clock: Arc<dyn Clock>,
    options: WorkerOptions,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let jobs = generation.job_store().clone();
    // A runnable job still not taken this long after its message was confirmed: the message
    // went astray (taken by a worker that could not claim it yet); announce again.
    let stale_after = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(60));
    let schedule = Schedule { interval: options.poll_interval, wake: Some(jobs_changed), at_start: true };
    spawn_periodic("job relay", schedule, cancel, move || {
        let (jobs, broker, clock) = (jobs.clone(), broker.clone(), clock.clone());
        async move {
            let now = clock.now();
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
                                    return Pass::More;
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
            Pass::Done
        }
    })
}

const RELAY_BATCH: u32 = 100;

async fn work(context: Worker, wake: Arc<Notify>, poll_interval: Duration, cancel: CancellationToken) {
    let worker = context.id;
    let jobs = context.generation.job_store().clone();
    let lease = context.lease_length();
    while !cancel.is_cancelled() {
        let now = context.clock.now();
        match jobs.claim_job(now, now + lease).await {
            Ok(Some(job)) => {
                run_claimed(&context, job).await;
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
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}

/// Runs one attempt of a claimed job and records it; the outcome's metric label.
async fn run_claimed(context: &Worker, job: Job) -> Outcome {
    // The job's span continues the trace of the request that queued it, across the queue.
    let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempts, worker = context.id);
    crate::trace_context::set_parent_from_map(&span, &job.trace_context);
    run_attempt(context, job).instrument(span).await
}

async fn run_attempt(context: &Worker, job: Job) -> Outcome {
    let (worker, generation, clock) = (context.id, &context.generation, &context.clock);
    let started = Instant::now();
    // Stops renewing however this function ends: a lease renewed forever would block the
    // job's scope for good.
    let heartbeat = keep_lease(generation.clone(), clock.clone(), job.id, job.attempts, context.lease);
    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat));
    tracing::info!(job_id = %job.id, attempt = job.attempts, worker, source_type = job.source.type_name(), "job started");
    let attempt = match AssertUnwindSafe(generation.run(&job, || clock.now())).catch_unwind().await {
        Ok(attempt) => attempt,
        Err(_) => {
            tracing::error!(job_id = %job.id, "a generation job panicked; it is marked failed");
            generation.abandon(&job, "internal error while running the job", clock.now()).await
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
            Outcome::Completed
        }
        Ok(Attempt::Retrying { error, retry_at }) => {
            metrics::counter!("extraction_failures_total").increment(1);
            tracing::warn!(job_id = %job.id, attempt = job.attempts, %error, %retry_at, "job attempt failed; will retry");
            Outcome::Retrying
        }
        Ok(Attempt::Failed { error }) => {
            metrics::counter!("extraction_failures_total").increment(1);
            tracing::error!(job_id = %job.id, attempt = job.attempts, %error, "job failed for good");
            Outcome::Failed
        }
        Ok(Attempt::LeaseLost) => {
            tracing::warn!(job_id = %job.id, "job lease lost to another worker; this attempt wrote nothing");
            Outcome::LeaseLost
        }
        Err(err) => {
            // The outcome could not be recorded; the lease will lapse and the job run again.
            tracing::error!(job_id = %job.id, error = %err, "recording the job's outcome failed");
            Outcome::Error
        }
    };
    metrics::counter!("memory_generation_jobs_total", "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!("memory_generation_job_duration_seconds", "outcome" => outcome.as_str())
        .record(duration.as_secs_f64());
    outcome
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease at a third of its length until aborted or the job is lost.
async fn keep_lease(
    generation: GenerationService,
    clock: Arc<dyn Clock>,
    id: uuid::Uuid,
    attempt: u32,
    lease: Duration,
) {
    let lease_length = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    loop {
        tokio::time::sleep(lease / 3).await;
        match generation.job_store().renew_lease(id, attempt, clock.now() + lease_length).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!(job_id = %id, error = %err, "renewing a job lease failed"),
        }
    }
}
