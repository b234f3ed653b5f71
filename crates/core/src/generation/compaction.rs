//! Compaction jobs: a session's events after its last compaction, all but the newest few,
//! summarised into one compaction event. Nothing is deleted or rewritten; the summary is an
//! event like any other, appended after the events it covers.
//!
//! A compaction is a job of the generation queue, so it is durable, retried and run one at a
//! time per scope (hence per session). A retried attempt first looks for the summary its job
//! already wrote, so a job writes at most one.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::service::{AttemptError, GenerationService};
use super::{CommitResult, GenerationConfig, Job, JobCompletion, JobOutcome, LlmUsage, Source, SummaryTurn, Turn};
use crate::limits::MAX_KEEP_RECENT_EVENTS;
use crate::session::{Rewound, to_micros};
use crate::{Access, Compaction, Error, Event, EventKind, NewEvent, Result, Role};

/// Who writes compaction events.
pub const COMPACTION_AUTHOR: &str = "contextiq";
const EVENTS_PAGE: u32 = 1000;
/// Rewinds (and compactions) looked at, newest first.
const MAX_MARKERS: u32 = 256;
/// A summary gets a quarter of the tokens it replaces, within these bounds, and never more
/// than all of them.
const SUMMARY_SHARE: u64 = 4;
const MIN_SUMMARY_TOKENS: u64 = 96;
const MAX_SUMMARY_TOKENS: u64 = 2000;
/// The longest quotation of a structured event (a tool call, say) a summariser reads.
const MAX_STRUCTURED_CHARS: usize = 2000;

impl GenerationService {
    /// Queues a compaction of session `session_id` (`POST /sessions/{id}/compact`), keeping the
    /// `keep_recent_events` newest message events out of it (default: the session's policy's,
    /// else none).
    pub async fn compact(
        &self,
        access: &Access,
        actor: &str,
        session_id: Uuid,
        keep_recent_events: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        let now = to_micros(now);
        if keep_recent_events.is_some_and(|keep| keep > MAX_KEEP_RECENT_EVENTS) {
            return Err(Error::validation("keep_recent_events", format!("must be at most {MAX_KEEP_RECENT_EVENTS}")));
        }
        let session = self.sessions.get_session(&access.org_id, session_id, None, now).await?;
        if !access.reaches(&session.scope) {
            return Err(Error::session_not_found());
        }
        let keep =
            keep_recent_events.or(session.compaction.policy.map(|policy| policy.keep_recent_events)).unwrap_or(0);
        let job = Job::queued(
            access.org_id.clone(),
            session.scope,
            Source::Compaction { session_id, keep_recent_events: keep },
            GenerationConfig::default(),
            actor,
            self.settings.max_attempts,
            now,
        );
        self.jobs.enqueue_job(job).await
    }

    /// One attempt of a compaction job. `Ok(None)`: the lease was lost.
    pub(super) async fn attempt_compaction(
        &self,
        job: &Job,
        session_id: Uuid,
        keep_recent_events: u32,
        now: &impl Fn() -> DateTime<Utc>,
        usage: &mut LlmUsage,
    ) -> std::result::Result<Option<JobOutcome>, AttemptError> {
        let session = self.sessions.get_session(&job.org_id, session_id, None, now()).await?;
        let mut events: Vec<Event> = Vec::new();
        let mut after = session.compaction.through_seq;
        loop {
            let page = self.sessions.list_events(&job.org_id, session_id, after, EVENTS_PAGE, now()).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            events.extend(page);
        }
        let mut outcome = JobOutcome::default();
        let written = events.iter().find_map(|event| match &event.kind {
            EventKind::Compaction(compaction) if compaction.job_id == Some(job.id) => Some((event.id, compaction)),
            _ => None,
        });
        if let Some((event_id, compaction)) = written {
            // An earlier attempt wrote the summary and lost its lease before finishing the job.
            outcome.compaction_event_id = Some(event_id);
            outcome.compaction = Some(compaction.clone());
            outcome.events_processed = (compaction.end_seq - compaction.start_seq + 1) as u32;
        } else {
            // What a rewind took out of the conversation stays out of its summary.
            let markers = self.sessions.marker_events(&job.org_id, session_id, MAX_MARKERS, now()).await?;
            let rewound = Rewound::from_markers(&markers);
            let messages: Vec<&Event> =
                events.iter().filter(|event| event.kind == EventKind::Message && !rewound.hides(event.seq)).collect();
            let n_summarised = messages
                .len()
                .saturating_sub(keep_recent_events as usize)
                .min(self.settings.max_events_per_job as usize);
            if n_summarised > 0 {
                let summarised = &messages[..n_summarised];
                if let Some((event_id, compaction)) =
                    self.write_summary(job, &session, summarised, now(), usage).await?
                {
                    outcome.events_processed = n_summarised as u32;
                    outcome.compaction_event_id = Some(event_id);
                    outcome.compaction = Some(compaction);
                }
            }
        }
        outcome.llm_usage = *usage;
        let completion = JobCompletion {
            job_id: job.id,
            org_id: job.org_id.clone(),
            attempt: job.attempts,
            changes: Vec::new(),
            watermark: None,
            outcome: outcome.clone(),
            now: to_micros(now()),
        };
        match self.jobs.complete_job(completion).await? {
            CommitResult::LeaseLost => Ok(None),
            // No memory changed, so nothing can conflict.
            CommitResult::Committed | CommitResult::Conflict => Ok(Some(outcome)),
        }
    }

