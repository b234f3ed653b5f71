"""Request bodies, as TypedDicts: plain dicts, exactly the JSON the server takes.

The client methods take these fields as keyword arguments and build the body; the TypedDicts
name the nested shapes you pass in (an event of `append_many`, a generation `config`, a search
`filter`, ...) so a type checker can check them, and they document every request body of the
API (`CreateSessionRequest` is what `POST /api/v1/sessions` takes, and so on). Times may be
given as `datetime` objects (sent as RFC 3339; a naive one is taken as UTC) or as strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Literal, Optional, TypedDict, Union

__all__ = [
    "Scope",
    "Role",
    "Permission",
    "SourceType",
    "GenerateSourceType",
    "JobStatus",
    "Extractor",
    "Timestamp",
    "AppendEvent",
    "AppendEventsRequest",
    "AppendRequest",
    "CreateSessionRequest",
    "StatePatch",
    "CreateMemoryRequest",
    "UpdateMemoryRequest",
    "RestoreRequest",
    "SearchFilter",
    "SearchRequest",
    "InlineEvent",
    "DirectFact",
    "EventRange",
    "CustomTopic",
    "Topic",
    "GenerationConfig",
    "GenerateRequest",
    "CreateKeyRequest",
    "EventActions",
    "CompactionPolicy",
    "CompactRequest",
    "ContextRequest",
    "EventKind",
    "ForkSessionRequest",
    "RewindSessionRequest",
]

#: A scope: a flat string-to-string dict (1 to 32 keys), e.g. `{"user_id": "u1"}`.
Scope = Dict[str, str]
#: The role of an event.
Role = Literal["user", "assistant", "tool", "system"]
#: A permission of an API key or JWT. ADMIN holds every other one.
Permission = Literal["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE", "ADMIN"]
#: What a job reads: a stored session, events sent inline, finished facts, or (a compaction
#: job) the session it summarises.
SourceType = Literal["session", "events", "memories", "compaction"]
#: What `memories.generate` reads: a job's source types but compaction (`sessions.compact`).
GenerateSourceType = Literal["session", "events", "memories"]
#: What an event is: a turn; a compaction (a summary the server wrote); or a rewind (the
#: session went back to an earlier point).
EventKind = Literal["message", "compaction", "rewind"]
#: The state of a generation job; `completed` and `failed` are final.
JobStatus = Literal["pending", "running", "completed", "failed"]
#: The extractor of a generation job.
Extractor = Literal["rules", "llm"]
#: A time: a `datetime` (a naive one is UTC) or an RFC 3339 string.
Timestamp = Union[datetime, str]


class _AppendEventRequired(TypedDict):
    author: str
    #: Text or any JSON value (not null).
    content: Any


class EventActions(TypedDict, total=False):
    """ADK's event actions: `state_delta` sets keys in the session's state with the append."""

    state_delta: Dict[str, Any]


class AppendEvent(_AppendEventRequired, total=False):
    """One event of `POST /api/v1/sessions/{id}/events` (schema `AppendEventRequest`)."""

    role: Optional[Role]
    metadata: Optional[Dict[str, Any]]
    invocation_id: Optional[str]
    timestamp: Optional[Timestamp]
    actions: Optional[EventActions]


class AppendEventsRequest(TypedDict):
    """Several events, appended atomically and in order (1 to `MAX_EVENTS_PER_REQUEST`)."""

    events: List[AppendEvent]


#: The body of an append: one event, or several.
AppendRequest = Union[AppendEvent, AppendEventsRequest]


class _CreateSessionRequired(TypedDict):
    user_id: str


class CreateSessionRequest(_CreateSessionRequired, total=False):
    """`POST /api/v1/sessions`. `scope` defaults to `{"user_id": user_id}`."""

    agent_id: Optional[str]
    scope: Optional[Scope]
    state: Optional[Dict[str, Any]]
    metadata: Optional[Dict[str, Any]]
    ttl_seconds: Optional[int]
    expires_at: Optional[Timestamp]
    compaction_policy: Optional["CompactionPolicy"]
    #: The session this one belongs to (a sub-agent's under its coordinator's): its scope must
    #: hold all of the parent's; deleting the parent deletes this one too.
    parent_session_id: Optional[str]


class CompactionPolicy(TypedDict, total=False):
    """When a session compacts itself: every `every_events` events, or once its uncompacted
    events hold `token_threshold` tokens, keeping the `keep_recent_events` newest."""

    every_events: Optional[int]
    token_threshold: Optional[int]
    keep_recent_events: Optional[int]


class CompactRequest(TypedDict, total=False):
    """`POST /api/v1/sessions/{id}/compact`."""

    keep_recent_events: Optional[int]


class _ContextRequired(TypedDict):
    budget_tokens: int


class ContextRequest(_ContextRequired, total=False):
    """`POST /api/v1/sessions/{id}/context`."""

    query: Optional[str]
    memory_top_k: Optional[int]
    include_state: Optional[bool]


#: `PATCH /api/v1/sessions/{id}/state`: a JSON Merge Patch (RFC 7396); `None` deletes a key.
StatePatch = Dict[str, Any]


class ForkSessionRequest(TypedDict, total=False):
    """`POST /api/v1/sessions/{id}/fork` (the whole body is optional). `at_seq` or
    `invocation_id`, not both; default: after the newest event."""

    #: Fork after this event (0: before the first).
    at_seq: Optional[int]
    #: Fork after the last event of this invocation.
    invocation_id: Optional[str]
    #: The fork's id; default: a new one.
    session_id: Optional[str]
    #: The fork's metadata; default: the source's.
    metadata: Optional[Dict[str, Any]]
    ttl_seconds: Optional[int]
    expires_at: Optional[Timestamp]


class RewindSessionRequest(TypedDict, total=False):
    """`POST /api/v1/sessions/{id}/rewind`: exactly one of the two."""

    #: Go back to how the session was after this event (0: as it was created).
    to_seq: Optional[int]
    #: Go back to before the first event of this invocation (ADK's rewind).
    before_invocation_id: Optional[str]


class _CreateMemoryRequired(TypedDict):
    scope: Scope
    fact: str


class CreateMemoryRequest(_CreateMemoryRequired, total=False):
    """`POST /api/v1/memories`. With `consolidate`, only fact, topic, confidence and ttl_seconds."""

    topic: Optional[str]
    confidence: Optional[float]
    metadata: Optional[Dict[str, Any]]
    ttl_seconds: Optional[int]
    expires_at: Optional[Timestamp]
    #: When the fact was said (not in the future; default: now). Not with `consolidate`.
    said_at: Optional[Timestamp]
    source_session_id: Optional[str]
    source_event_ids: List[str]
    consolidate: bool


class UpdateMemoryRequest(TypedDict, total=False):
    """`PATCH /api/v1/memories/{id}`: absent fields stay; `None` clears `topic` and `expires_at`."""

    fact: Optional[str]
    topic: Optional[str]
    confidence: Optional[float]
    metadata: Optional[Dict[str, Any]]
    ttl_seconds: Optional[int]
    expires_at: Optional[Timestamp]
    said_at: Timestamp


class RestoreRequest(TypedDict):
    """`POST /api/v1/memories/{id}/restore`."""

    revision_id: str


class SearchFilter(TypedDict, total=False):
    """The optional `filter` of a search."""

    topic: Optional[str]
    #: Each key must equal the memory's metadata value.
    metadata: Dict[str, Any]
    created_after: Optional[Timestamp]
    created_before: Optional[Timestamp]
    updated_after: Optional[Timestamp]
    updated_before: Optional[Timestamp]
    said_after: Optional[Timestamp]
    said_before: Optional[Timestamp]


class _SearchRequired(TypedDict):
    scope: Scope
    search_query: str


class SearchRequest(_SearchRequired, total=False):
    """`POST /api/v1/memories/search`."""

    top_k: Optional[int]
    filter: Optional[SearchFilter]
    recency_weight: Optional[float]
    recency_half_life_days: Optional[float]


class _InlineEventRequired(TypedDict):
    content: str


class InlineEvent(_InlineEventRequired, total=False):
    """An event of a generation job's `events` (not stored as a session)."""

    author: str
    #: user (default), assistant, tool or system.
    role: Optional[str]
    #: Optional; derived from position and content when absent.
    id: Optional[str]
    #: When it was said: what "yesterday" or "last month" in it count from (default: the job's time).
    timestamp: Optional[Timestamp]


