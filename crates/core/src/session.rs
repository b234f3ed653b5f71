//! Sessions: the event log and state of one conversation, and the rules that guard them
//! (`SessionService`: validation, TTLs, limits, paging, scope constraints).
//!
//! Also the types and checks every part of the domain shares: the tenant (`OrgId`), a
//! `Scope` and its bounds (`check_scope`), the role of an event's author (`Role`), JSON size
//! and depth checks, and `to_micros` (timestamps at the precision every store keeps).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::generation::JobStore;
use crate::limits::{MAX_ID_CHARS, MAX_SCOPE_KEY_CHARS, MAX_SCOPE_KEYS, MAX_TTL_SECONDS};
use crate::tokens::Tokenizer;
use crate::{Access, Error, Result, SessionStore};

/// The actor of compaction jobs a session's policy queued.
pub const COMPACTION_POLICY_ACTOR: &str = "system:compaction-policy";

/// The tenant every row belongs to. Until authentication exists every request acts for
/// [`OrgId::default_org`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrgId(String);

impl OrgId {
    pub fn new(id: impl Into<String>) -> OrgId {
        OrgId(id.into())
    }

    pub fn default_org() -> OrgId {
        OrgId::new("default")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A flat string-to-string dict naming whose context this is (e.g. `{"user_id": "u1"}`).
/// A `BTreeMap`, so its JSON form is canonical: keys sorted.
pub type Scope = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    Tool,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "system" => Role::System,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub org_id: OrgId,
    pub id: Uuid,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub scope: Scope,
    pub state: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// How many events the session holds; the last event's `seq`.
    pub event_count: i64,
    /// Tokens of all its events, each counted when it was appended.
    pub token_count: i64,
    /// What compaction has covered, and when it runs by itself.
    pub compaction: CompactionStatus,
    /// The session this one belongs to (a sub-agent's session under its coordinator's), if
    /// any. Deleting a session deletes its descendants with it.
    pub parent_session_id: Option<Uuid>,
    /// The session and event this one was forked from, if it was.
    pub forked_from: Option<ForkOrigin>,
    /// The events in append order, when they were asked for.
    pub events: Option<Vec<Event>>,
}

/// Where a fork branched off: its events up to `seq` are copies of that session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkOrigin {
    pub session_id: Uuid,
    pub seq: i64,
}

/// How far a session's compactions reach, and its own compaction policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactionStatus {
    /// The session's own policy; `None`: the server's (`COMPACTION_*`).
    pub policy: Option<CompactionPolicy>,
    /// The last `seq` a compaction summarised (0: none yet).
    pub through_seq: i64,
    /// Message events after `through_seq`, and their tokens: what the next compaction reads.
    pub uncompacted_events: i64,
    pub uncompacted_tokens: i64,
}

/// When a session is compacted without being asked (ADK's shapes): every `every_events`
/// events, or once the events not yet summarised hold `token_threshold` tokens; each time all
/// but the `keep_recent_events` newest are summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionPolicy {
    pub every_events: Option<u32>,
    pub token_threshold: Option<u64>,
    pub keep_recent_events: u32,
}

impl CompactionPolicy {
    /// Whether a session in `status` is due for a compaction under this policy.
    pub fn is_due(&self, status: &CompactionStatus) -> bool {
        let summarisable = status.uncompacted_events - i64::from(self.keep_recent_events);
        if summarisable <= 0 {
            return false;
        }
        self.every_events.is_some_and(|every| every > 0 && summarisable >= i64::from(every))
            || self.token_threshold.is_some_and(|threshold| status.uncompacted_tokens as u64 >= threshold.max(1))
    }

