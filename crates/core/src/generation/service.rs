//! The generation service: accepts jobs (validation, scope rules) and runs one attempt of a
//! job from source to committed memories. The loop that claims jobs and keeps their leases
//! alive belongs to the server, which owns the runtime.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::consolidate::{ConsolidationError, ConsolidationSettings, Consolidator};
use super::{
    Candidate, CandidateKind, CommitResult, ExtractError, Extractor, ExtractorKind, GenerateRequest, GenerationConfig,
    Job, JobCompletion, JobOutcome, JobStore, LlmUsage, MANAGED_TOPICS, Source, Turn,
};
use crate::limits::MAX_TTL_SECONDS;
use crate::memory::scope_key;
use crate::memory_service::{check_confidence, check_fact, check_topic};
use crate::session::{check_scope, to_micros};
use crate::{Access, Embedder, Error, MemoryStore, Resource, Result, SessionStore};

const MAX_INLINE_EVENTS: usize = 1000;
/// As for a memory created directly.
const MAX_SOURCE_EVENTS: usize = 1000;
const MAX_INLINE_EVENT_CHARS: usize = 32 * 1024;
const MAX_DIRECT_FACTS: usize = 100;
const MAX_TOPICS: usize = 32;
const MAX_TOPIC_DESCRIPTION_CHARS: usize = 1000;
const MAX_EXAMPLES: usize = 16;
const EVENTS_PAGE: u32 = 1000;
/// Consolidation passes re-run after a memory changed under the job, before giving up the attempt.
const MAX_CONFLICT_RETRIES: usize = 3;

#[derive(Debug, Clone, Copy)]
pub struct GenerationSettings {
    /// Attempts before a job is dead-lettered (failed for good, its last error kept).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each further attempt, up to an hour.
    pub retry_base: Duration,
    /// Events one job reads from a session; the rest wait for the next job.
    pub max_events_per_job: u32,
    pub consolidation: ConsolidationSettings,
    /// Counts the tokens of compaction summaries.
    pub tokenizer: crate::Tokenizer,
}

impl Default for GenerationSettings {
    fn default() -> GenerationSettings {
        GenerationSettings {
            max_attempts: 3,
            retry_base: Duration::seconds(2),
            max_events_per_job: 10_000,
            consolidation: ConsolidationSettings::default(),
            tokenizer: crate::Tokenizer::default(),
        }
    }
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Completed(JobOutcome),
    /// The job went back to pending, to run again from `retry_at`.
    Retrying {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Dead-lettered: no attempts left, or a failure that waiting cannot fix.
    Failed {
        error: String,
    },
    /// Another worker holds the job now; this attempt wrote nothing.
    LeaseLost,
}

#[derive(Clone)]
pub struct GenerationService {
    pub(super) jobs: Arc<dyn JobStore>,
    pub(super) sessions: Arc<dyn SessionStore>,
    memories: Arc<dyn MemoryStore>,
    embedder: Arc<dyn Embedder>,
    pub(super) rules: Arc<dyn Extractor>,
    pub(super) llm: Option<Arc<dyn Extractor>>,
    pub(super) settings: GenerationSettings,
}

/// What a job reads: the source session, the turns, the watermark to advance, and whether
/// events were left for a later job.
type SourceRead = (Option<Uuid>, Vec<Turn>, Option<(Uuid, String, i64)>, bool);

/// Why an attempt failed, and whether trying again can help.
pub(super) struct AttemptError {
    pub(super) message: String,
    pub(super) permanent: bool,
}

impl From<Error> for AttemptError {
    fn from(err: Error) -> AttemptError {
        // The source went away or broke a rule: waiting will not bring it back.
        let permanent = matches!(err, Error::NotFound { .. } | Error::Validation { .. } | Error::LimitExceeded { .. });
        AttemptError { message: err.to_string(), permanent }
    }
}

impl From<ExtractError> for AttemptError {
    fn from(err: ExtractError) -> AttemptError {
        let permanent = matches!(err, ExtractError::Permanent(_));
        AttemptError { message: format!("extraction failed: {err}"), permanent }
    }
}

impl From<ConsolidationError> for AttemptError {
    fn from(err: ConsolidationError) -> AttemptError {
        match err {
            ConsolidationError::Store(err) => err.into(),
            ConsolidationError::Judge(err) => err.into(),
        }
    }
}

impl GenerationService {
    pub fn new(
        jobs: Arc<dyn JobStore>,
        sessions: Arc<dyn SessionStore>,
        memories: Arc<dyn MemoryStore>,
        embedder: Arc<dyn Embedder>,
        llm: Option<Arc<dyn Extractor>>,
        settings: GenerationSettings,
    ) -> GenerationService {
        let rules: Arc<dyn Extractor> = Arc::new(super::rules::RulesExtractor);
        GenerationService { jobs, sessions, memories, embedder, rules, llm, settings }
    }