class _DirectFactRequired(TypedDict):
    fact: str


class DirectFact(_DirectFactRequired, total=False):
    """A finished fact of a generation job's `memories` (only consolidated)."""

    topic: Optional[str]
    confidence: Optional[float]


class EventRange(TypedDict, total=False):
    """For a `session` source: only these events, by `seq`, inclusive."""

    from_seq: Optional[int]
    to_seq: Optional[int]


class CustomTopic(TypedDict):
    name: str
    description: str


#: A managed topic name (USER_PERSONAL_INFO, USER_PREFERENCES, KEY_CONVERSATION_DETAILS,
#: EXPLICIT_INSTRUCTIONS) or a custom `{name, description}`.
Topic = Union[str, CustomTopic]


class GenerationConfig(TypedDict, total=False):
    """The `config` of a generation job."""

    #: rules (default, offline) or llm (needs LLM_PROVIDER on the server).
    extractor: Optional[Extractor]
    topics: List[Topic]
    #: Few-shot examples for the llm extractor: `{conversation: [{role, content}], facts: [{fact, topic}]}`.
    examples: List[Dict[str, Any]]
    disable_consolidation: bool
    created_ttl_seconds: Optional[int]
    updated_ttl_seconds: Optional[int]
    metadata: Dict[str, Any]
    #: merge (default), overwrite or require_exact_match.
    metadata_merge: Optional[Literal["merge", "overwrite", "require_exact_match"]]


class _GenerateRequired(TypedDict):
    source_type: GenerateSourceType


class GenerateRequest(_GenerateRequired, total=False):
    """`POST /api/v1/memories/generate` (schema `GenerateRequestBody`)."""

    #: For `session`: the session's id.
    source_reference: Optional[str]
    #: Where the memories go; for `session` the session's scope by default, required otherwise.
    scope: Optional[Scope]
    events: Optional[List[InlineEvent]]
    memories: Optional[List[DirectFact]]
    event_range: Optional[EventRange]
    config: GenerationConfig


class _CreateKeyRequired(TypedDict):
    name: str
    permissions: List[Permission]


class CreateKeyRequest(_CreateKeyRequired, total=False):
    """`POST /api/v1/keys`: never more than the creating credential holds."""

    scope: Optional[Scope]
    expires_at: Optional[Timestamp]
    expires_in_seconds: Optional[int]
    rate_limit_per_second: Optional[int]