    pub fn check(&self, field: &str) -> Result<()> {
        if self.every_events == Some(0) {
            return Err(Error::validation(format!("{field}.every_events"), "must be at least 1"));
        }
        if self.token_threshold == Some(0) {
            return Err(Error::validation(format!("{field}.token_threshold"), "must be at least 1"));
        }
        if self.keep_recent_events > crate::limits::MAX_KEEP_RECENT_EVENTS {
            return Err(Error::validation(
                format!("{field}.keep_recent_events"),
                format!("must be at most {}", crate::limits::MAX_KEEP_RECENT_EVENTS),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub session_id: Uuid,
    /// Position in the session, from 1: the one total order of its events.
    pub seq: i64,
    pub author: String,
    pub role: Role,
    /// Text (a JSON string) or structured content (any other JSON value but null).
    pub content: Value,
    pub metadata: Map<String, Value>,
    pub timestamp: DateTime<Utc>,
    pub invocation_id: Option<String>,
    /// Tokens of its content under the tokenizer in use when it was appended.
    pub token_count: u32,
    /// The state keys it set (ADK's `actions.state_delta`), kept so the state at any event can
    /// be rebuilt.
    pub state_delta: Map<String, Value>,
    pub kind: EventKind,
}

/// What an event is: a turn of the conversation, or a record the server wrote about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    /// A summary (the event's content) of the events `start_seq..=end_seq`, which stay as
    /// they are.
    Compaction(Compaction),
    /// Takes the session back to how it was after event `to_seq`: the events after that one
    /// and before this one stay stored but are out of the conversation (ADK's rewind).
    Rewind(Rewind),
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Compaction(_) => "compaction",
            EventKind::Rewind(_) => "rewind",
        }
    }

    /// What the stores keep beside the kind's name: what a compaction covers, where a rewind
    /// returns to.
    pub fn detail(&self) -> Option<Value> {
        match self {
            EventKind::Message => None,
            EventKind::Compaction(compaction) => serde_json::to_value(compaction).ok(),
            EventKind::Rewind(rewind) => serde_json::to_value(rewind).ok(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewind {
    pub to_seq: i64,
    /// The invocation of event `to_seq + 1`, if it has one: how ADK names a rewind's target
    /// (`actions.rewind_before_invocation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_invocation_id: Option<String>,
    /// The state as it was at `to_seq`, which the rewind restores whole, whatever was appended
    /// meanwhile (the event's `state_delta` shows the change, ADK's way: null for a key
    /// removed). `None` for a rewind ADK wrote, which only has its delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    pub start_seq: i64,
    pub end_seq: i64,
    /// When the first and the last event summarised happened (ADK replaces the events of this
    /// time range with the summary).
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub method: SummaryMethod,
    /// Tokens of the message events summarised, and of the summary.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// The job that wrote it: a retried job finds its own summary and does not write another.
    pub job_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryMethod {
    /// Written by the configured chat model.
    Llm,
    /// Assembled without a model (see `generation::summary`).
    Offline,
}

impl SummaryMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryMethod::Llm => "llm",
            SummaryMethod::Offline => "offline",
        }
    }
}

/// A session as a client asks for it, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The id the client chose (Agent Engine's `sessionId`); `None`: a new one.
    pub id: Option<Uuid>,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub scope: Option<Scope>,
    pub state: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub compaction_policy: Option<CompactionPolicy>,
    /// The session it belongs to: within the same org and reach, and its scope must hold all
    /// of the parent's scope (so whoever reaches the parent reaches its children).
    pub parent_session_id: Option<Uuid>,
}

/// An event as a client sends it; the store assigns `id` and `seq`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub author: String,
    pub role: Role,
    pub content: Value,
    pub metadata: Map<String, Value>,
    pub timestamp: Option<DateTime<Utc>>,
    pub invocation_id: Option<String>,
    /// Keys to set in the session's state with the append (ADK's `actions.state_delta`): each
    /// replaces the key's value whole, `null` included; empty for none.
    pub state_delta: Map<String, Value>,
    /// Set by [`SessionService::append`] under the configured tokenizer.
    pub token_count: u32,
    pub kind: EventKind,
}

impl NewEvent {
    /// A turn of conversation with nothing else set.
    pub fn message(author: impl Into<String>, role: Role, content: Value) -> NewEvent {
        NewEvent {
            author: author.into(),
            role,
            content,
            metadata: Map::new(),
            timestamp: None,
            invocation_id: None,
            state_delta: Map::new(),
            token_count: 0,
            kind: EventKind::Message,
        }
    }

    /// The event this becomes as event `seq` of session `session_id`, appended at `now`.
    pub fn into_event(self, session_id: Uuid, seq: i64, now: DateTime<Utc>) -> Event {
        Event {
            id: Uuid::now_v7(),
            session_id,
            seq,
            author: self.author,
            role: self.role,
            content: self.content,
            metadata: self.metadata,
            timestamp: self.timestamp.unwrap_or(now),
            invocation_id: self.invocation_id,
            token_count: self.token_count,
            state_delta: self.state_delta,
            kind: self.kind,
        }
    }
}

/// Merge patches (RFC 7396) of a session's state and of its metadata, applied together.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPatch {
    pub state: Value,
    pub metadata: Value,
}

impl From<Value> for SessionPatch {
    /// A patch of the state alone.
    fn from(state: Value) -> SessionPatch {
        SessionPatch { state, metadata: Value::Object(Map::new()) }
    }
}

impl SessionPatch {
    /// Applies the patch to a session's state and metadata; either outgrowing `max_bytes`, or
    /// a patch that is no object, fails it.
    pub fn apply(
        &self,
        state: Map<String, Value>,
        metadata: Map<String, Value>,
        max_bytes: u64,
    ) -> Result<(Map<String, Value>, Map<String, Value>)> {
        let merged = |current: Map<String, Value>, patch: &Value, field: &str| {
            let mut value = Value::Object(current);
            crate::merge_patch::apply(&mut value, patch);
            match value {
                Value::Object(merged) => Ok(merged),
                _ => Err(Error::validation(field, "a merge patch must be a JSON object")),
            }
        };
        let state = merged(state, &self.state, "state")?;
        let metadata = merged(metadata, &self.metadata, "metadata")?;
        check_state_size(&state, max_bytes)?;
        check_json_size("metadata", &metadata, max_bytes)?;
        Ok((state, metadata))
    }
}

/// Sets each key of `delta` in `state`, replacing its value whole (ADK's `state.update(delta)`,
/// unlike a merge patch, which would merge objects and delete on null); a rewind that knows
/// the state it returns to restores that instead.
pub fn apply_event_state(state: &mut Map<String, Value>, delta: &Map<String, Value>, kind: &EventKind) {
    if let EventKind::Rewind(Rewind { state: Some(restored), .. }) = kind {
        state.clone_from(restored);
        return;
    }
    for (key, value) in delta {
        state.insert(key.clone(), value.clone());
    }
}

