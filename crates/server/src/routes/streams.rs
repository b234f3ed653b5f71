//! Live streams (Server-Sent Events): a session's new events, and a job's progress.
//!
//! A stream reads the store, the one truth every process shares: after what it has sent, it
//! reads again when an append of this process wakes it, and at least every `POLL` otherwise.
//! So an event appended through any process reaches every subscriber, wherever it is
//! connected, and a stream cut anywhere resumes exactly with `Last-Event-ID` (the event's
//! `seq`). A job's stream sends the job whenever it changes and ends when it is finished.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use contextiq_core::generation::JobStatus;
use contextiq_core::{Access, Error as CoreError, SessionService};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{Authorized, MemoryRead, SessionRead};
use crate::clock::Clock;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, JobId, SessionId};
use crate::routes::jobs::JobBody;
use crate::routes::sessions::EventBody;
use crate::state::{AppState, MemoryState};

/// The longest a stream waits before reading the store again.
const POLL: Duration = Duration::from_millis(250);
const PAGE: u32 = 100;

pub fn sessions_router() -> Router<AppState> {
    Router::new().route("/sessions/{id}/events/stream", get(stream_events))
}

pub fn jobs_router() -> Router<MemoryState> {
    Router::new().route("/jobs/{id}/stream", get(stream_job))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Send the events after this `seq` first (0: from the first event). Default: only events
    /// appended from now on. A `Last-Event-ID` header (what browsers send to resume) wins.
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
}

/// The session's events as they are appended, as Server-Sent Events: `event: event`, `id:`
/// the event's `seq`, `data:` the event as `GET /sessions/{id}/events` shows it. Resume with
/// `Last-Event-ID`. When the session is deleted or expires, one `event: end` closes the stream.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events/stream", tag = "sessions",
    params(("id" = Uuid, Path), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `seq` of the last event received")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: event` per appended event (`id`: its seq, `data`: the event); `event: end` when the session is gone"),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn stream_events(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<SessionRead>,
    SessionId(id): SessionId,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value.to_str().ok().and_then(|text| text.trim().parse::<i64>().ok()).filter(|seq| *seq >= 0).ok_or_else(
                || ApiError::Domain(CoreError::validation("Last-Event-ID", "must be the seq of an event")),
            )?,
        ),
    };
    if query.after_seq.is_some_and(|seq| seq < 0) {
        return Err(ApiError::Domain(CoreError::validation("after_seq", "must be at least 0")));
    }
    let session = state.sessions.get(&principal.access, id, false, state.clock.now()).await?;
    let after = resume.or(query.after_seq).unwrap_or(session.event_count);
    let stream = EventStream {
        sessions: state.sessions.clone(),
        access: principal.access,
        session_id: id,
        clock: state.clock.clone(),
        stopping: state.stopping.clone(),
        after,
        buffered: Default::default(),
        ended: false,
    };
    Ok(Sse::new(futures::stream::unfold(stream, EventStream::next)).keep_alive(KeepAlive::default()))
}

struct EventStream {
    sessions: SessionService,
    access: Access,
    session_id: Uuid,
    clock: std::sync::Arc<dyn Clock>,
    stopping: tokio_util::sync::CancellationToken,
    /// The last seq read.
    after: i64,
    /// Read and not yet sent, oldest first.
    buffered: std::collections::VecDeque<contextiq_core::Event>,
    ended: bool,
}

impl EventStream {
    /// The next batch of SSE events (one SSE event per session event), waiting for one.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, EventStream)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.buffered.pop_front() {
                let id = event.seq.to_string();
                let data = serde_json::to_string(&EventBody::from(event)).unwrap_or_default();
                return Some((Ok(SseEvent::default().event("event").id(id).data(data)), self));
            }
            // Registered before reading, so an append between the read and the wait is not missed.
            let appended = self.sessions.appended().clone();
            let woken = appended.notified();
            let page = self.sessions.events(&self.access, self.session_id, self.after, PAGE, self.clock.now()).await;
            match page {
                Ok(page) if !page.events.is_empty() => {
                    self.after = page.events.last().map_or(self.after, |event| event.seq);
                    self.buffered.extend(page.events);
                    continue;
                }
                Ok(_) => {}
                Err(CoreError::NotFound { .. }) => {
                    self.ended = true;
                    let data = json!({"reason": "session_not_found"}).to_string();
                    return Some((Ok(SseEvent::default().event("end").data(data)), self));
                }
                Err(err) => {
                    // The store cannot serve now: try again, as a reconnecting client would.
                    tracing::warn!(error = %err, session_id = %self.session_id, "a session stream could not read");
                }
            }
            tokio::select! {
                _ = tokio::time::timeout(POLL, woken) => {}
                // Shutting down: the client resumes elsewhere with Last-Event-ID.
                () = self.stopping.cancelled() => return None,
            }
        }
    }
}

/// A job's progress as Server-Sent Events: `event: job` with the job (as `GET /jobs/{id}`) each
/// time it changes (status, attempts, error), the last one when it completed or failed; then
/// the stream ends.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/stream", tag = "memories", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: job` per change of the job (`data`: the job), until it is finished"),
        (status = 404, body = Problem)))]
pub async fn stream_job(
    State(state): State<MemoryState>,
    Authorized(principal, _): Authorized<MemoryRead>,
    JobId(id): JobId,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    state.generation.get(&principal.access, id).await?;
    let stream = JobStream { state, access: principal.access, job_id: id, last: None, ended: false };
    Ok(Sse::new(futures::stream::unfold(stream, JobStream::next)).keep_alive(KeepAlive::default()))
}

struct JobStream {
    state: MemoryState,
    access: Access,
    job_id: Uuid,
    /// What was last sent: status, attempts, update time.
    last: Option<(JobStatus, u32, chrono::DateTime<chrono::Utc>)>,
    ended: bool,
}

impl JobStream {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, JobStream)> {
        if self.ended {
            return None;
        }
        loop {
            match self.state.generation.get(&self.access, self.job_id).await {
                Ok(job) => {
                    let seen = (job.status, job.attempts, job.updated_at);
                    if self.last != Some(seen) {
                        self.last = Some(seen);
                        self.ended = matches!(job.status, JobStatus::Completed | JobStatus::Failed);
                        let data = serde_json::to_string(&Json(JobBody::from(job)).0).unwrap_or_default();
                        return Some((Ok(SseEvent::default().event("job").data(data)), self));
                    }
                }
                Err(CoreError::NotFound { .. }) => return None,
                Err(err) => tracing::warn!(error = %err, job_id = %self.job_id, "a job stream could not read"),
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.state.stopping.cancelled() => return None,
            }
        }
    }
}
