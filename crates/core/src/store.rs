use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{Event, NewEvent, OrgId, Result, Session, SessionFilter, SessionPage};

/// Persistence of sessions and their events. Every method is confined to one org, and every
/// read treats a session whose `expires_at` is at or before `now` as absent.
///
/// Implementations must give each session's events one total order (`seq`, from 1, no gaps
/// within an append) even under concurrent appends, and must acknowledge a write only once
/// it is durable.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn create_session(&self, session: Session) -> Result<Session>;

    /// The session; with `events_limit`, also its first events (at most that many, in append
    /// order) read in the same snapshot as the session.
    async fn get_session(
        &self,
        org: &OrgId,
        id: Uuid,
        events_limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Session>;

    /// Newest first, `(created_at, id)` descending, starting after `filter.cursor`.
    async fn list_sessions(&self, org: &OrgId, filter: &SessionFilter, now: DateTime<Utc>) -> Result<SessionPage>;

    /// Appends all `events` atomically after the session's last event and returns them with
    /// their ids and sequence numbers.
    async fn append_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>>;

    /// Events with `seq > after_seq`, in append order, at most `limit`.
    async fn list_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>>;

    /// Implementations check expiry and stamp `updated_at` and default event timestamps with
    /// the later of `now` and their own clock at the moment the write applies, so a write that
    /// waited in a queue cannot revive an expired session or go back in time.
    ///
    /// Applies an RFC 7396 merge patch to the state atomically; fails with
    /// `LimitExceeded` (and changes nothing) if the merged state serialises to more than
    /// `max_state_bytes`.
    async fn patch_state(
        &self,
        org: &OrgId,
        session_id: Uuid,
        patch: Value,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session>;

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<()>;

    /// Removes sessions (and their events) that expired at or before `now`, at most `batch`
    /// of them; returns how many went.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>, batch: u32) -> Result<u64>;

    /// Answers when the store can serve requests (readiness).
    async fn ping(&self) -> Result<()>;

    /// Finishes acknowledged work and releases the store; later calls fail with `Unavailable`.
    async fn close(&self);
}