/// What an append adds to its session's totals, counted once for every store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendTotals {
    pub tokens: i64,
    /// Message events, and their tokens: what the uncompacted counts grow by.
    pub messages: i64,
    pub message_tokens: i64,
    /// The furthest `end_seq` of the compactions appended, if any.
    pub compacted_through: Option<i64>,
}

impl AppendTotals {
    pub fn of(events: &[NewEvent]) -> AppendTotals {
        let mut totals = AppendTotals::default();
        for event in events {
            let tokens = i64::from(event.token_count);
            totals.tokens += tokens;
            match &event.kind {
                EventKind::Message => {
                    totals.messages += 1;
                    totals.message_tokens += tokens;
                }
                EventKind::Compaction(compaction) => {
                    totals.compacted_through = totals.compacted_through.max(Some(compaction.end_seq));
                }
                EventKind::Rewind(_) => {}
            }
        }
        totals
    }
}

impl NewEvent {
    /// Whether appending it changes the session's state.
    pub fn changes_state(&self) -> bool {
        !self.state_delta.is_empty() || matches!(&self.kind, EventKind::Rewind(Rewind { state: Some(_), .. }))
    }
}

/// A `PATCH /state` as the session's state log keeps it: the merge patch, and how many events
/// the session held when it applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePatch {
    pub after_seq: i64,
    pub patch: Value,
}

/// What a session's state at `through_seq` is rebuilt from.
#[derive(Debug, Clone, PartialEq)]
pub struct StateHistory {
    /// The state the session was created (or forked) with; `None` for sessions created before
    /// the state log existed.
    pub initial: Option<Map<String, Value>>,
    /// The session's current state and event count, for `through_seq` at the newest event.
    pub current: Map<String, Value>,
    pub event_count: i64,
    /// Events with `seq <= through_seq` that change the state, in order.
    pub events: Vec<Event>,
    /// Patches with `after_seq <= through_seq`, in the order they applied.
    pub patches: Vec<StatePatch>,
}

impl StateHistory {
    /// The state after event `through_seq` and the patches that followed it before the next
    /// event: the initial state, then each event's delta and each patch, in the order they
    /// applied.
    pub fn state_at(&self, through_seq: i64) -> Result<Map<String, Value>> {
        let Some(initial) = &self.initial else {
            if through_seq == self.event_count {
                return Ok(self.current.clone());
            }
            return Err(Error::validation(
                "at_seq",
                "this session was created before the state log existed: only its current state is known",
            ));
        };
        let mut state = Value::Object(initial.clone());
        let mut patches = self.patches.iter().filter(|patch| patch.after_seq <= through_seq).peekable();
        let mut apply_patches_through = |state: &mut Value, seq: i64| {
            while let Some(patch) = patches.next_if(|patch| patch.after_seq <= seq) {
                crate::merge_patch::apply(state, &patch.patch);
            }
        };
        apply_patches_through(&mut state, 0);
        for event in self.events.iter().filter(|event| event.seq <= through_seq) {
            apply_patches_through(&mut state, event.seq - 1);
            if let Value::Object(map) = &mut state {
                apply_event_state(map, &event.state_delta, &event.kind);
            }
        }
        apply_patches_through(&mut state, through_seq);
        match state {
            Value::Object(map) => Ok(map),
            _ => Err(Error::Store("a stored state patch left a state that is no object".into())),
        }
    }
}

/// Which events rewinds took out of the conversation, from a session's rewind events (any
/// order): ADK's rule, walking back from the newest, a rewind not itself rewound hides the
/// events after its `to_seq` and before itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rewound {
    /// Hidden `(from, to)` seq ranges, inclusive, newest first.
    ranges: Vec<(i64, i64)>,
}

impl Rewound {
    pub fn from_markers<'a>(markers: impl IntoIterator<Item = &'a Event>) -> Rewound {
        let mut rewinds: Vec<(i64, i64)> = markers
            .into_iter()
            .filter_map(|event| match &event.kind {
                EventKind::Rewind(rewind) => Some((event.seq, rewind.to_seq)),
                _ => None,
            })
            .collect();
        rewinds.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for (seq, to_seq) in rewinds {
            let hidden = ranges.iter().any(|(from, to)| (*from..=*to).contains(&seq));
            if !hidden {
                ranges.push((to_seq + 1, seq));
            }
        }
        Rewound { ranges }
    }

    /// Whether event `seq` is out of the conversation (a rewind event itself is: it only
    /// marks the rewind).
    pub fn hides(&self, seq: i64) -> bool {
        self.ranges.iter().any(|(from, to)| (*from..=*to).contains(&seq))
    }
}

/// Where a fork ends: its copy of the history goes up to and including this point.
#[derive(Debug, Clone, PartialEq)]
pub enum ForkPoint {
    /// The newest event.
    Latest,
    /// Event `seq` (0: before the first event).
    Seq(i64),
    /// The last event of this invocation.
    Invocation(String),
}