    pub fn job_store(&self) -> &Arc<dyn JobStore> {
        &self.jobs
    }

    /// Validates a request and queues its job (status pending).
    pub async fn submit(
        &self,
        access: &Access,
        actor: &str,
        request: GenerateRequest,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        let now = to_micros(now);
        check_config(&request.config, self.llm.is_some())?;
        let scope = match &request.source {
            Source::Session { session_id, from_seq, to_seq } => {
                if from_seq.is_some_and(|seq| seq < 1) || to_seq.is_some_and(|seq| seq < 1) {
                    return Err(Error::validation("event_range", "sequence numbers start at 1"));
                }
                if let (Some(from), Some(to)) = (from_seq, to_seq)
                    && from > to
                {
                    return Err(Error::validation("event_range", "from_seq must not be after to_seq"));
                }
                let session = self.sessions.get_session(&access.org_id, *session_id, None, now).await?;
                if !access.reaches(&session.scope) {
                    return Err(Error::session_not_found());
                }
                request.scope.clone().unwrap_or(session.scope)
            }
            Source::Events { events } => {
                if events.is_empty() || events.len() > MAX_INLINE_EVENTS {
                    return Err(Error::validation("events", format!("must hold 1 to {MAX_INLINE_EVENTS} events")));
                }
                for (index, event) in events.iter().enumerate() {
                    if event.content.trim().is_empty() || event.content.chars().count() > MAX_INLINE_EVENT_CHARS {
                        return Err(Error::validation(
                            format!("events[{index}].content"),
                            format!("must be 1 to {MAX_INLINE_EVENT_CHARS} characters of text"),
                        ));
                    }
                }
                request.scope.clone().ok_or_else(|| Error::validation("scope", "is required for inline events"))?
            }
            Source::Compaction { .. } => {
                return Err(Error::validation("source", "compactions are asked for with POST /sessions/{id}/compact"));
            }
            Source::Memories { facts } => {
                if facts.is_empty() || facts.len() > MAX_DIRECT_FACTS {
                    return Err(Error::validation("memories", format!("must hold 1 to {MAX_DIRECT_FACTS} facts")));
                }
                for (index, fact) in facts.iter().enumerate() {
                    check_fact(&fact.fact).map_err(|err| prefix(err, &format!("memories[{index}]")))?;
                    check_topic(fact.topic.as_deref()).map_err(|err| prefix(err, &format!("memories[{index}]")))?;
                    if let Some(confidence) = fact.confidence {
                        check_confidence(confidence).map_err(|err| prefix(err, &format!("memories[{index}]")))?;
                    }
                }
                request.scope.clone().ok_or_else(|| Error::validation("scope", "is required for direct memories"))?
            }
        };
        check_scope(&scope)?;
        if !access.reaches(&scope) {
            return Err(Error::Forbidden("the job's scope is outside the credential's scope".to_owned()));
        }
        let mut job = Job::queued(
            access.org_id.clone(),
            scope,
            request.source,
            request.config,
            actor,
            self.settings.max_attempts,
            now,
        );
        job.run_after = request.run_after.map(to_micros).filter(|at| *at > now).unwrap_or(now);
        job.trace_context = request.trace_context;
        self.jobs.enqueue_job(job).await
    }

