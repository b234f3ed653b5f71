"""The official Python SDK of ContextIQ, the agent-memory server.

    from contextiq import ContextIQ

    with ContextIQ(base_url="http://127.0.0.1:8000", api_key="ck_...") as client:
        session = client.sessions.create("u1")
        client.sessions.append(session.id, author="user", content="I live in Lisbon")

`ContextIQ` is synchronous, `AsyncContextIQ` the same API with `await`. Every problem answer
of the server raises `ContextIQError` (with the server's stable `code`).
"""

from ._async_client import AsyncContextIQ, AsyncJobs, AsyncKeys, AsyncMemories, AsyncSessions
from ._base import NOT_GIVEN, NotGiven
from ._errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextIQError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
)
from ._models import (
    CreatedKey,
    Event,
    EventBatch,
    EventList,
    Health,
    Job,
    JobCounts,
    Key,
    KeyList,
    Memory,
    MemoryList,
    Revision,
    RevisionList,
    SearchResponse,
    SearchResult,
    Session,
    SessionList,
    WriteReceipt,
)
from ._operations import HELPERS, OPERATIONS
from ._sync_client import ContextIQ, Jobs, Keys, Memories, Sessions
from ._types import (
    AppendEvent,
    AppendEventsRequest,
    AppendRequest,
    CreateKeyRequest,
    CreateMemoryRequest,
    CreateSessionRequest,
    CustomTopic,
    DirectFact,
    EventRange,
    Extractor,
    GenerateRequest,
    GenerationConfig,
    InlineEvent,
    JobStatus,
    Permission,
    RestoreRequest,
    Role,
    Scope,
    SearchFilter,
    SearchRequest,
    SourceType,
    StatePatch,
    Timestamp,
    Topic,
    UpdateMemoryRequest,
)
from ._version import __version__

__all__ = [
    "__version__",
    # Clients
    "ContextIQ",
    "AsyncContextIQ",
    "Sessions",
    "Memories",
    "Jobs",
    "Keys",
    "AsyncSessions",
    "AsyncMemories",
    "AsyncJobs",
    "AsyncKeys",
    "NOT_GIVEN",
    "NotGiven",
    "OPERATIONS",
    "HELPERS",
    # Errors
    "ContextIQError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "ValidationError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    # Responses
    "Session",
    "SessionList",
    "Event",
    "EventList",
    "EventBatch",
    "WriteReceipt",
    "Memory",
    "MemoryList",
    "Revision",
    "RevisionList",
    "SearchResult",
    "SearchResponse",
    "Job",
    "JobCounts",
    "Key",
    "CreatedKey",
    "KeyList",
    "Health",
    # Requests
    "Scope",
    "Role",
    "Permission",
    "SourceType",
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
]