/// A fork as a client asks for it.
#[derive(Debug, Clone)]
pub struct ForkRequest {
    pub at: ForkPoint,
    /// The fork's id, if the client names it.
    pub id: Option<Uuid>,
    /// The fork's metadata; `None`: the source's.
    pub metadata: Option<Map<String, Value>>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a rewind returns to.
#[derive(Debug, Clone, PartialEq)]
pub enum RewindTarget {
    /// The session as it was after event `seq` (0: before the first event).
    Seq(i64),
    /// The session as it was before the first event of this invocation (ADK's
    /// `rewind_before_invocation_id`).
    BeforeInvocation(String),
}

/// The author of the rewind events the server writes.
pub const REWIND_AUTHOR: &str = "system:rewind";

/// Position after the last session of a page, in the newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only sessions whose scope holds all these pairs.
    pub scope: Option<Scope>,
    /// Only the children of this session.
    pub parent_session_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub limit: u32,
    pub cursor: Option<PageCursor>,
}

#[derive(Debug, Clone)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next_cursor: Option<PageCursor>,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The `seq` to continue after, when more events may follow.
    pub next_after_seq: Option<i64>,
}

/// Configurable limits of the sessions service.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub max_events_per_request: usize,
    pub max_state_bytes: u64,
    pub default_ttl_seconds: Option<u64>,
    pub max_sessions_page: u32,
    pub max_events_page: u32,
    /// Counts every event's tokens on append (`SESSION_TOKENIZER`).
    pub tokenizer: Tokenizer,
    /// The policy of sessions that have none of their own (`COMPACTION_*`); `None`: compact
    /// only on request.
    pub compaction_policy: Option<CompactionPolicy>,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            max_events_per_request: 100,
            max_state_bytes: 64 * 1024,
            default_ttl_seconds: None,
            max_sessions_page: 100,
            max_events_page: 1000,
            tokenizer: Tokenizer::default(),
            compaction_policy: None,
        }
    }
}

/// Timestamps outside these years are refused: they cannot all round-trip through storage.
const MIN_YEAR: i32 = 1;
const MAX_YEAR: i32 = 9999;

/// The rules of the sessions API over any [`SessionStore`].
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    limits: SessionLimits,
    /// Where compactions a policy calls for are queued.
    compaction_jobs: Option<(Arc<dyn JobStore>, u32)>,
    /// Woken after every append through this service, so live streams of this process read
    /// at once (streams of other processes find the events when they next look).
    appended: Arc<tokio::sync::Notify>,
}

impl SessionService {
    pub fn new(store: Arc<dyn SessionStore>, limits: SessionLimits) -> SessionService {
        SessionService { store, limits, compaction_jobs: None, appended: Arc::new(tokio::sync::Notify::new()) }
    }

    /// Notified after each append through this service.
    pub fn appended(&self) -> &Arc<tokio::sync::Notify> {
        &self.appended
    }

    /// Queues a compaction job in `jobs` (with `max_attempts`) whenever an append makes a
    /// session due under its policy; without this, policies are kept but never act.
    pub fn with_compaction_jobs(self, jobs: Arc<dyn JobStore>, max_attempts: u32) -> SessionService {
        SessionService { compaction_jobs: Some((jobs, max_attempts.max(1))), ..self }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    pub async fn create(&self, access: &Access, new: NewSession, now: DateTime<Utc>) -> Result<Session> {
        let now = to_micros(now);
        check_text("user_id", &new.user_id, true)?;
        if let Some(agent_id) = &new.agent_id {
            check_text("agent_id", agent_id, true)?;
        }
        let scope = match new.scope {
            Some(scope) => {
                check_scope(&scope)?;
                scope
            }
            None => Scope::from([("user_id".to_owned(), new.user_id.clone())]),
        };
        // `user_id` labels the session in lists (`?user_id=`): it must name the user its scope
        // and a user-limited credential name, or a credential of u1 could file sessions as u2.
        if let Some(constraint) = access.scope.as_ref().and_then(|constraint| constraint.get("user_id"))
            && *constraint != new.user_id
        {
            return Err(Error::Forbidden("user_id must be the credential's own user_id".to_owned()));
        }
        if scope.get("user_id").is_some_and(|scoped| *scoped != new.user_id) {
            return Err(Error::validation("user_id", "must equal the user_id of the session's scope"));
        }
        if !access.reaches(&scope) {
            return Err(Error::Forbidden("the session's scope is outside the credential's scope".to_owned()));
        }
        let state = new.state.unwrap_or_default();
        check_state_size(&state, self.limits.max_state_bytes)?;
        check_json_depth("state", &state)?;
        let metadata = new.metadata.unwrap_or_default();
        check_json_size("metadata", &metadata, self.limits.max_state_bytes)?;
        check_json_depth("metadata", &metadata)?;
        let expires_at = self.expiry(new.ttl_seconds, new.expires_at, now)?;
        if let Some(policy) = &new.compaction_policy {
            policy.check("compaction")?;
        }
        if let Some(parent_id) = new.parent_session_id {
            let parent = match self.get(access, parent_id, false, now).await {
                Err(Error::NotFound { .. }) => {
                    return Err(Error::validation("parent_session_id", "no session with this id is within reach"));
                }
                found => found?,
            };
            if parent.scope.iter().any(|(key, value)| scope.get(key) != Some(value)) {
                return Err(Error::validation("scope", "must hold every key and value of the parent session's scope"));
            }
        }
        let session = Session {
            org_id: access.org_id.clone(),
            id: new.id.unwrap_or_else(Uuid::now_v7),
            user_id: new.user_id,
            agent_id: new.agent_id,
            scope,
            state,
            metadata,
            created_at: now,
            updated_at: now,
            expires_at,
            event_count: 0,
            token_count: 0,
            compaction: CompactionStatus { policy: new.compaction_policy, ..CompactionStatus::default() },
            parent_session_id: new.parent_session_id,
            forked_from: None,
            events: None,
        };
        self.store.create_session(session).await
    }

    fn expiry(
        &self,
        ttl_seconds: Option<i64>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let latest = now + Duration::seconds(MAX_TTL_SECONDS);
        match (ttl_seconds, expires_at) {
            (Some(_), Some(_)) => {
                Err(Error::validation("expires_at", "give either ttl_seconds or expires_at, not both"))
            }
            (Some(ttl), None) => {
                if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
                    return Err(Error::validation("ttl_seconds", format!("must be between 1 and {MAX_TTL_SECONDS}")));
                }
                Ok(Some(now + Duration::seconds(ttl)))
            }
            (None, Some(at)) => {
                if at <= now || at > latest {
                    return Err(Error::validation("expires_at", "must be in the future and at most ten years ahead"));
                }
                Ok(Some(to_micros(at)))
            }
            (None, None) => Ok(self
                .limits
                .default_ttl_seconds
                .map(|ttl| now + Duration::seconds(ttl.min(MAX_TTL_SECONDS as u64) as i64))),
        }
    }