    pub async fn get(&self, access: &Access, id: Uuid) -> Result<Job> {
        match self.jobs.get_job(&access.org_id, id).await? {
            Some(job) if access.reaches(&job.scope) => Ok(job),
            _ => Err(Error::NotFound { resource: Resource::Job }),
        }
    }

    /// Runs one attempt of a claimed job and records how it ended.
    pub async fn run(&self, job: &Job, now: impl Fn() -> DateTime<Utc>) -> Result<Attempt> {
        // Usage of earlier attempts, so the job reports what all of them cost.
        let mut usage = job.outcome.llm_usage;
        if job.attempts > job.max_attempts {
            // Its workers kept dying before finishing: stop taking it over.
            let last = job.error.as_deref().unwrap_or("the worker stopped before finishing");
            let error = format!("gave up after {} attempts: {last}", job.max_attempts);
            return self.record_failure(job, error, usage, None, now()).await;
        }
        match self.attempt(job, &now, &mut usage).await {
            Ok(Some(outcome)) => Ok(Attempt::Completed(outcome)),
            Ok(None) => Ok(Attempt::LeaseLost),
            Err(err) => {
                let retry_at = (!err.permanent && job.attempts < job.max_attempts).then(|| {
                    let doublings = job.attempts.saturating_sub(1).min(20);
                    now() + (self.settings.retry_base * 2i32.pow(doublings)).min(Duration::hours(1))
                });
                self.record_failure(job, err.message, usage, retry_at, now()).await
            }
        }
    }

    /// Fails an attempt that broke in an unexpected way (a panic), for good: running it again
    /// would most likely break the same way.
    pub async fn abandon(&self, job: &Job, error: &str, now: DateTime<Utc>) -> Result<Attempt> {
        self.record_failure(job, error.to_owned(), job.outcome.llm_usage, None, now).await
    }

    async fn record_failure(
        &self,
        job: &Job,
        error: String,
        usage: LlmUsage,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Attempt> {
        if !self.jobs.fail_job(job.id, job.attempts, &error, usage, retry_at, now).await? {
            return Ok(Attempt::LeaseLost);
        }
        Ok(match retry_at {
            Some(retry_at) => Attempt::Retrying { error, retry_at },
            None => Attempt::Failed { error },
        })
    }

    /// `Ok(None)`: the lease was lost and nothing was written. `usage` grows by every model
    /// call made, whatever the outcome.
    async fn attempt(
        &self,
        job: &Job,
        now: &impl Fn() -> DateTime<Utc>,
        usage: &mut LlmUsage,
    ) -> std::result::Result<Option<JobOutcome>, AttemptError> {
        if let Source::Compaction { session_id, keep_recent_events } = &job.source {
            return self.attempt_compaction(job, *session_id, *keep_recent_events, now, usage).await;
        }
        let extractor = match job.config.extractor {
            ExtractorKind::Rules => &self.rules,
            ExtractorKind::Llm => self.llm.as_ref().ok_or_else(|| AttemptError {
                message: "the job asks for the llm extractor but no LLM provider is configured".to_owned(),
                permanent: true,
            })?,
        };
        let (source_session_id, turns, watermark, more_events_pending) = self.read_source(job, now()).await?;
        let candidates: Vec<Candidate> = match &job.source {
            Source::Memories { facts } => facts
                .iter()
                .map(|fact| Candidate {
                    fact: fact.fact.trim().to_owned(),
                    topic: fact.topic.clone().unwrap_or_default(),
                    confidence: fact.confidence.unwrap_or(1.0),
                    source_event_ids: Vec::new(),
                    kind: CandidateKind::Assert,
                })
                .collect(),
            _ if turns.is_empty() => Vec::new(),
            _ => extractor.extract(&turns, &job.config, usage).await?,
        };
        let facts_extracted = candidates.len() as u32;
        let candidates = super::consolidate::settle_within_job(within_limits(candidates));
        let vectors = if candidates.is_empty() {
            Vec::new()
        } else {
            let facts: Vec<String> = candidates.iter().map(|candidate| candidate.fact.clone()).collect();
            crate::embed::embed_memories(self.embedder.as_ref(), &facts).await?
        };
        let turn_times: HashMap<Uuid, DateTime<Utc>> = turns.iter().map(|turn| (turn.event_id, turn.said_at)).collect();
        // A fact citing no turn was said when the last turn read was, or when the job was asked.
        let said_at = turns.last().map_or(job.created_at, |turn| turn.said_at);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let now = to_micros(now());
            let consolidator = Consolidator {
                store: self.memories.as_ref(),
                judge: extractor.as_ref(),
                embedder: self.embedder.as_ref(),
                settings: self.settings.consolidation,
                job,
                source_session_id,
                turn_times: &turn_times,
                said_at,
                now,
            };
            let plan = consolidator.plan(&candidates, &vectors, usage).await?;
            let mut outcome = plan.outcome;
            outcome.facts_extracted = facts_extracted;
            outcome.events_processed = turns.len() as u32;
            outcome.more_events_pending = more_events_pending;
            outcome.llm_usage = *usage;
            let completion = JobCompletion {
                job_id: job.id,
                org_id: job.org_id.clone(),
                attempt: job.attempts,
                changes: plan.changes,
                watermark: watermark.clone(),
                outcome: outcome.clone(),
                now,
            };
            match self.jobs.complete_job(completion).await? {
                CommitResult::Committed => return Ok(Some(outcome)),
                CommitResult::LeaseLost => return Ok(None),
                CommitResult::Conflict => {
                    tracing::info!(job_id = %job.id, "a memory changed during consolidation; consolidating again");
                }
            }
        }
        Err(AttemptError { message: "memories kept changing during consolidation".to_owned(), permanent: false })
    }

