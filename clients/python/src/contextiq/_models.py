"""Response bodies, as frozen dataclasses.

Every answer of the API is parsed into one of these: attribute access, times as timezone-aware
`datetime` objects, nested records as their own classes. Fields the server adds later are not
lost: each object keeps the JSON it was made from in `raw` (not shown in `repr`, not compared).
The list answers (`SessionList`, `EventList`, `MemoryList`, `RevisionList`, `KeyList`,
`SearchResponse`, `EventBatch`) are also sequences of their items: `len(page)`, `page[0]`,
`for session in page`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Generic, Iterator, List, Mapping, Optional, TypeVar, Union, overload

__all__ = [
    "Event",
    "EventBatch",
    "EventList",
    "Session",
    "SessionList",
    "WriteReceipt",
    "Memory",
    "MemoryList",
    "Revision",
    "RevisionList",
    "SearchResult",
    "SearchResponse",
    "JobCounts",
    "Job",
    "Key",
    "CreatedKey",
    "KeyList",
    "Health",
    "Compaction",
    "Actions",
    "CompactionStatus",
    "Context",
    "StatePart",
    "SummaryPart",
    "MemoryPart",
    "EventPart",
    "Coverage",
    "ForkOrigin",
    "Rewind",
    "StateAt",
    "parse_datetime",
]

_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(value: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 time of the server as an aware `datetime` (UTC when it has no offset).

    Works on Python 3.9 and 3.10 too, whose `fromisoformat` takes neither `Z` nor more than six
    fractional digits; digits past the microsecond are dropped.
    """
    if value is None:
        return None
    match = _DATETIME.match(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    fraction = (match.group("fraction") or "0")[:6].ljust(6, "0")
    offset = match.group("offset")
    if offset is None or offset in ("Z", "z"):
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    return datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}.{fraction}{offset}")


def _dt(data: Mapping[str, Any], name: str) -> Optional[datetime]:
    value = data.get(name)
    return parse_datetime(value) if isinstance(value, str) else None


def _req_dt(data: Mapping[str, Any], name: str) -> datetime:
    value = _dt(data, name)
    if value is None:
        raise ValueError(f"the answer lacks {name!r}")
    return value