    /// The session; with `include_events`, also its first events in append order, at most
    /// `max_events_page` of them (`event_count` tells whether more follow; page them with
    /// [`SessionService::events`]).
    pub async fn get(&self, access: &Access, id: Uuid, include_events: bool, now: DateTime<Utc>) -> Result<Session> {
        let events_limit = include_events.then_some(self.limits.max_events_page);
        let session = self.store.get_session(&access.org_id, id, events_limit, now).await?;
        if !access.reaches(&session.scope) {
            return Err(Error::session_not_found());
        }
        Ok(session)
    }

    /// Fails with `NotFound` unless the session exists and is within reach. Needed before
    /// acting on a session by id only for scope-constrained access (org confinement is in
    /// every store call); a session's scope never changes, so the check cannot go stale.
    async fn check_reach(&self, access: &Access, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        if access.scope.is_some() {
            self.get(access, id, false, now).await?;
        }
        Ok(())
    }

    pub async fn list(&self, access: &Access, mut filter: SessionFilter, now: DateTime<Utc>) -> Result<SessionPage> {
        check_page_limit(filter.limit, self.limits.max_sessions_page)?;
        filter.scope = access.scope.clone();
        self.store.list_sessions(&access.org_id, &filter, now).await
    }

    pub async fn append(
        &self,
        access: &Access,
        session_id: Uuid,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        if events.is_empty() {
            return Err(Error::validation("events", "must hold at least one event"));
        }
        if events.len() > self.limits.max_events_per_request {
            return Err(Error::LimitExceeded {
                field: "events".to_owned(),
                what: "events per request".to_owned(),
                limit: self.limits.max_events_per_request as u64,
            });
        }
        let mut checked = Vec::with_capacity(events.len());
        for (idx, mut event) in events.into_iter().enumerate() {
            let prefix = format!("events[{idx}].");
            check_text(&format!("{prefix}author"), &event.author, true)?;
            if let Some(invocation_id) = &event.invocation_id {
                check_text(&format!("{prefix}invocation_id"), invocation_id, true)?;
            }
            check_value_depth(&format!("{prefix}content"), &event.content)?;
            check_json_depth(&format!("{prefix}metadata"), &event.metadata)?;
            check_json_depth(&format!("{prefix}state_delta"), &event.state_delta)?;
            if event.content.is_null() {
                return Err(Error::validation(format!("{prefix}content"), "must be text or a JSON value, not null"));
            }
            if let Some(at) = event.timestamp {
                if !(MIN_YEAR..=MAX_YEAR).contains(&at.year()) {
                    return Err(Error::validation(
                        format!("{prefix}timestamp"),
                        format!("must be between the years {MIN_YEAR} and {MAX_YEAR}"),
                    ));
                }
                event.timestamp = Some(to_micros(at));
            }
            event.token_count = self.limits.tokenizer.count_content(&event.content);
            checked.push(event);
        }
        self.check_reach(access, session_id, now).await?;
        let added_tokens: u64 = checked.iter().map(|event| u64::from(event.token_count)).sum();
        let added_events = checked.iter().filter(|event| event.kind == EventKind::Message).count() as u64;
        let appended = self
            .store
            .append_events(&access.org_id, session_id, checked, self.limits.max_state_bytes, to_micros(now))
            .await?;
        self.appended.notify_waiters();
        self.compact_if_due(&appended.session, added_events, added_tokens, now).await;
        Ok(appended.events)
    }