    /// The turns a job reads, the session they came from, the watermark to advance, and
    /// whether events were left for a later job (past `max_events_per_job`).
    async fn read_source(&self, job: &Job, now: DateTime<Utc>) -> Result<SourceRead> {
        match &job.source {
            Source::Session { session_id, from_seq, to_seq } => {
                let ranged = from_seq.is_some() || to_seq.is_some();
                let scope = scope_key(&job.scope);
                let mut after = match from_seq {
                    Some(from) => from - 1,
                    None if ranged => 0,
                    None => self.jobs.generation_watermark(&job.org_id, *session_id, &scope).await?,
                };
                let mut turns = Vec::new();
                let mut last_seq = None;
                let max_events = self.settings.max_events_per_job as usize;
                'pages: while turns.len() < max_events {
                    let events = self.sessions.list_events(&job.org_id, *session_id, after, EVENTS_PAGE, now).await?;
                    let Some(last) = events.last() else { break };
                    after = last.seq;
                    for event in events {
                        if to_seq.is_some_and(|to| event.seq > to) || turns.len() == max_events {
                            break 'pages;
                        }
                        last_seq = Some(event.seq);
                        if let Some(content) = event_text(&event.content) {
                            turns.push(Turn {
                                event_id: event.id,
                                role: event.role,
                                author: event.author,
                                content,
                                said_at: event.timestamp,
                            });
                        }
                    }
                }
                // A ranged job reads what it was told to and leaves the watermark alone.
                let watermark = last_seq.filter(|_| !ranged).map(|seq| (*session_id, scope, seq));
                let more = match last_seq {
                    Some(last) if turns.len() == max_events => self
                        .sessions
                        .list_events(&job.org_id, *session_id, last, 1, now)
                        .await?
                        .first()
                        .is_some_and(|next| to_seq.is_none_or(|to| next.seq <= to)),
                    _ => false,
                };
                Ok((Some(*session_id), turns, watermark, more))
            }
            Source::Events { events } => {
                let turns = events
                    .iter()
                    .map(|event| Turn {
                        event_id: event.id,
                        role: event.role,
                        author: event.author.clone(),
                        content: event.content.clone(),
                        said_at: event.said_at.unwrap_or(job.created_at),
                    })
                    .collect();
                Ok((None, turns, None, false))
            }
            Source::Memories { .. } | Source::Compaction { .. } => Ok((None, Vec::new(), None, false)),
        }
    }
}