def _dict(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _scope(value: Any) -> Dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


T = TypeVar("T")


class _Items(Generic[T]):
    """A list answer is a sequence of its items (and keeps its other fields as attributes)."""

    @property
    def items(self) -> List[T]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> List[T]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[T, List[T]]:
        return self.items[index]

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class Compaction:
    """What a compaction event summarises (`CompactionBody`)."""

    start_seq: int
    end_seq: int
    start_time: datetime
    end_time: datetime
    #: llm or offline.
    method: str
    #: Tokens of the message events summarised, and of the summary.
    tokens_before: int
    tokens_after: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Compaction":
        return cls(
            start_seq=int(data["start_seq"]),
            end_seq=int(data["end_seq"]),
            start_time=_req_dt(data, "start_time"),
            end_time=_req_dt(data, "end_time"),
            method=data["method"],
            tokens_before=int(data.get("tokens_before", 0)),
            tokens_after=int(data.get("tokens_after", 0)),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Rewind:
    """What a rewind event went back to (`RewindBody`): the events after `to_seq` and before
    the rewind event are out of the conversation (they stay stored and listed)."""

    to_seq: int
    #: The invocation of event `to_seq + 1`, if it has one (ADK's `rewind_before_invocation_id`).
    before_invocation_id: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Rewind":
        return cls(to_seq=int(data["to_seq"]), before_invocation_id=data.get("before_invocation_id"),
                   raw=dict(data))


@dataclass(frozen=True)
class Actions:
    """ADK's event actions (`ActionsBody`): the state keys the event set."""

    state_delta: Dict[str, Any]
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Optional[Mapping[str, Any]]) -> "Actions":
        data = data or {}
        return cls(state_delta=_dict(data.get("state_delta")), raw=dict(data))


@dataclass(frozen=True)
class Event:
    """An event of a session (`EventBody`)."""

    id: str
    session_id: str
    #: Position in the session, from 1: the total order of its events.
    seq: int
    author: str
    role: str
    #: Text or any JSON value.
    content: Any
    metadata: Dict[str, Any]
    timestamp: datetime
    invocation_id: Optional[str] = None
    #: Tokens of its content, counted on append with the server's tokenizer.
    token_count: int = 0
    #: message; compaction: a summary (the content) the server wrote of `compaction`'s range;
    #: rewind: the session went back to how it was after `rewind.to_seq`.
    kind: str = "message"
    compaction: Optional[Compaction] = None
    #: For a rewind event: where it went back to. Its `actions.state_delta` is the state
    #: change (None: a key removed).
    rewind: Optional[Rewind] = None
    actions: Actions = field(default_factory=lambda: Actions(state_delta={}))
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Event":
        compaction = data.get("compaction")
        rewind = data.get("rewind")
        return cls(
            id=data["id"],
            session_id=data["session_id"],
            seq=int(data["seq"]),
            author=data["author"],
            role=data["role"],
            content=data.get("content"),
            metadata=_dict(data.get("metadata")),
            timestamp=_req_dt(data, "timestamp"),
            invocation_id=data.get("invocation_id"),
            token_count=int(data.get("token_count") or 0),
            kind=data.get("kind", "message"),
            compaction=Compaction.from_json(compaction) if compaction else None,
            rewind=Rewind.from_json(rewind) if rewind else None,
            actions=Actions.from_json(data.get("actions")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class EventBatch(_Items[Event]):
    """The events of a batch append, in their order."""

    events: List[Event]
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Event]:
        return self.events

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EventBatch":
        return cls(events=[Event.from_json(e) for e in data.get("events") or []], raw=dict(data))


@dataclass(frozen=True)
class EventList(_Items[Event]):
    """A page of a session's events; pass `next_cursor` as `cursor` for the next."""

    events: List[Event]
    next_cursor: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Event]:
        return self.events

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EventList":
        return cls(
            events=[Event.from_json(e) for e in data.get("events") or []],
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ForkOrigin:
    """Where a fork branched off (`ForkOriginBody`): its events up to `seq` are copies of
    that session's."""

    session_id: str
    seq: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ForkOrigin":
        return cls(session_id=data["session_id"], seq=int(data["seq"]), raw=dict(data))


@dataclass(frozen=True)
class Session:
    """A session (`SessionBody`; a new one is `CreatedSession`, with no events yet)."""

    id: str
    user_id: str
    scope: Dict[str, str]
    state: Dict[str, Any]
    metadata: Dict[str, Any]
    created_at: datetime
    updated_at: datetime
    #: How many events the session holds.
    event_count: int
    agent_id: Optional[str] = None
    expires_at: Optional[datetime] = None
    #: The first events in append order (at most 1,000); None in lists and with `include_events=False`.
    events: Optional[List[Event]] = None
    #: When `events` holds only the first events: the cursor for `sessions.events()`.
    events_next_cursor: Optional[str] = None
    #: Tokens of all its events.
    token_count: int = 0
    compaction: "CompactionStatus" = field(default_factory=lambda: CompactionStatus.from_json({}))
    #: The session this one belongs to (`sessions.list(parent_session_id=...)` lists its children).
    parent_session_id: Optional[str] = None
    #: The session and event it was forked from, if it was.
    forked_from: Optional[ForkOrigin] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Session":
        events = data.get("events")
        forked_from = data.get("forked_from")
        return cls(
            id=data["id"],
            user_id=data["user_id"],
            scope=_scope(data.get("scope")),
            state=_dict(data.get("state")),
            metadata=_dict(data.get("metadata")),
            created_at=_req_dt(data, "created_at"),
            updated_at=_req_dt(data, "updated_at"),
            event_count=int(data.get("event_count") or 0),
            agent_id=data.get("agent_id"),
            expires_at=_dt(data, "expires_at"),
            events=[Event.from_json(e) for e in events] if isinstance(events, list) else None,
            events_next_cursor=data.get("events_next_cursor"),
            token_count=int(data.get("token_count") or 0),
            compaction=CompactionStatus.from_json(data.get("compaction") or {}),
            parent_session_id=data.get("parent_session_id"),
            forked_from=ForkOrigin.from_json(forked_from) if forked_from else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class CompactionStatus:
    """How far a session's compactions reach (`CompactionStatusBody`)."""

    #: The session's own policy (`every_events`, `token_threshold`, `keep_recent_events`); None: the server's.
    policy: Optional[Dict[str, Any]]
    #: The last seq a compaction summarised (0: none yet).
    through_seq: int
    uncompacted_events: int
    uncompacted_tokens: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CompactionStatus":
        policy = data.get("policy")
        return cls(
            policy=dict(policy) if isinstance(policy, Mapping) else None,
            through_seq=int(data.get("through_seq") or 0),
            uncompacted_events=int(data.get("uncompacted_events") or 0),
            uncompacted_tokens=int(data.get("uncompacted_tokens") or 0),
            raw=dict(data),
        )


@dataclass(frozen=True)
class SessionList(_Items[Session]):
    """A page of sessions, newest first."""

    sessions: List[Session]
    next_cursor: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Session]:
        return self.sessions

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SessionList":
        return cls(
            sessions=[Session.from_json(s) for s in data.get("sessions") or []],
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class StateAt:
    """A session's state at one point of its history (`StateAt`, from `sessions.state`)."""

    session_id: str
    #: The event it is the state after (0: as the session was created).
    at_seq: int
    state: Dict[str, Any]
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StateAt":
        return cls(session_id=data["session_id"], at_seq=int(data["at_seq"]), state=_dict(data.get("state")),
                   raw=dict(data))


@dataclass(frozen=True)
class StatePart:
    """The session's state in a context (`StatePartBody`)."""

    state: Dict[str, Any]
    token_count: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StatePart":
        return cls(state=_dict(data.get("state")), token_count=int(data["token_count"]), raw=dict(data))


@dataclass(frozen=True)
class SummaryPart:
    """A compaction summary in a context (`SummaryPartBody`)."""

    event_id: str
    seq: int
    start_seq: int
    end_seq: int
    method: str
    summary: str
    token_count: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SummaryPart":
        return cls(
            event_id=data["event_id"],
            seq=int(data["seq"]),
            start_seq=int(data["start_seq"]),
            end_seq=int(data["end_seq"]),
            method=data["method"],
            summary=data["summary"],
            token_count=int(data["token_count"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MemoryPart:
    """A memory in a context (`MemoryPartBody`)."""

    id: str
    fact: str
    relevance: float
    token_count: int
    topic: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemoryPart":
        return cls(
            id=data["id"],
            fact=data["fact"],
            relevance=float(data["relevance"]),
            token_count=int(data["token_count"]),
            topic=data.get("topic"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class EventPart:
    """An event shown verbatim in a context (`EventPartBody`)."""

    event: Event
    token_count: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EventPart":
        return cls(event=Event.from_json(data["event"]), token_count=int(data["token_count"]), raw=dict(data))


@dataclass(frozen=True)
class Coverage:
    """How much of the session a context represents (`CoverageBody`)."""

    summarised: List[List[int]]
    unrepresented_events: int
    verbatim_from_seq: Optional[int] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Coverage":
        return cls(
            summarised=[list(pair) for pair in data.get("summarised") or []],
            unrepresented_events=int(data.get("unrepresented_events") or 0),
            verbatim_from_seq=data.get("verbatim_from_seq"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Context:
    """What to put in front of the model for a session's next turn (`ContextBody`)."""

    session_id: str
    tokenizer: str
    budget_tokens: int
    #: Tokens of `text`; never more than `budget_tokens`.
    total_tokens: int
    summaries: List[SummaryPart]
    memories: List[MemoryPart]
    events: List[EventPart]
    coverage: Coverage
    #: Everything, rendered as one block of text.
    text: str
    query: Optional[str] = None
    state: Optional[StatePart] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Context":
        state = data.get("state")
        return cls(
            session_id=data["session_id"],
            tokenizer=data["tokenizer"],
            budget_tokens=int(data["budget_tokens"]),
            total_tokens=int(data["total_tokens"]),
            summaries=[SummaryPart.from_json(part) for part in data.get("summaries") or []],
            memories=[MemoryPart.from_json(part) for part in data.get("memories") or []],
            events=[EventPart.from_json(part) for part in data.get("events") or []],
            coverage=Coverage.from_json(data.get("coverage") or {}),
            text=data.get("text", ""),
            query=data.get("query"),
            state=StatePart.from_json(state) if state else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class WriteReceipt:
    """The answer of a change to a credential that may write but not read."""

    id: str
    updated_at: datetime
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WriteReceipt":
        return cls(id=data["id"], updated_at=_req_dt(data, "updated_at"), raw=dict(data))


@dataclass(frozen=True)
class Memory:
    """A memory (`MemoryBody`): a durable fact about a scope."""

    id: str
    scope: Dict[str, str]
    fact: str
    confidence: float
    source_event_ids: List[str]
    metadata: Dict[str, Any]
    #: When the fact was said: its conversation turn, the time given, else `created_at`.
    said_at: datetime
    created_at: datetime
    updated_at: datetime
    topic: Optional[str] = None
    source_session_id: Optional[str] = None
    expires_at: Optional[datetime] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Memory":
        return cls(
            id=data["id"],
            scope=_scope(data.get("scope")),
            fact=data["fact"],
            confidence=float(data.get("confidence", 1.0)),
            source_event_ids=list(data.get("source_event_ids") or []),
            metadata=_dict(data.get("metadata")),
            said_at=_req_dt(data, "said_at"),
            created_at=_req_dt(data, "created_at"),
            updated_at=_req_dt(data, "updated_at"),
            topic=data.get("topic"),
            source_session_id=data.get("source_session_id"),
            expires_at=_dt(data, "expires_at"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MemoryList(_Items[Memory]):
    """A page of a scope's memories, newest first."""

    memories: List[Memory]
    next_cursor: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Memory]:
        return self.memories

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemoryList":
        return cls(
            memories=[Memory.from_json(m) for m in data.get("memories") or []],
            next_cursor=data.get("next_cursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ProfileAttribute:
    """One attribute of a scope's profile (`ProfileAttributeBody`): its current value, in the
    fact's own words, and the memory that sets it."""

    attribute: str
    value: str
    memory_id: str
    fact: str
    updated_at: datetime
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ProfileAttribute":
        return cls(attribute=data["attribute"], value=data["value"], memory_id=data["memory_id"],
                   fact=data["fact"], updated_at=_req_dt(data, "updated_at"), raw=dict(data))


@dataclass(frozen=True)
class Profile(_Items[ProfileAttribute]):
    """A scope's profile (`ProfileBody`): the current value of each attribute its memories set."""

    scope: Dict[str, str]
    attributes: List[ProfileAttribute]
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[ProfileAttribute]:
        return self.attributes

    def get(self, attribute: str) -> Optional[str]:
        """The value of `attribute` ("name", "residence", ...), or None when no memory sets it."""
        return next((entry.value for entry in self.attributes if entry.attribute == attribute), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Profile":
        return cls(scope=_scope(data.get("scope")),
                   attributes=[ProfileAttribute.from_json(a) for a in data.get("attributes") or []],
                   raw=dict(data))


@dataclass(frozen=True)
class Revision:
    """One change of a memory (`RevisionBody`); `memories.restore` returns to it."""

    id: str
    memory_id: str
    #: created, updated, deleted or restored.
    action: str
    #: The credential (`key:<id>`, `jwt:<org>:<sub>`) or job that made the change.
    actor: str
    created_at: datetime
    job_id: Optional[str] = None
    before: Optional[Dict[str, Any]] = None
    after: Optional[Dict[str, Any]] = None
    cause: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Revision":
        return cls(
            id=data["id"],
            memory_id=data["memory_id"],
            action=data["action"],
            actor=data.get("actor", ""),
            created_at=_req_dt(data, "created_at"),
            job_id=data.get("job_id"),
            before=data.get("before"),
            after=data.get("after"),
            cause=data.get("cause"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class RevisionList(_Items[Revision]):
    """A memory's revisions, oldest first."""

    revisions: List[Revision]
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Revision]:
        return self.revisions

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RevisionList":
        return cls(revisions=[Revision.from_json(r) for r in data.get("revisions") or []], raw=dict(data))


@dataclass(frozen=True)
class SearchResult:
    """A memory found by a search and its fused relevance in [0, 1] (higher is better)."""

    memory: Memory
    score: float
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SearchResult":
        return cls(memory=Memory.from_json(data["memory"]), score=float(data["score"]), raw=dict(data))


@dataclass(frozen=True)
class SearchResponse(_Items[SearchResult]):
    """The results of a search, best first."""

    results: List[SearchResult]
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[SearchResult]:
        return self.results

    @property
    def memories(self) -> List[Memory]:
        """The memories found, best first."""
        return [result.memory for result in self.results]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SearchResponse":
        return cls(results=[SearchResult.from_json(r) for r in data.get("results") or []], raw=dict(data))


@dataclass(frozen=True)
class JobCounts:
    """What a job changed: memories added, updated, deleted, and facts already known."""

    added: int
    updated: int
    deleted: int
    unchanged: int
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobCounts":
        return cls(
            added=int(data.get("added", 0)),
            updated=int(data.get("updated", 0)),
            deleted=int(data.get("deleted", 0)),
            unchanged=int(data.get("unchanged", 0)),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Job:
    """A memory generation job (`JobBody`); poll it with `jobs.get` or `jobs.wait`."""

    id: str
    #: pending, running, completed or failed.
    status: str
    source_type: str
    scope: Dict[str, str]
    extractor: str
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    events_processed: int
    more_events_pending: bool
    facts_extracted: int
    memories_added: List[str]
    memories_updated: List[str]
    memories_deleted: List[str]
    counts: JobCounts
    llm_usage: Dict[str, Any]
    source_reference: Optional[str] = None
    error: Optional[str] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    retry_at: Optional[datetime] = None
    #: A compaction job's summary event, once written.
    compaction_event_id: Optional[str] = None
    compaction: Optional[Compaction] = None
    raw: Dict[str, Any] = _raw()

    @property
    def done(self) -> bool:
        """Whether the job is final: `completed` or `failed`."""
        return self.status in ("completed", "failed")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Job":
        return cls(
            id=data["id"],
            status=data["status"],
            source_type=data["source_type"],
            scope=_scope(data.get("scope")),
            extractor=data.get("extractor", "rules"),
            attempts=int(data.get("attempts", 0)),
            max_attempts=int(data.get("max_attempts", 0)),
            created_at=_req_dt(data, "created_at"),
            updated_at=_req_dt(data, "updated_at"),
            events_processed=int(data.get("events_processed", 0)),
            more_events_pending=bool(data.get("more_events_pending", False)),
            facts_extracted=int(data.get("facts_extracted", 0)),
            memories_added=list(data.get("memories_added") or []),
            memories_updated=list(data.get("memories_updated") or []),
            memories_deleted=list(data.get("memories_deleted") or []),
            counts=JobCounts.from_json(data.get("counts") or {}),
            llm_usage=_dict(data.get("llm_usage")),
            source_reference=data.get("source_reference"),
            error=data.get("error"),
            started_at=_dt(data, "started_at"),
            finished_at=_dt(data, "finished_at"),
            retry_at=_dt(data, "retry_at"),
            compaction_event_id=data.get("compaction_event_id"),
            compaction=Compaction.from_json(data["compaction"]) if data.get("compaction") else None,
            raw=dict(data),
        )


def _key_fields(data: Mapping[str, Any]) -> Dict[str, Any]:
    scope = data.get("scope")
    rate = data.get("rate_limit_per_second")
    return dict(
        id=data["id"],
        org_id=data["org_id"],
        name=data["name"],
        prefix=data["prefix"],
        permissions=list(data.get("permissions") or []),
        created_at=_req_dt(data, "created_at"),
        scope=_scope(scope) if isinstance(scope, Mapping) else None,
        rate_limit_per_second=int(rate) if rate is not None else None,
        expires_at=_dt(data, "expires_at"),
        revoked_at=_dt(data, "revoked_at"),
        last_used_at=_dt(data, "last_used_at"),
        parent_id=data.get("parent_id"),
        raw=dict(data),
    )


@dataclass(frozen=True)
class Key:
    """An API key's record (`KeyBody`); the key itself is never shown again after creation."""

    id: str
    org_id: str
    name: str
    #: The first characters of the key, to recognise it.
    prefix: str
    permissions: List[str]
    created_at: datetime
    scope: Optional[Dict[str, str]] = None
    rate_limit_per_second: Optional[int] = None
    expires_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    #: The key that minted this one, if a key did: revoking it revokes this one.
    parent_id: Optional[str] = None
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Key":
        return cls(**_key_fields(data))


@dataclass(frozen=True)
class CreatedKey(Key):
    """A new key (`CreatedKeyBody`): `key` (`ck_...`) is shown this once; it stays out of `repr`."""

    key: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CreatedKey":
        fields = _key_fields(data)
        fields["raw"] = {k: v for k, v in data.items() if k != "key"}
        return cls(key=data["key"], **fields)


@dataclass(frozen=True)
class KeyList(_Items[Key]):
    """The keys of the caller's org."""

    keys: List[Key]
    raw: Dict[str, Any] = _raw()

    @property
    def items(self) -> List[Key]:
        return self.keys

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "KeyList":
        return cls(keys=[Key.from_json(k) for k in data.get("keys") or []], raw=dict(data))


@dataclass(frozen=True)
class Health:
    """`GET /health` (`ok`) and `GET /health/ready` (`ready`)."""

    status: str
    service: str
    version: str
    raw: Dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Health":
        return cls(status=data["status"], service=data.get("service", ""), version=data.get("version", ""),
                   raw=dict(data))


def memory_or_receipt(data: Mapping[str, Any]) -> Union[Memory, WriteReceipt]:
    """`MemoryAnswer`: the memory to a credential that may read it, else a receipt."""
    return Memory.from_json(data) if "fact" in data else WriteReceipt.from_json(data)


def session_or_receipt(data: Mapping[str, Any]) -> Union[Session, WriteReceipt]:
    """`SessionAnswer`: the session to a credential that may read it, else a receipt."""
    return Session.from_json(data) if "user_id" in data else WriteReceipt.from_json(data)


def memory_or_job(data: Mapping[str, Any]) -> Union[Memory, Job]:
    """`POST /memories`: 201 with the memory, or 202 with the job of a consolidation."""
    return Memory.from_json(data) if "fact" in data else Job.from_json(data)
