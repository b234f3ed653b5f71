//! The message broker of the distributed deployment (RabbitMQ): it carries one message per
//! runnable job to the workers of every process. The job table stays the truth: a message says
//! "this job may be runnable now", and the worker that receives it claims the job in the store
//! (`JobStore::claim_job_by_id`), so a duplicate or late message is harmless. Messages are
//! published from the job table (the job row is its own outbox), so a job and its message
//! cannot diverge: a job whose message was never confirmed is published again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{Job, Source};

/// The queue a job's message goes to: jobs that extract from conversations, or jobs that only
/// consolidate finished facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    MemoryGeneration,
    MemoryConsolidation,
}

impl QueueName {
    pub const ALL: [QueueName; 2] = [QueueName::MemoryGeneration, QueueName::MemoryConsolidation];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::MemoryGeneration => "memory_generation",
            QueueName::MemoryConsolidation => "memory_consolidation",
        }
    }
}

/// The message body, in the seed's format. Workers read only `job_id`; the rest lets an operator
/// see what a message in a queue (or the dead-letter queue) is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: Uuid,
    pub source_type: String,
    /// The session id for session sources; absent for inline events and facts.
    pub source_reference: Option<String>,
    pub scope: BTreeMap<String, String>,
    pub config: Value,
    /// Message headers: W3C trace context (`traceparent`, `tracestate`) and the correlation id.
    #[serde(skip)]
    pub headers: BTreeMap<String, String>,
}

impl JobMessage {
    pub fn of(job: &Job) -> JobMessage {
        let source_reference = match &job.source {
            Source::Session { session_id, .. } | Source::Compaction { session_id, .. } => Some(session_id.to_string()),
            Source::Events { .. } | Source::Memories { .. } => None,
        };
        JobMessage {
            job_id: job.id,
            source_type: job.source.type_name().to_owned(),
            source_reference,
            scope: job.scope.clone(),
            config: serde_json::to_value(&job.config).unwrap_or(Value::Null),
            headers: job.trace_context.clone(),
        }
    }

    pub fn queue(&self) -> QueueName {
        match self.source_type.as_str() {
            "memories" => QueueName::MemoryConsolidation,
            _ => QueueName::MemoryGeneration,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("message broker: {0}")]
pub struct BrokerError(pub String);

/// Publishes job messages and hands deliveries to this process's workers.
#[async_trait::async_trait]
pub trait JobBroker: Send + Sync + 'static {
    /// Publishes each message, persistent, to its queue; returns once the broker confirmed them
    /// all (publisher confirms). An error means some may not have been taken: publish again.
    async fn publish(&self, messages: &[JobMessage]) -> Result<(), BrokerError>;

    /// The next message for this process's workers, from any queue; waits while there is none.
    /// Reconnects by itself after a connection loss (deliveries not yet acknowledged then come
    /// back from the broker). Errors only once the broker is closed for good.
    async fn next_delivery(&self) -> Result<Delivery, BrokerError>;
}

/// One delivered message, to settle exactly once.
pub struct Delivery {
    /// The message, or why its body could not be read (such a message is dead-lettered).
    pub message: Result<JobMessage, String>,
    pub acknowledger: Box<dyn Acknowledger>,
}

#[async_trait::async_trait]
pub trait Acknowledger: Send + Sync {
    /// Done with the message: the broker forgets it.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Moves the message to its queue's dead-letter queue (a job failed for good, or an
    /// unreadable message).
    async fn dead_letter(self: Box<Self>) -> Result<(), BrokerError>;
}
