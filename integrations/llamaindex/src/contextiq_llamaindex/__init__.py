"""LlamaIndex long-term memory backed by a ContextIQ server.

`ContextIQMemoryBlock` is a `BaseMemoryBlock` of `llama_index.core.memory.Memory`:

- `_aput(messages)`: the messages `Memory` flushes out of its short-term queue become events of a
  ContextIQ session of the block's scope (one session per LlamaIndex `session_id`), and a
  generation job (`source_type="session"`) turns them into memories on the server;
- `_aget(messages)`: the scope's memories most relevant to the latest user message (ContextIQ's
  hybrid search), as `<fact>...</fact>` lines for the memory section of the system prompt.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, cast

from contextiq import AppendEvent, AsyncContextIQ, ContextIQError, GenerationConfig, Job, Role, SearchResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.memory.memory import BaseMemoryBlock
from llama_index.core.utils import get_tokenizer

__all__ = ["ContextIQMemoryBlock", "ContextIQGenerationError", "SESSION_METADATA_KEY", "__version__"]

__version__ = "0.1.0"

# The key under which BaseMemoryBlock.aput stamps the LlamaIndex session id on each message.
_SESSION_KWARG = "session_id"
# Written to the metadata of the ContextIQ sessions this block creates, so the native API (and a
# human reading it) can tell which LlamaIndex conversation a session holds.
SESSION_METADATA_KEY = "llamaindex_session_id"

# ContextIQ knows four roles; LlamaIndex has eight (provider spellings of the same four).
_ROLES: Dict[MessageRole, Role] = {
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
}


class ContextIQGenerationError(RuntimeError):
    """A generation job the block waited for ended `failed` (the server retried it already)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"ContextIQ memory generation job {job.id} failed: {job.error or 'no reason given'}")
        self.job = job


def _text(message: ChatMessage) -> str:
    # `content` joins the text blocks; images, audio and tool calls carry nothing the server's
    # extractors read, so a message without text is not recorded.
    return (message.content or "").strip()


