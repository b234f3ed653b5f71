"""The API's operations and the SDK method of each: the table the coverage test checks.

`OPERATIONS` maps every in-scope operation of the server's `/openapi.json` (every path under
`/api/v1`, and the service endpoints `/health`, `/health/ready`, `/metrics`) to the client
method that calls it, as a dotted path from the client (`"sessions.create"` is
`client.sessions.create`). `HELPERS` lists the methods built on an operation without being its
one-to-one call (iterators over pages, a batch append, polling). The test suite checks that
the two tables agree with the running server's document and with both clients. The Agent
Engine surface (`/v1beta1/...`, Google's protocol) is out of scope: use Google's clients.

The client also reads these tables at run time: which operations may be retried after a
connection failure (`IDEMPOTENT`), and which carry `X-Engine-Id` (`ENGINE_PREFIXES`).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

__all__ = ["OPERATIONS", "HELPERS", "SCHEMAS", "IDEMPOTENT", "ENGINE_PREFIXES", "in_scope", "takes_engine",
           "is_idempotent"]

Operation = Tuple[str, str]

OPERATIONS: Dict[Operation, str] = {
    # Sessions
    ("POST", "/api/v1/sessions"): "sessions.create",
    ("GET", "/api/v1/sessions"): "sessions.list",
    ("GET", "/api/v1/sessions/{id}"): "sessions.get",
    ("DELETE", "/api/v1/sessions/{id}"): "sessions.delete",
    ("POST", "/api/v1/sessions/{id}/events"): "sessions.append",
    ("GET", "/api/v1/sessions/{id}/events"): "sessions.events",
    ("PATCH", "/api/v1/sessions/{id}/state"): "sessions.patch_state",
    ("GET", "/api/v1/sessions/{id}/state"): "sessions.state",
    ("POST", "/api/v1/sessions/{id}/fork"): "sessions.fork",
    ("POST", "/api/v1/sessions/{id}/rewind"): "sessions.rewind",
    ("POST", "/api/v1/sessions/{id}/compact"): "sessions.compact",
    ("POST", "/api/v1/sessions/{id}/context"): "sessions.context",
    ("GET", "/api/v1/sessions/{id}/events/stream"): "sessions.stream_events",
    # Memories
    ("POST", "/api/v1/memories"): "memories.create",
    ("GET", "/api/v1/memories"): "memories.list",
    ("GET", "/api/v1/memories/{id}"): "memories.get",
    ("PATCH", "/api/v1/memories/{id}"): "memories.update",
    ("DELETE", "/api/v1/memories/{id}"): "memories.delete",
    ("GET", "/api/v1/memories/{id}/revisions"): "memories.revisions",
    ("POST", "/api/v1/memories/{id}/restore"): "memories.restore",
    ("POST", "/api/v1/memories/search"): "memories.search",
    ("GET", "/api/v1/memories/profile"): "memories.profile",
    ("POST", "/api/v1/memories/generate"): "memories.generate",
    # Jobs
    ("GET", "/api/v1/jobs/{id}"): "jobs.get",
    ("GET", "/api/v1/jobs/{id}/stream"): "jobs.stream",
    # Keys
    ("POST", "/api/v1/keys"): "keys.create",
    ("GET", "/api/v1/keys"): "keys.list",
    ("GET", "/api/v1/keys/{id}"): "keys.get",
    ("DELETE", "/api/v1/keys/{id}"): "keys.revoke",
    # Service endpoints (no credentials needed)
    ("GET", "/health"): "health",
    ("GET", "/health/ready"): "ready",
    ("GET", "/metrics"): "metrics",
}

HELPERS: Dict[str, Operation] = {
    "sessions.iter": ("GET", "/api/v1/sessions"),
    "sessions.append_many": ("POST", "/api/v1/sessions/{id}/events"),
    "sessions.iter_events": ("GET", "/api/v1/sessions/{id}/events"),
    "memories.iter": ("GET", "/api/v1/memories"),
    "jobs.wait": ("GET", "/api/v1/jobs/{id}"),
}

# The SDK's model of each schema of the in-scope operations (names in the `contextiq` package):
# requests are TypedDicts, responses dataclasses; a schema that is one of several shapes
# (`oneOf`) maps to each of them.
SCHEMAS: Dict[str, Tuple[str, ...]] = {
    # Requests
    "CreateSessionRequest": ("CreateSessionRequest",),
    "AppendBody": ("AppendEvent", "AppendEventsRequest"),
    "AppendEventRequest": ("AppendEvent",),
    "AppendEventsRequest": ("AppendEventsRequest",),
    "CreateMemoryRequest": ("CreateMemoryRequest",),
    "UpdateMemoryRequest": ("UpdateMemoryRequest",),
    "RestoreRequest": ("RestoreRequest",),
    "SearchRequest": ("SearchRequest",),
    "SearchFilter": ("SearchFilter",),
    "GenerateRequestBody": ("GenerateRequest",),
    "GenerationConfigBody": ("GenerationConfig",),
    "InlineEventBody": ("InlineEvent",),
    "DirectFactBody": ("DirectFact",),
    "EventRange": ("EventRange",),
    "CreateKeyRequest": ("CreateKeyRequest",),
    "RoleBody": ("Role",),
    "GenerateSourceType": ("GenerateSourceType",),
    "ActionsBody": ("Actions",),
    "CompactionPolicyBody": ("CompactionPolicy",),
    "CompactRequest": ("CompactRequest",),
    "ContextRequestBody": ("ContextRequest",),
    "ForkSessionRequest": ("ForkSessionRequest",),
    "RewindSessionRequest": ("RewindSessionRequest",),
    "BTreeMap": ("Scope",),
    # Responses
    "SessionBody": ("Session",),
    "CreatedSession": ("Session",),
    "SessionList": ("SessionList",),
    "SessionAnswer": ("Session", "WriteReceipt"),
    "ForkOriginBody": ("ForkOrigin",),
    "StateAt": ("StateAt",),
    "EventBody": ("Event",),
    "EventBatch": ("EventBatch",),
    "EventList": ("EventList",),
    "Appended": ("Event", "EventBatch"),
    "MemoryBody": ("Memory",),
    "MemoryList": ("MemoryList",),
    "MemoryAnswer": ("Memory", "WriteReceipt"),
    "WriteReceipt": ("WriteReceipt",),
    "RevisionBody": ("Revision",),
    "RevisionList": ("RevisionList",),
    "SearchResponse": ("SearchResponse",),
    "SearchResult": ("SearchResult",),
    "ProfileBody": ("Profile",),
    "ProfileAttributeBody": ("ProfileAttribute",),
    "JobBody": ("Job",),
    "JobCounts": ("JobCounts",),
    "CompactionBody": ("Compaction",),
    "RewindBody": ("Rewind",),
    "CompactionStatusBody": ("CompactionStatus",),
    "ContextBody": ("Context",),
    "StatePartBody": ("StatePart",),
    "SummaryPartBody": ("SummaryPart",),
    "MemoryPartBody": ("MemoryPart",),
    "EventPartBody": ("EventPart",),
    "CoverageBody": ("Coverage",),
    "KeyBody": ("Key",),
    "CreatedKeyBody": ("CreatedKey",),
    "KeyList": ("KeyList",),
    "HealthBody": ("Health",),
    "Problem": ("ContextIQError",),
}

# Safe to send again when the answer was lost: reads, deletes, and the two PATCHes (a JSON
# Merge Patch and a memory update set values, so a second one changes nothing), plus search,
# a read that is a POST only to carry its query.
IDEMPOTENT: FrozenSet[Operation] = frozenset(
    op for op in OPERATIONS if op[0] in ("GET", "DELETE", "PATCH")
) | frozenset({("POST", "/api/v1/memories/search"), ("POST", "/api/v1/sessions/{id}/context")})

# The routes on which `X-Engine-Id` selects a reasoning engine; keys belong to the org.
ENGINE_PREFIXES: Tuple[str, ...] = ("/api/v1/sessions", "/api/v1/memories", "/api/v1/jobs")


def in_scope(path: str) -> bool:
    """Whether an OpenAPI path is one this SDK covers."""
    return path.startswith("/api/v1") or path in ("/health", "/health/ready", "/metrics")


def takes_engine(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in ENGINE_PREFIXES)


def is_idempotent(method: str, path: str) -> bool:
    return (method, path) in IDEMPOTENT