    /// Queues a compaction when this append carried the session over one of its policy's
    /// marks (each further `every_events` events, each further `token_threshold` tokens): one
    /// job per mark, so a slow job is not queued twice and a failed one is tried again at the
    /// next mark. The append is durable already: a failure to queue is logged, not returned.
    async fn compact_if_due(&self, session: &Session, added_events: u64, added_tokens: u64, now: DateTime<Utc>) {
        let Some((jobs, max_attempts)) = &self.compaction_jobs else { return };
        let Some(policy) = session.compaction.policy.or(self.limits.compaction_policy) else { return };
        if !policy.is_due(&session.compaction) {
            return;
        }
        let after = &session.compaction;
        let keep = i64::from(policy.keep_recent_events);
        let crossed = |every: u64, now_total: i64, added: u64| {
            let now_total = now_total.max(0) as u64;
            let before = now_total.saturating_sub(added);
            every > 0 && now_total / every > before / every
        };
        let due = policy
            .every_events
            .is_some_and(|every| crossed(u64::from(every), after.uncompacted_events - keep, added_events))
            || policy
                .token_threshold
                .is_some_and(|threshold| crossed(threshold, after.uncompacted_tokens, added_tokens));
        if !due {
            return;
        }
        let job = crate::generation::Job::queued(
            session.org_id.clone(),
            session.scope.clone(),
            crate::generation::Source::Compaction {
                session_id: session.id,
                keep_recent_events: policy.keep_recent_events,
            },
            crate::generation::GenerationConfig::default(),
            COMPACTION_POLICY_ACTOR,
            *max_attempts,
            to_micros(now),
        );
        if let Err(err) = jobs.enqueue_job(job).await {
            tracing::warn!(session_id = %session.id, error = %err, "could not queue the compaction the session's policy calls for");
        }
    }