class ContextIQMemoryBlock(BaseMemoryBlock[str]):
    """Long-term memory of one ContextIQ scope (`user_id`, optionally `agent_id`).

    Writes go to the server as session events plus a memory generation job; reads are a hybrid
    search of the scope's memories with the latest user message as the query. Every call opens
    its own HTTP client unless `client` is given: LlamaIndex's sync wrappers (`memory.get()`,
    `chat_engine.chat()`) run each call on a fresh event loop, which a pooled async client would
    not survive.
    """

    name: str = Field(default="ContextIQMemories", description="The name of the memory block.")
    description: Optional[str] = Field(
        default="What ContextIQ remembers of the user (facts from earlier conversations) that is "
        "relevant to the latest message.",
        description="A description of the memory block.",
    )
    user_id: str = Field(min_length=1, description="The end user whose memories these are.")
    agent_id: Optional[str] = Field(
        default=None,
        description="Narrows the scope to {user_id, agent_id}: memories of this agent with this user only.",
    )
    base_url: Optional[str] = Field(
        default=None, description="The ContextIQ server (default: env CONTEXTIQ_BASE_URL, else http://127.0.0.1:8000)."
    )
    # Kept out of repr and serialization: a logged or saved Memory must not leak the key.
    api_key: Optional[str] = Field(
        default=None, exclude=True, repr=False, description="An API key (default: env CONTEXTIQ_API_KEY)."
    )
    engine: Optional[str] = Field(default=None, description="The reasoning engine (X-Engine-Id); None: the default.")
    timeout: Optional[float] = Field(default=30.0, description="Seconds for each HTTP request.")
    client: Optional[AsyncContextIQ] = Field(
        default=None,
        exclude=True,
        repr=False,
        description="A client to use instead of one per call (then base_url, api_key, engine and timeout "
        "are ignored); the caller closes it, and it must live on the event loop that calls the block.",
    )
    top_k: int = Field(default=5, ge=1, le=100, description="How many memories to retrieve.")
    wait_for_generation: bool = Field(
        default=False,
        description="Wait in aput until the generation job is done, so the next turn can recall its facts.",
    )
    generation_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for a generation job.")
    generation_config: Optional[Dict[str, Any]] = Field(
        default=None, description="The `config` of each generation job (extractor, topics, TTLs...)."
    )
    session_ttl_seconds: Optional[int] = Field(
        default=None, ge=1, description="TTL of the ContextIQ sessions this block creates (None: the server's default)."
    )
    max_events_per_append: int = Field(
        default=100, ge=1, le=1000, description="Events per append request (the server's MAX_EVENTS_PER_REQUEST)."
    )

    # LlamaIndex session id (None for puts that carry none) -> ContextIQ session id.
    _sessions: Dict[Optional[str], str] = PrivateAttr(default_factory=dict)
    _last_job_id: Optional[str] = PrivateAttr(default=None)

    @property
    def scope(self) -> Dict[str, str]:
        """The ContextIQ scope of this block's sessions and memories."""
        scope = {"user_id": self.user_id}
        if self.agent_id is not None:
            scope["agent_id"] = self.agent_id
        return scope

    @property
    def session_ids(self) -> Dict[Optional[str], str]:
        """The ContextIQ session of each LlamaIndex session this block recorded, so far."""
        return dict(self._sessions)

    @property
    def last_job_id(self) -> Optional[str]:
        """The id of the last generation job this block queued (for `client.jobs.wait`)."""
        return self._last_job_id

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncContextIQ]:
        if self.client is not None:
            yield self.client
            return
        async with AsyncContextIQ(base_url=self.base_url, api_key=self.api_key, engine=self.engine,
                                  timeout=self.timeout) as client:
            yield client

    async def _aget(self, messages: Optional[List[ChatMessage]] = None, **block_kwargs: Any) -> str:
        """The memories relevant to the latest user message, one `<fact>` line each, best first."""
        query = next((_text(m) for m in reversed(messages or []) if m.role == MessageRole.USER and _text(m)), "")
        if not query:
            # Nothing to search for (no user message yet): an empty block is left out of the prompt.
            return ""
        async with self._connect() as client:
            response = await client.memories.search(self.scope, query, top_k=self.top_k)
        return self.format_memories(response.results)

    def format_memories(self, results: Sequence[SearchResult]) -> str:
        """The block's text: `<fact>` lines as FactExtractionMemoryBlock writes them (override to change)."""
        return "\n".join(f"<fact>{result.memory.fact}</fact>" for result in results)

    async def _aput(self, messages: List[ChatMessage]) -> None:
        """Records the messages as session events and queues memory generation from them."""
        by_session: Dict[Optional[str], List[AppendEvent]] = {}
        for message in messages:
            text = _text(message)
            if not text:
                continue
            key = message.additional_kwargs.get(_SESSION_KWARG)
            event: AppendEvent = {"author": message.role.value, "role": _ROLES.get(message.role, "user"),
                                  "content": text}
            by_session.setdefault(key if isinstance(key, str) else None, []).append(event)
        if not by_session:
            return
        async with self._connect() as client:
            try:
                for key, events in by_session.items():
                    await self._record(client, key, events)
            except ContextIQError as error:
                # The SDK's error says what the server refused; the note, which scope it was for
                # (add_note: Python 3.11+).
                if hasattr(error, "add_note"):
                    error.add_note(f"while recording LlamaIndex messages in ContextIQ for scope {self.scope}")
                raise

    async def _record(self, client: AsyncContextIQ, key: Optional[str], events: List[AppendEvent]) -> None:
        session_id = self._sessions.get(key) or await self._create_session(client, key)
        try:
            await self._append(client, session_id, events)
        except ContextIQError as error:
            if error.code != "session_not_found":
                raise
            # The session expired (a TTL) or was deleted through the API: continue in a new one;
            # the memories made from the old one stay in the scope.
            session_id = await self._create_session(client, key)
            await self._append(client, session_id, events)
        job = await client.memories.generate(source_type="session", source_reference=session_id,
                                             config=cast(Optional[GenerationConfig], self.generation_config))
        self._last_job_id = job.id
        if self.wait_for_generation:
            done = await client.jobs.wait(job.id, timeout=self.generation_timeout)
            if done.status == "failed":
                raise ContextIQGenerationError(done)

    async def _create_session(self, client: AsyncContextIQ, key: Optional[str]) -> str:
        session = await client.sessions.create(
            self.user_id, agent_id=self.agent_id, scope=self.scope,
            metadata={SESSION_METADATA_KEY: key} if key is not None else None,
            ttl_seconds=self.session_ttl_seconds)
        self._sessions[key] = session.id
        return session.id

    async def _append(self, client: AsyncContextIQ, session_id: str, events: List[AppendEvent]) -> None:
        for start in range(0, len(events), self.max_events_per_append):
            await client.sessions.append_many(session_id, events[start:start + self.max_events_per_append])

    async def atruncate(self, content: str, tokens_to_truncate: int) -> Optional[str]:
        """Drops the least relevant facts first (asked only of blocks with a priority above 0)."""
        # Measured on the whole text, as Memory measures the block: counting line by line would
        # miss the newlines, and Memory drops the whole block when a truncation falls short.
        if tokens_to_truncate <= 0:
            return content
        tokenizer = get_tokenizer()
        total = len(tokenizer(content))
        lines = content.splitlines()
        while lines:
            lines.pop()
            if total - len(tokenizer("\n".join(lines))) >= tokens_to_truncate:
                break
        return "\n".join(lines) or None
