//! Context assembly: what to put in front of a model for a session's next turn, within a
//! token budget (`POST /sessions/{id}/context`).
//!
//! Parts are taken greedily in this priority order, each only if it fits in what is left:
//! 1. the newest message event (the turn being answered);
//! 2. the session's state;
//! 3. the newest compaction summary;
//! 4. memories of the session's scope most relevant to the query (by default the newest user
//!    turn), best first, at most `memory_top_k`, together at most a quarter of the budget;
//! 5. the other recent events verbatim, newest first, back to the newest summary's range (or
//!    to the first event), stopping at the first that does not fit, so what is shown is one
//!    unbroken stretch;
//! 6. older summaries, those sharing most words with the query first (newest first among
//!    equals), each covering events no summary taken covers.
//!
//! The rendered text puts them in reading order: state, summaries (oldest first), memories,
//! events (oldest first). Token counts are of each part as rendered, under the server's
//! tokenizer; the whole text is counted again and, should joining have cost more than the
//! parts, the last-taken parts are dropped until it fits. Nothing here depends on the clock
//! or on randomness: the same session, memories and request give the same context.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::generation::event_text;
use crate::limits::{MAX_CONTEXT_BUDGET_TOKENS, MAX_QUERY_CHARS, MAX_TOP_K};
use crate::memory::MemoryQuery;
use crate::session::Rewound;
use crate::{Access, Error, Event, EventKind, MemoryService, Result, Role, SessionService, SummaryMethod, Tokenizer};

/// Events read per page while walking back from the newest.
const TAIL_PAGE: u32 = 256;
/// Compaction events looked at, newest first.
const MAX_SUMMARIES: u32 = 256;
/// Memories take at most this share of the budget.
const MEMORY_SHARE: u32 = 4;