/// Candidates that fit the limits every memory obeys: an over-long fact (a rules clause of a
/// huge message, say) is dropped, source events are capped.
fn within_limits(candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates
        .into_iter()
        .filter(|candidate| {
            check_fact(&candidate.fact).is_ok()
                && check_topic(Some(&candidate.topic).filter(|t| !t.is_empty()).map(String::as_str)).is_ok()
        })
        .map(|mut candidate| {
            candidate.source_event_ids.truncate(MAX_SOURCE_EVENTS);
            candidate.confidence = candidate.confidence.clamp(0.0, 1.0);
            candidate
        })
        .collect()
}

/// The text of an event's content: a string, or the `text` parts of structured content.
pub fn event_text(content: &Value) -> Option<String> {
    let text = match content {
        Value::String(text) => text.clone(),
        Value::Object(object) => match object.get("text").or_else(|| object.get("content")) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts_text(parts),
            _ => return None,
        },
        Value::Array(parts) => parts_text(parts),
        _ => return None,
    };
    Some(text).filter(|text| !text.trim().is_empty())
}

fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|part| match part {
            Value::String(text) => Some(text.as_str()),
            Value::Object(object) => object.get("text").and_then(Value::as_str),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn prefix(err: Error, path: &str) -> Error {
    match err {
        Error::Validation { field, message } => Error::Validation { field: format!("{path}.{field}"), message },
        err => err,
    }
}

fn check_config(config: &GenerationConfig, llm_configured: bool) -> Result<()> {
    crate::memory_service::check_metadata(&config.metadata).map_err(|err| prefix(err, "config"))?;
    if config.extractor == ExtractorKind::Llm && !llm_configured {
        return Err(Error::validation(
            "config.extractor",
            "no LLM provider is configured on this server (set LLM_PROVIDER and LLM_MODEL); use \"rules\"",
        ));
    }
    if config.topics.len() > MAX_TOPICS {
        return Err(Error::validation("config.topics", format!("must hold at most {MAX_TOPICS} topics")));
    }
    for (index, topic) in config.topics.iter().enumerate() {
        let field = format!("config.topics[{index}]");
        let name_ok = !topic.name.is_empty()
            && topic.name.len() <= 128
            && topic.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(Error::validation(format!("{field}.name"), "must be 1 to 128 letters, digits, _ or -"));
        }
        let managed = MANAGED_TOPICS.contains(&topic.name.as_str());
        match &topic.description {
            None if !managed => {
                return Err(Error::validation(
                    format!("{field}.description"),
                    "a custom topic needs a description of what it holds",
                ));
            }
            Some(description)
                if description.trim().is_empty() || description.chars().count() > MAX_TOPIC_DESCRIPTION_CHARS =>
            {
                return Err(Error::validation(
                    format!("{field}.description"),
                    format!("must be 1 to {MAX_TOPIC_DESCRIPTION_CHARS} characters"),
                ));
            }
            _ => {}
        }
        if config.topics[..index].iter().any(|earlier| earlier.name == topic.name) {
            return Err(Error::validation(format!("{field}.name"), "appears twice"));
        }
    }
    if config.examples.len() > MAX_EXAMPLES {
        return Err(Error::validation("config.examples", format!("must hold at most {MAX_EXAMPLES} examples")));
    }
    for (field, ttl) in [
        ("config.created_ttl_seconds", config.created_ttl_seconds),
        ("config.updated_ttl_seconds", config.updated_ttl_seconds),
    ] {
        if ttl.is_some_and(|ttl| !(1..=MAX_TTL_SECONDS).contains(&ttl)) {
            return Err(Error::validation(field, format!("must be between 1 and {MAX_TTL_SECONDS}")));
        }
    }
    Ok(())
}

/// A stable id for an inline event the client sent without one: the same events always get
/// the same ids, so provenance and idempotency hold across resubmissions.
pub fn derived_event_id(position: usize, author: &str, content: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{position}\u{0}{author}\u{0}{content}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