    async fn write_summary(
        &self,
        job: &Job,
        session: &crate::Session,
        summarised: &[&Event],
        now: DateTime<Utc>,
        usage: &mut LlmUsage,
    ) -> std::result::Result<Option<(Uuid, Compaction)>, AttemptError> {
        let tokenizer = self.settings.tokenizer;
        let turns: Vec<SummaryTurn> = summarised
            .iter()
            .map(|event| SummaryTurn {
                seq: event.seq,
                turn: Turn {
                    event_id: event.id,
                    role: event.role,
                    author: event.author.clone(),
                    content: super::event_text(&event.content).unwrap_or_else(|| structured_text(&event.content)),
                    said_at: event.timestamp,
                },
            })
            .collect();
        let tokens_before: u64 = summarised.iter().map(|event| u64::from(event.token_count)).sum();
        // Never longer than what it replaces.
        let max_tokens = (tokens_before / SUMMARY_SHARE)
            .clamp(MIN_SUMMARY_TOKENS, MAX_SUMMARY_TOKENS)
            .min(tokens_before.max(1)) as u32;
        // The configured model when there is one; the offline summariser otherwise, and also
        // when the model fails for good or on the job's last attempt: a compaction should not
        // be lost to a model that cannot answer.
        let mut summariser = self.llm.as_ref().unwrap_or(&self.rules);
        let summary = match summariser.summarise(&turns, max_tokens, tokenizer, usage).await {
            Ok(summary) => summary,
            Err(err) if self.llm.is_some() && (err.is_permanent() || job.attempts >= job.max_attempts) => {
                tracing::warn!(job_id = %job.id, error = %err, "the model could not summarise; using the offline summary");
                summariser = &self.rules;
                summariser.summarise(&turns, max_tokens, tokenizer, usage).await?
            }
            Err(err) => return Err(err.into()),
        };
        if summary.trim().is_empty() {
            // Nothing fitted the budget (a few tiny events): an empty summary would replace
            // them with nothing, so none is written and they stay as they are.
            return Ok(None);
        }
        let tokens_after = tokenizer.count(&summary);
        let compaction = Compaction {
            start_seq: session.compaction.through_seq + 1,
            end_seq: summarised.last().map_or(0, |event| event.seq),
            start_time: summarised.first().map_or(now, |event| event.timestamp),
            end_time: summarised.last().map_or(now, |event| event.timestamp),
            method: summariser.summary_method(),
            tokens_before,
            tokens_after: u64::from(tokens_after),
            job_id: Some(job.id),
        };
        let event = NewEvent {
            author: COMPACTION_AUTHOR.to_owned(),
            role: Role::System,
            content: Value::String(summary),
            metadata: Map::new(),
            timestamp: None,
            invocation_id: None,
            state_delta: Map::new(),
            token_count: tokens_after,
            kind: EventKind::Compaction(compaction.clone()),
        };
        // No state delta, so no state limit applies.
        let appended = self.sessions.append_events(&job.org_id, session.id, vec![event], u64::MAX, now).await?;
        let event_id = appended.events.first().map(|event| event.id).ok_or_else(|| AttemptError {
            message: "the store appended no compaction event".to_owned(),
            permanent: false,
        })?;
        Ok(Some((event_id, compaction)))
    }
}

/// Structured content as a summariser reads it: its compact JSON, shortened.
fn structured_text(content: &Value) -> String {
    let text = content.to_string();
    if text.chars().count() <= MAX_STRUCTURED_CHARS {
        return text;
    }
    text.chars().take(MAX_STRUCTURED_CHARS).collect()
}