#[derive(Debug, Clone)]
pub struct ContextRequest {
    pub budget_tokens: u32,
    /// What the memories should be relevant to; `None`: the newest user turn's text.
    pub query: Option<String>,
    pub memory_top_k: u32,
    pub include_state: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssembledContext {
    pub session_id: Uuid,
    pub tokenizer: Tokenizer,
    pub budget_tokens: u32,
    /// Tokens of `text`, never more than the budget.
    pub total_tokens: u32,
    /// The query memories were searched with, if any.
    pub query: Option<String>,
    pub state: Option<StatePart>,
    pub summaries: Vec<SummaryPart>,
    pub memories: Vec<MemoryPart>,
    pub events: Vec<EventPart>,
    pub coverage: Coverage,
    /// Everything above, rendered as one block of text.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatePart {
    pub state: Map<String, Value>,
    pub token_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryPart {
    pub event_id: Uuid,
    pub seq: i64,
    pub start_seq: i64,
    pub end_seq: i64,
    pub method: SummaryMethod,
    pub summary: String,
    pub token_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPart {
    pub id: Uuid,
    pub fact: String,
    pub topic: Option<String>,
    pub relevance: f64,
    pub token_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPart {
    pub event: Event,
    pub token_count: u32,
}

/// How much of the session the context represents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// The oldest event shown verbatim (`None`: none is).
    pub verbatim_from_seq: Option<i64>,
    /// The ranges the included summaries cover, oldest first.
    pub summarised: Vec<[i64; 2]>,
    /// Sequence numbers before `verbatim_from_seq` that no included summary covers: history
    /// the context leaves out.
    pub unrepresented_events: i64,
}

/// Assembles contexts over the sessions and memories services.
#[derive(Clone)]
pub struct ContextService {
    sessions: SessionService,
    memories: MemoryService,
}

enum Part {
    State(StatePart),
    Summary(SummaryPart),
    Memory(MemoryPart),
    Event(Box<EventPart>),
}

const STATE_HEADING: &str = "Session state:";
const MEMORIES_HEADING: &str = "Relevant memories:";
const EVENTS_HEADING: &str = "Conversation:";

impl ContextService {
    pub fn new(sessions: SessionService, memories: MemoryService) -> ContextService {
        ContextService { sessions, memories }
    }

    pub async fn assemble(
        &self,
        access: &Access,
        session_id: Uuid,
        request: ContextRequest,
        now: DateTime<Utc>,
    ) -> Result<AssembledContext> {
        if !(1..=MAX_CONTEXT_BUDGET_TOKENS).contains(&request.budget_tokens) {
            return Err(Error::validation(
                "budget_tokens",
                format!("must be between 1 and {MAX_CONTEXT_BUDGET_TOKENS}"),
            ));
        }
        if request.memory_top_k > MAX_TOP_K {
            return Err(Error::validation("memory_top_k", format!("must be between 0 and {MAX_TOP_K}")));
        }
        if let Some(query) = &request.query
            && (query.is_empty() || query.chars().count() > MAX_QUERY_CHARS)
        {
            return Err(Error::validation("query", format!("must be 1 to {MAX_QUERY_CHARS} characters")));
        }
        let tokenizer = self.sessions.limits().tokenizer;
        let session = self.sessions.get(access, session_id, false, now).await?;
        // Compactions and rewinds, newest first: what a rewind took out of the conversation
        // (events and summaries alike) is left out of the context.
        // The session is in reach (checked by the read above): pages are read from the store
        // without checking again.
        let markers = self.sessions.store().marker_events(&access.org_id, session_id, MAX_SUMMARIES, now).await?;
        let rewound = Rewound::from_markers(&markers);
        let compactions: Vec<Event> = markers.into_iter().filter(|event| !rewound.hides(event.seq)).collect();
        let mut parts: Vec<Part> = Vec::new();
        let mut left = i64::from(request.budget_tokens);
        let mut headings = Headings::default();

        // 1. The newest message event, and the tail it starts.
        let mut tail = Tail { next_end: session.event_count, buffered: Vec::new(), rewound };
        let newest = tail.next_message(self, access, session_id, 1, now).await?;
        let mut newest_user_text = None;
        if let Some(event) = &newest {
            let part = event_part(event, tokenizer);
            if headings.take(&mut left, EVENTS_HEADING, tokenizer, part.token_count) {
                parts.push(Part::Event(Box::new(part)));
            }
        }
        // 2. The state.
        if request.include_state && !session.state.is_empty() {
            let token_count = tokenizer.count(&render_state(&session.state)) + 1;
            if headings.take(&mut left, STATE_HEADING, tokenizer, token_count) {
                parts.push(Part::State(StatePart { state: session.state.clone(), token_count }));
            }
        }
        // 3. The newest summary.
        let mut summaries = compactions.iter().filter_map(summary_part(tokenizer));
        let newest_summary = summaries.next();
        let floor = newest_summary.as_ref().map_or(1, |summary| summary.end_seq + 1);
        let mut chain_start = None;
        if let Some(summary) = newest_summary
            && i64::from(summary.token_count) <= left
        {
            left -= i64::from(summary.token_count);
            chain_start = Some(summary.start_seq);
            parts.push(Part::Summary(summary));
        }
        // 4. Memories.
        if let Some(event) = newest.as_ref().filter(|event| event.role == Role::User) {
            newest_user_text = event_text(&event.content);
        }
        if newest_user_text.is_none() {
            newest_user_text = tail.newest_user_text(self, access, session_id, floor, now).await?;
        }
        let query = request.query.clone().or(newest_user_text).map(|query| shorten(&query, MAX_QUERY_CHARS));
        if let Some(query) = query.as_ref().filter(|query| !query.trim().is_empty())
            && request.memory_top_k > 0
        {
            let found = self
                .memories
                .search(access, &session.scope, &MemoryQuery::new(query.as_str(), request.memory_top_k), now)
                .await?;
            let mut share = i64::from(request.budget_tokens / MEMORY_SHARE);
            for scored in found {
                let memory = scored.memory;
                let token_count = tokenizer.count(&render_memory(&memory.fact)) + 1;
                if i64::from(token_count) > share {
                    continue;
                }
                if headings.take(&mut left, MEMORIES_HEADING, tokenizer, token_count) {
                    share -= i64::from(token_count);
                    parts.push(Part::Memory(MemoryPart {
                        id: memory.id,
                        fact: memory.fact,
                        topic: memory.topic,
                        relevance: scored.score,
                        token_count,
                    }));
                }
            }
        }
        // 5. Recent events, one unbroken stretch back from the newest.
        if newest.as_ref().is_some_and(|event| parts.iter().any(|part| is_event(part, event.seq))) {
            while let Some(event) = tail.next_message(self, access, session_id, floor, now).await? {
                let part = event_part(&event, tokenizer);
                if !headings.take(&mut left, EVENTS_HEADING, tokenizer, part.token_count) {
                    break;
                }
                parts.push(Part::Event(Box::new(part)));
            }
        }
        // 6. Older summaries, those that share most words with the query first (the newest
        // first among equals), each covering events no summary taken covers.
        if let Some(start) = chain_start {
            let words = query.as_deref().map(query_words).unwrap_or_default();
            let mut older: Vec<(usize, SummaryPart)> = summaries
                .filter(|summary| summary.end_seq < start)
                .map(|summary| (shared_words(&words, &summary.summary), summary))
                .collect();
            // Stable: the newest-first order holds among equal scores.
            older.sort_by_key(|(shared, _)| std::cmp::Reverse(*shared));
            let mut taken: Vec<[i64; 2]> = Vec::new();
            for (_, summary) in older {
                let overlaps = taken.iter().any(|[from, to]| summary.start_seq <= *to && *from <= summary.end_seq);
                if overlaps || i64::from(summary.token_count) > left {
                    continue;
                }
                left -= i64::from(summary.token_count);
                taken.push([summary.start_seq, summary.end_seq]);
                parts.push(Part::Summary(summary));
            }
        }

        // Joining may cost a token more than the parts here and there: drop the last taken
        // until the whole text fits.
        loop {
            let text = render(&parts);
            let total_tokens = tokenizer.count(&text);
            if total_tokens <= request.budget_tokens || parts.is_empty() {
                return Ok(finish(&session, tokenizer, &request, query, parts, text, total_tokens));
            }
            parts.pop();
        }
    }
}

/// Which section headings have been paid for.
#[derive(Default)]
struct Headings(Vec<&'static str>);

impl Headings {
    /// Takes `cost` tokens (and the heading's, the first time) from `left` if they fit.
    fn take(&mut self, left: &mut i64, heading: &'static str, tokenizer: Tokenizer, cost: u32) -> bool {
        let heading_cost = if self.0.contains(&heading) { 0 } else { i64::from(tokenizer.count(heading)) + 2 };
        let total = heading_cost + i64::from(cost);
        if total > *left {
            return false;
        }
        *left -= total;
        if heading_cost > 0 {
            self.0.push(heading);
        }
        true
    }
}

/// Walks a session's events back from the newest, a page at a time.
struct Tail {
    /// The last seq not yet read.
    next_end: i64,
    /// Read and not yet handed out, oldest first.
    buffered: Vec<Event>,
    /// Events rewinds took out, skipped.
    rewound: Rewound,
}

impl Tail {
    /// The next older message event with `seq >= floor`.
    async fn next_message(
        &mut self,
        service: &ContextService,
        access: &Access,
        session_id: Uuid,
        floor: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>> {
        loop {
            while let Some(event) = self.buffered.pop() {
                if event.seq < floor {
                    self.buffered.clear();
                    self.next_end = 0;
                    return Ok(None);
                }
                if event.kind == EventKind::Message && !self.rewound.hides(event.seq) {
                    return Ok(Some(event));
                }
            }
            if self.next_end < floor.max(1) {
                return Ok(None);
            }
            let after = (self.next_end - i64::from(TAIL_PAGE)).max(floor - 1).max(0);
            let limit = (self.next_end - after) as u32;
            let page = service.sessions.store().list_events(&access.org_id, session_id, after, limit, now).await?;
            self.next_end = after;
            if page.is_empty() {
                return Ok(None);
            }
            self.buffered = page;
        }
    }

    /// The text of the newest user turn not yet handed out (for the default query), leaving
    /// the walk where it was.
    async fn newest_user_text(
        &mut self,
        service: &ContextService,
        access: &Access,
        session_id: Uuid,
        floor: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let mut probe =
            Tail { next_end: self.next_end, buffered: self.buffered.clone(), rewound: self.rewound.clone() };
        while let Some(event) = probe.next_message(service, access, session_id, floor, now).await? {
            if event.role == Role::User
                && let Some(text) = event_text(&event.content)
            {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }
}

fn is_event(part: &Part, seq: i64) -> bool {
    matches!(part, Part::Event(event) if event.event.seq == seq)
}

fn summary_part(tokenizer: Tokenizer) -> impl Fn(&Event) -> Option<SummaryPart> {
    move |event| {
        let EventKind::Compaction(compaction) = &event.kind else { return None };
        let summary = event_text(&event.content).unwrap_or_default();
        let token_count = tokenizer.count(&render_summary(compaction.start_seq, compaction.end_seq, &summary)) + 2;
        Some(SummaryPart {
            event_id: event.id,
            seq: event.seq,
            start_seq: compaction.start_seq,
            end_seq: compaction.end_seq,
            method: compaction.method,
            summary,
            token_count,
        })
    }
}

fn event_part(event: &Event, tokenizer: Tokenizer) -> EventPart {
    EventPart { event: event.clone(), token_count: tokenizer.count(&render_event(event)) + 1 }
}

fn render_state(state: &Map<String, Value>) -> String {
    Value::Object(state.clone()).to_string()
}

fn render_summary(start_seq: i64, end_seq: i64, summary: &str) -> String {
    format!("Earlier conversation, events #{start_seq}-#{end_seq} (summary):\n{summary}")
}

fn render_memory(fact: &str) -> String {
    format!("- {fact}")
}

fn render_event(event: &Event) -> String {
    let text = event_text(&event.content).unwrap_or_else(|| event.content.to_string());
    let role = event.role.as_str();
    if event.author == role {
        format!("[#{}] {role}: {text}", event.seq)
    } else {
        format!("[#{}] {role} ({}): {text}", event.seq, event.author)
    }
}

fn render(parts: &[Part]) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for part in parts {
        if let Part::State(state) = part {
            blocks.push(format!("{STATE_HEADING}\n{}", render_state(&state.state)));
        }
    }
    let mut summaries: Vec<&SummaryPart> =
        parts.iter().filter_map(|part| if let Part::Summary(s) = part { Some(s) } else { None }).collect();
    summaries.sort_by_key(|summary| summary.start_seq);
    blocks.extend(summaries.iter().map(|s| render_summary(s.start_seq, s.end_seq, &s.summary)));
    let memories: Vec<String> = parts
        .iter()
        .filter_map(|part| if let Part::Memory(m) = part { Some(render_memory(&m.fact)) } else { None })
        .collect();
    if !memories.is_empty() {
        blocks.push(format!("{MEMORIES_HEADING}\n{}", memories.join("\n")));
    }
    let mut events: Vec<&EventPart> =
        parts.iter().filter_map(|part| if let Part::Event(e) = part { Some(e.as_ref()) } else { None }).collect();
    events.sort_by_key(|part| part.event.seq);
    if !events.is_empty() {
        let lines: Vec<String> = events.iter().map(|part| render_event(&part.event)).collect();
        blocks.push(format!("{EVENTS_HEADING}\n{}", lines.join("\n")));
    }
    blocks.join("\n\n")
}

fn finish(
    session: &crate::Session,
    tokenizer: Tokenizer,
    request: &ContextRequest,
    query: Option<String>,
    parts: Vec<Part>,
    text: String,
    total_tokens: u32,
) -> AssembledContext {
    let mut context = AssembledContext {
        session_id: session.id,
        tokenizer,
        budget_tokens: request.budget_tokens,
        total_tokens,
        query,
        state: None,
        summaries: Vec::new(),
        memories: Vec::new(),
        events: Vec::new(),
        coverage: Coverage { verbatim_from_seq: None, summarised: Vec::new(), unrepresented_events: 0 },
        text,
    };
    for part in parts {
        match part {
            Part::State(state) => context.state = Some(state),
            Part::Summary(summary) => context.summaries.push(summary),
            Part::Memory(memory) => context.memories.push(memory),
            Part::Event(event) => context.events.push(*event),
        }
    }
    context.summaries.sort_by_key(|summary| summary.start_seq);
    context.events.sort_by_key(|part| part.event.seq);
    context.coverage.verbatim_from_seq = context.events.first().map(|part| part.event.seq);
    context.coverage.summarised = context.summaries.iter().map(|s| [s.start_seq, s.end_seq]).collect();
    let before = context.coverage.verbatim_from_seq.map_or(session.event_count, |seq| seq - 1);
    let covered: i64 = context.summaries.iter().map(|s| (s.end_seq.min(before) - s.start_seq + 1).max(0)).sum();
    context.coverage.unrepresented_events = (before - covered).max(0);
    context
}

/// The distinct content words of a query: lowercased, four letters or more.
fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// How many of `words` occur in `text` (as words, ignoring case).
fn shared_words(words: &[String], text: &str) -> usize {
    if words.is_empty() {
        return 0;
    }
    let present: std::collections::HashSet<String> =
        text.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
    words.iter().filter(|word| present.contains(*word)).count()
}

fn shorten(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