    pub async fn events(
        &self,
        access: &Access,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<EventPage> {
        check_page_limit(limit, self.limits.max_events_page)?;
        self.check_reach(access, session_id, now).await?;
        let events = self.store.list_events(&access.org_id, session_id, after_seq, limit, now).await?;
        if events.is_empty() && access.scope.is_none() {
            // An empty page of a session that does not exist must still be a 404.
            self.store.get_session(&access.org_id, session_id, None, now).await?;
        }
        let next_after_seq = match events.last() {
            Some(last) if events.len() == limit as usize => Some(last.seq),
            _ => None,
        };
        Ok(EventPage { events, next_after_seq })
    }

    pub async fn patch_state(
        &self,
        access: &Access,
        session_id: Uuid,
        patch: Value,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.patch(access, session_id, SessionPatch::from(patch), now).await
    }

    /// Patches a session's state and metadata in one write.
    pub async fn patch(
        &self,
        access: &Access,
        session_id: Uuid,
        patch: SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let SessionPatch { state: patch, metadata } = patch;
        if !metadata.is_object() {
            return Err(Error::validation("metadata", "a merge patch of the metadata must be a JSON object"));
        }
        check_value_depth("metadata", &metadata)?;
        if !patch.is_object() {
            return Err(Error::validation("state", "a merge patch of the state must be a JSON object"));
        }
        // The merged state is no deeper than the stored state or the patch, both checked.
        check_value_depth("state", &patch)?;
        // An empty patch changes nothing: no write, and `updated_at` stays.
        let is_empty = |patch: &Value| patch.as_object().is_some_and(|patch| patch.is_empty());
        if is_empty(&patch) && is_empty(&metadata) {
            return self.get(access, session_id, false, now).await;
        }
        self.check_reach(access, session_id, now).await?;
        let patch = SessionPatch { state: patch, metadata };
        self.store.patch_state(&access.org_id, session_id, patch, self.limits.max_state_bytes, to_micros(now)).await
    }

    /// Deletes the session, its events and its descendants.
    pub async fn delete(&self, access: &Access, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        self.check_reach(access, id, now).await?;
        self.store.delete_session(&access.org_id, id, now).await?;
        Ok(())
    }

    /// The state as it was after event `at_seq` (and the patches before the next event);
    /// `None`: now. Returns it with the seq it is at.
    pub async fn state_at(
        &self,
        access: &Access,
        session_id: Uuid,
        at_seq: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(Map<String, Value>, i64)> {
        let session = self.get(access, session_id, false, now).await?;
        let at_seq = match at_seq {
            None => return Ok((session.state, session.event_count)),
            Some(seq) => check_seq("at_seq", seq, session.event_count)?,
        };
        let history = self.store.state_history(&access.org_id, session_id, at_seq, now).await?;
        Ok((history.state_at(at_seq)?, at_seq))
    }

    /// A new session with the history of this one up to `request.at` and the state as it was
    /// there: same user, agent, scope, parent and compaction policy; the events are copied
    /// inside the store.
    pub async fn fork(
        &self,
        access: &Access,
        session_id: Uuid,
        request: ForkRequest,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let now = to_micros(now);
        let source = self.get(access, session_id, false, now).await?;
        let through_seq = match &request.at {
            ForkPoint::Latest => source.event_count,
            ForkPoint::Seq(seq) => check_seq("at_seq", *seq, source.event_count)?,
            ForkPoint::Invocation(invocation_id) => {
                self.span_of("invocation_id", &access.org_id, session_id, invocation_id, now).await?.1
            }
        };
        let metadata = request.metadata.unwrap_or_else(|| source.metadata.clone());
        check_json_size("metadata", &metadata, self.limits.max_state_bytes)?;
        check_json_depth("metadata", &metadata)?;
        let expires_at = self.expiry(request.ttl_seconds, request.expires_at, now)?;
        let history = self.store.state_history(&access.org_id, session_id, through_seq, now).await?;
        let fork = Session {
            org_id: access.org_id.clone(),
            id: request.id.unwrap_or_else(Uuid::now_v7),
            user_id: source.user_id,
            agent_id: source.agent_id,
            scope: source.scope,
            state: history.state_at(through_seq)?,
            metadata,
            created_at: now,
            updated_at: now,
            expires_at,
            event_count: through_seq,
            token_count: 0,
            compaction: CompactionStatus { policy: source.compaction.policy, ..CompactionStatus::default() },
            parent_session_id: source.parent_session_id,
            forked_from: Some(ForkOrigin { session_id, seq: through_seq }),
            events: None,
        };
        self.store.fork_session(&access.org_id, session_id, through_seq, fork, now).await
    }

    /// The first and last seq of an invocation's events, checked as the request's `field`.
    async fn span_of(
        &self,
        field: &str,
        org: &OrgId,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(i64, i64)> {
        check_text(field, invocation_id, true)?;
        self.store
            .invocation_span(org, session_id, invocation_id, now)
            .await?
            .ok_or_else(|| Error::validation(field, "the session has no event of this invocation"))
    }

    /// The rewind to before an invocation, as an event of a session within reach records it
    /// (ADK appends its rewinds as events); `None` when the session has no event of it.
    pub async fn rewind_before(
        &self,
        access: &Access,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Rewind>> {
        self.get(access, session_id, false, now).await?;
        let span = self.store.invocation_span(&access.org_id, session_id, invocation_id, now).await?;
        Ok(span.map(|(first, _)| Rewind {
            to_seq: first - 1,
            before_invocation_id: Some(invocation_id.to_owned()),
            state: None,
        }))
    }

    /// Takes the session back to how it was at `target`, as ADK's rewind does: appends a
    /// rewind event that restores the state of that point and takes the events between out of
    /// the conversation (context assembly and compaction skip them); nothing is deleted.
    /// Returns the rewind event and the session after it.
    pub async fn rewind(
        &self,
        access: &Access,
        session_id: Uuid,
        target: RewindTarget,
        now: DateTime<Utc>,
    ) -> Result<(Event, Session)> {
        let session = self.get(access, session_id, false, now).await?;
        let (to_seq, before_invocation_id) = match target {
            RewindTarget::Seq(seq) => {
                let to_seq = check_seq("to_seq", seq, session.event_count)?;
                let next = self.store.list_events(&access.org_id, session_id, to_seq, 1, now).await?;
                (to_seq, next.into_iter().next().and_then(|event| event.invocation_id))
            }
            RewindTarget::BeforeInvocation(invocation_id) => {
                let (first, _) =
                    self.span_of("before_invocation_id", &access.org_id, session_id, &invocation_id, now).await?;
                (first - 1, Some(invocation_id))
            }
        };
        if to_seq >= session.event_count {
            return Err(Error::validation("to_seq", "nothing follows this seq: there is nothing to rewind"));
        }
        let history = self.store.state_history(&access.org_id, session_id, to_seq, now).await?;
        let restored = history.state_at(to_seq)?;
        // ADK's delta: what changes, with null for each key the rewind removes.
        let mut state_delta: Map<String, Value> = restored
            .iter()
            .filter(|(key, value)| session.state.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        for key in session.state.keys().filter(|key| !restored.contains_key(*key)) {
            state_delta.insert(key.clone(), Value::Null);
        }
        let event = NewEvent {
            author: REWIND_AUTHOR.to_owned(),
            role: Role::System,
            content: Value::String(format!("Rewound to after event {to_seq}.")),
            metadata: Map::new(),
            timestamp: None,
            invocation_id: None,
            state_delta,
            token_count: 0,
            kind: EventKind::Rewind(Rewind { to_seq, before_invocation_id, state: Some(restored) }),
        };
        let appended = self
            .store
            .append_events(&access.org_id, session_id, vec![event], self.limits.max_state_bytes, to_micros(now))
            .await?;
        self.appended.notify_waiters();
        let event =
            appended.events.into_iter().next().ok_or_else(|| Error::Store("the store returned no event".into()))?;
        Ok((event, appended.session))
    }
}

/// Timestamps are stored with microsecond precision; truncating up front keeps what a client
/// reads back equal to what it was given. Callers keep timestamps within years 1 to 9999,
/// where the conversion always succeeds.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

fn check_text(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if value.chars().count() > MAX_ID_CHARS {
        return Err(Error::validation(field, format!("must be at most {MAX_ID_CHARS} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::validation(field, "must not contain control characters"));
    }
    Ok(())
}

pub fn check_scope(scope: &Scope) -> Result<()> {
    if scope.is_empty() {
        return Err(Error::validation("scope", "must hold at least one key"));
    }
    if scope.len() > MAX_SCOPE_KEYS {
        return Err(Error::validation("scope", format!("must hold at most {MAX_SCOPE_KEYS} keys")));
    }
    for (key, value) in scope {
        if key.is_empty() || key.chars().count() > MAX_SCOPE_KEY_CHARS {
            return Err(Error::validation("scope", format!("keys must be 1 to {MAX_SCOPE_KEY_CHARS} characters")));
        }
        check_text(&format!("scope.{key}"), value, true)?;
    }
    Ok(())
}

pub fn check_state_size(state: &Map<String, Value>, max_state_bytes: u64) -> Result<()> {
    check_json_size("state", state, max_state_bytes)
}

/// The deepest nesting of arrays and objects accepted in stored JSON.
pub const MAX_JSON_DEPTH: usize = 32;

pub(crate) fn check_json_depth(field: &str, object: &Map<String, Value>) -> Result<()> {
    let depth = 1 + object.values().map(json_depth).max().unwrap_or(0);
    if depth > MAX_JSON_DEPTH {
        return Err(Error::validation(field, format!("nests deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(())
}

fn check_value_depth(field: &str, value: &Value) -> Result<()> {
    if json_depth(value) > MAX_JSON_DEPTH {
        return Err(Error::validation(field, format!("nests deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(())
}

/// Nesting depth; parsing already bounds it (serde_json stops at 128), so recursion is safe.
fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_json_size(field: &str, value: &Map<String, Value>, max_bytes: u64) -> Result<()> {
    let n_bytes = serde_json::to_vec(value).map_or(u64::MAX, |bytes| bytes.len() as u64);
    if n_bytes > max_bytes {
        return Err(Error::LimitExceeded {
            field: field.to_owned(),
            what: format!("{field} size in bytes"),
            limit: max_bytes,
        });
    }
    Ok(())
}

/// A seq of a session that holds `event_count` events: 0 (before the first) to the newest.
fn check_seq(field: &str, seq: i64, event_count: i64) -> Result<i64> {
    if !(0..=event_count).contains(&seq) {
        return Err(Error::validation(
            field,
            format!("must be between 0 and {event_count}, the session's newest event"),
        ));
    }
    Ok(seq)
}

fn check_page_limit(limit: u32, max: u32) -> Result<()> {
    if !(1..=max).contains(&limit) {
        return Err(Error::validation("limit", format!("must be between 1 and {max}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(seq: i64, delta: Value, kind: EventKind) -> Event {
        let mut event = NewEvent::message("user", Role::User, json!("hi"));
        event.state_delta = delta.as_object().cloned().unwrap_or_default();
        event.kind = kind;
        event.into_event(Uuid::nil(), seq, Utc::now())
    }

    fn rewind(seq: i64, to_seq: i64) -> Event {
        event(seq, json!({}), EventKind::Rewind(Rewind { to_seq, before_invocation_id: None, state: None }))
    }

    #[test]
    fn nested_rewinds_follow_adks_rule() {
        // 1..4 messages; 5 rewinds to 1 (hides 2..5); 6 a message; 7 rewinds to 3 (hides 4..7,
        // so the rewind at 5 no longer counts and 2..3 are back).
        let rewound = Rewound::from_markers(&[rewind(5, 1), rewind(7, 3)]);
        let hidden: Vec<i64> = (1..=8).filter(|seq| rewound.hides(*seq)).collect();
        assert_eq!(hidden, [4, 5, 6, 7]);
        let only_first = Rewound::from_markers(&[rewind(5, 1)]);
        assert_eq!((1..=6).filter(|seq| only_first.hides(*seq)).collect::<Vec<_>>(), [2, 3, 4, 5]);
    }

    #[test]
    fn the_state_at_a_seq_replays_deltas_and_patches_in_the_order_they_applied() {
        let restored = json!({"a": 1}).as_object().cloned();
        let history = StateHistory {
            initial: json!({"a": 0}).as_object().cloned(),
            current: Map::new(),
            event_count: 3,
            events: vec![
                event(1, json!({"a": 1, "b": {"x": 1}}), EventKind::Message),
                event(
                    3,
                    json!({"c": 3}),
                    EventKind::Rewind(Rewind { to_seq: 1, before_invocation_id: None, state: restored }),
                ),
            ],
            patches: vec![
                StatePatch { after_seq: 0, patch: json!({"p": 0}) },
                StatePatch { after_seq: 1, patch: json!({"b": {"y": 2}, "a": null}) },
                StatePatch { after_seq: 2, patch: json!({"q": 2}) },
            ],
        };
        let at = |seq| Value::Object(history.state_at(seq).unwrap());
        assert_eq!(at(0), json!({"a": 0, "p": 0}));
        assert_eq!(at(1), json!({"p": 0, "b": {"x": 1, "y": 2}}));
        assert_eq!(at(2), json!({"p": 0, "b": {"x": 1, "y": 2}, "q": 2}));
        // A rewind that knows its state restores it whole.
        assert_eq!(at(3), json!({"a": 1}));

        let legacy =
            StateHistory { initial: None, current: json!({"now": true}).as_object().cloned().unwrap(), ..history };
        assert_eq!(Value::Object(legacy.state_at(3).unwrap()), json!({"now": true}));
        assert!(matches!(legacy.state_at(2), Err(Error::Validation { .. })));
    }
}
