"""An OpenAI Agents SDK session backed by a ContextIQ server.

`ContextIQSession` implements the Agents SDK's `Session` protocol (`agents.memory.Session`:
`session_id`, `session_settings`, `get_items`, `add_items`, `pop_item`, `clear_session`) on a
ContextIQ session, through the `contextiq` SDK's `AsyncContextIQ` client:

    from agents import Agent, Runner
    from contextiq_openai_agents import ContextIQSession

    session = ContextIQSession("conversation-123", user_id="u1", base_url="http://127.0.0.1:8000")
    result = await Runner.run(agent, "Hello", session=session)

How it maps onto ContextIQ (the package README says the same for users):

- One ContextIQ session per (engine, `user_id`, `agent_id`, agents `session_id`). ContextIQ
  gives sessions UUIDs of its own, so the agents id is kept in the session's metadata,
  `{"openai_agents": {"session_id": ...}}`, and found again by listing the user's sessions.
- One event per item, in order: `content` is the item's JSON, `role` and `author` come from the
  item (user / assistant / tool / system), `metadata` is `{"openai_agents": {"op": "item", ...}}`.
- Events are append-only, so `pop_item` and `clear_session` append a marker event
  (`{"op": "pop_item"}`, `{"op": "clear_session"}`); the history is the event log replayed
  through its markers, in the server's total order of events.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar, Union, cast

from agents.items import TResponseInputItem
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
from contextiq import AppendEvent, AsyncContextIQ, ContextIQError, Event, GenerationConfig, InlineEvent, Job, Role
from contextiq import Session as ContextIQSessionRecord

__all__ = [
    "ContextIQSession",
    "ContextIQSessionError",
    "SessionNotFoundError",
    "SessionAccessError",
    "METADATA_KEY",
    "MARKER_AUTHOR",
]

__version__ = "0.1.0"

#: The key of this adapter in a ContextIQ session's metadata and state, and in its events' metadata.
METADATA_KEY = "openai_agents"
#: The author of the marker events that `pop_item` and `clear_session` append.
MARKER_AUTHOR = "openai-agents"

# The server's largest page of events: one request reads most conversations whole.
_EVENTS_PAGE = 1000
# Events per append: the server's default MAX_EVENTS_PER_REQUEST (halved when a server refuses).
_APPEND_BATCH = 100
# A generation job's limits on inline events (the server's MAX_INLINE_EVENTS and
# MAX_INLINE_EVENT_CHARS).
_INLINE_EVENTS = 1000
_INLINE_CHARS = 32 * 1024
# Sessions per listing request when looking a session up: the server's largest page.
_SESSIONS_PAGE = 100
# The server's rule for ids and names (an author): at most 256 characters, no control characters.
_MAX_AUTHOR_CHARS = 256

_T = TypeVar("_T")


class ContextIQSessionError(Exception):
    """A ContextIQ server refused an operation of a `ContextIQSession`.

    Attributes:
        status: the HTTP status of the server's answer (None when there was none).
        code: the server's stable problem code (`session_not_found`, `forbidden`, ...), or None.
        detail: the server's explanation, or None.

    The `contextiq.ContextIQError` the SDK raised is the exception's `__cause__`.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None,
                 detail: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


class SessionNotFoundError(ContextIQSessionError, LookupError):
    """The ContextIQ session does not exist (or expired), or the credential cannot reach it."""


class SessionAccessError(ContextIQSessionError):
    """The credential may not do this: missing or invalid (401), or without the permission or
    the scope the operation needs (403), e.g. a key limited to another user."""


@dataclass
class _Entry:
    """An item of the live history and the event that holds it."""

    seq: int
    event_id: str
    role: str
    author: str
    item: Dict[str, Any]


class ContextIQSession:
    """An Agents SDK session (conversation history) stored in a ContextIQ session.

    Args:
        session_id: the Agents SDK's id of the conversation (any string).
        user_id: the end user the ContextIQ session belongs to (its scope defaults to
            `{"user_id": user_id}`, where `remember()` puts the memories).
        client: an `AsyncContextIQ` client to use (not closed by `aclose()`). Without it the
            session makes its own from `base_url` (default env `CONTEXTIQ_BASE_URL`, else
            `http://127.0.0.1:8000`) and `api_key` (default env `CONTEXTIQ_API_KEY`).
        engine: the reasoning engine (a partition of the org; default: the client's, else the
            default engine). With `client`, the session uses `client.with_engine(engine)`.
        agent_id: the ContextIQ session's `agent_id`; part of the mapping (the same agents
            `session_id` under two agent ids is two sessions).
        scope: the ContextIQ session's scope when this creates it (default `{"user_id": user_id}`).
        create: create the ContextIQ session on first use when none holds `session_id`
            (default). With False, every operation raises `SessionNotFoundError` until one exists.
        contextiq_session_id: the UUID of an existing ContextIQ session to use, which skips the
            lookup (it must belong to `user_id`); see `contextiq_session_id` after first use.
        ttl_seconds: the TTL of a session this creates (default: none).
        session_settings: the Agents SDK's `SessionSettings` (or a dict of them): `limit` is the
            default of `get_items(limit=None)`.
    """

    session_settings: Optional[SessionSettings] = None

    def __init__(
        self,
        session_id: str,
        *,
        user_id: str,
        client: Optional[AsyncContextIQ] = None,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        engine: Optional[str] = None,
        agent_id: Optional[str] = None,
        scope: Optional[Dict[str, str]] = None,
        create: bool = True,
        contextiq_session_id: Optional[str] = None,
        ttl_seconds: Optional[int] = None,
        session_settings: Union[SessionSettings, Dict[str, Any], None] = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if client is not None and (base_url is not None or api_key is not None):
            raise ValueError("give a client or base_url/api_key, not both")
        self._client_args: Dict[str, Any] = {"base_url": base_url, "api_key": api_key, "engine": engine}
        if client is None:
            client = AsyncContextIQ(**self._client_args)
            owns_client = True
        else:
            if engine is not None and engine != client.engine:
                # Shares the caller's connections; closing the caller's client closes these too.
                client = client.with_engine(engine)
            owns_client = False
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._client = client
        self._owns_client = owns_client
        self._closed = False
        self._user_id = user_id
        self._agent_id = agent_id
        self._scope = dict(scope) if scope is not None else None
        self._create = create
        self._ttl_seconds = ttl_seconds
        # A session given by UUID is used as is: never looked up, never replaced by a new one.
        self._bound = contextiq_session_id is not None
        self._verified = False
        self._id: Optional[str] = contextiq_session_id
        # One operation at a time per instance: they share the replay cache below, and a
        # pop must replay the log up to its own marker without another sync interleaving.
        self._lock = asyncio.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._reset_cache()

    # Identity

    @property
    def client(self) -> AsyncContextIQ:
        """The `AsyncContextIQ` client of this session (for memories, search, jobs...)."""
        return self._client

    @property
    def user_id(self) -> str:
        return self._user_id

    @property
    def agent_id(self) -> Optional[str]:
        return self._agent_id

    @property
    def engine(self) -> Optional[str]:
        """The reasoning engine (None: the default engine)."""
        return self._client.engine

    @property
    def contextiq_session_id(self) -> Optional[str]:
        """The UUID of the ContextIQ session, once an operation has found or created it."""
        return self._id

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(session_id={self.session_id!r}, user_id={self._user_id!r}, "
                f"agent_id={self._agent_id!r}, engine={self.engine!r}, contextiq_session_id={self._id!r})")

    # The Session protocol

    async def get_items(self, limit: Optional[int] = None) -> List[TResponseInputItem]:
        """The history, oldest first; with `limit` (default: `session_settings.limit`), the
        latest `limit` items, still oldest first (none for a limit of 0 or less)."""
        self._enter()
        session_limit = resolve_session_limit(limit, self.session_settings)
        async with self._lock:
            await self._run(self._sync)
            if session_limit is None:
                entries = list(self._live)
            elif session_limit > 0:
                entries = self._live[-session_limit:]
            else:
                entries = []
            # Copies: the caller may change what it gets; the cache must not change with it.
            return [cast(TResponseInputItem, copy.deepcopy(entry.item)) for entry in entries]

    async def add_items(self, items: List[TResponseInputItem]) -> None:
        """Appends the items, in order, one event each (atomically per batch of 100 events)."""
        self._enter()
        if not items:
            return
        # Every item is checked before anything is sent, so a bad one stores none of them.
        prepared = [_json_item(item) for item in items]
        async with self._lock:
            await self._run(lambda sid: self._append_items(sid, prepared))

    async def pop_item(self) -> Optional[TResponseInputItem]:
        """Removes the latest item from the history and returns it (None when it is empty)."""
        self._enter()
        async with self._lock:
            entry = await self._run(self._pop)
            return cast(TResponseInputItem, copy.deepcopy(entry.item)) if entry is not None else None

    async def clear_session(self) -> None:
        """Empties the history (a marker event; the ContextIQ session and its events stay)."""
        self._enter()
        async with self._lock:
            await self._run(self._clear)

    # Beyond the protocol

    async def remember(
        self,
        *,
        config: Optional[GenerationConfig] = None,
        wait: bool = False,
        timeout: Optional[float] = 60.0,
    ) -> Optional[Job]:
        """Queues a ContextIQ memory generation job for the items added since the last call.

        The job reads the text of the live history's messages (popped and cleared items are
        left out) appended since the previous `remember()` of this ContextIQ session, with
        their event ids as provenance, and writes memories into the session's scope. Returns
        the job (`client.jobs.wait(job.id)` for its outcome, or `wait=True` to wait here up to
        `timeout` seconds), or None when there is nothing new. More than 1,000 new messages go
        as several jobs, queued in order; the last is returned (and with `wait`, all are waited for).
        """
        self._enter()
        async with self._lock:
            jobs = await self._run(lambda sid: self._queue_generation(sid, config))
        if not jobs:
            return None
        if not wait:
            return jobs[-1]
        try:
            done = [await self._client.jobs.wait(job.id, timeout=timeout) for job in jobs]
        except ContextIQError as error:
            raise self._translate(error) from error
        return done[-1]

    async def delete(self) -> bool:
        """Deletes the ContextIQ session and its events for good (memories made from it stay).

        Returns whether there was one. The next operation starts a new session (with
        `create=True`; a session given by `contextiq_session_id` is gone for good).
        """
        self._enter()
        async with self._lock:
            try:
                ids = [self._id] if self._id is not None else [s.id for s in await self._find()]
                deleted = False
                for session_id in ids:
                    try:
                        await self._client.sessions.delete(session_id)
                        deleted = True
                    except ContextIQError as error:
                        if not _session_gone(error):
                            raise
            except ContextIQError as error:
                raise self._translate(error) from error
            if not self._bound:
                self._id = None
            self._reset_cache()
            return deleted

    async def aclose(self) -> None:
        """Closes the client this session made (a client passed in is the caller's to close).

        A session that closed its own client is terminal: later operations raise `RuntimeError`.
        """
        if self._owns_client and not self._closed:
            self._closed = True
            if self._loop is None or asyncio.get_running_loop() is self._loop:
                await self._client.aclose()
            # else: its connections belong to another loop, which alone could close them.

    async def __aenter__(self) -> "ContextIQSession":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    # Resolution of the ContextIQ session

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ContextIQSession is closed")

    def _enter(self) -> None:
        """Checks the session is open and follows the running event loop.

        httpx connections and asyncio locks belong to the loop that made them; a sync program
        may run each turn in a loop of its own (`asyncio.run` per call). A client this session
        made is made again for a new loop; a client passed in is the caller's to manage.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None:
            self._lock = asyncio.Lock()
            if self._owns_client:
                # The old client's connections live in the old loop: left to the collector.
                self._client = AsyncContextIQ(**self._client_args)
        self._loop = loop

    def _reset_cache(self) -> None:
        # The replayed log: the live items, the last seq applied, and the cursor of the page
        # that holds it (re-read from there next time: events are only ever appended).
        self._live: List[_Entry] = []
        self._seen = 0
        self._cursor: Optional[str] = None
        self._awaited_pop: Optional[int] = None
        self._popped: Dict[int, Optional[_Entry]] = {}

    async def _run(self, operation: Callable[[str], Awaitable[_T]]) -> _T:
        """Runs `operation` on the ContextIQ session's id, translating the server's errors.

        A mapped session that vanished (deleted, expired) is looked up or created once more and
        the operation repeated there, as a missing session would have been on first use.
        """
        try:
            for attempt in range(2):
                session_id = await self._resolve()
                try:
                    return await operation(session_id)
                except ContextIQError as error:
                    if attempt == 0 and not self._bound and _session_gone(error):
                        self._id = None
                        self._reset_cache()
                        continue
                    raise
            raise AssertionError("unreachable")
        except ContextIQError as error:
            raise self._translate(error) from error

    async def _resolve(self) -> str:
        if self._id is not None:
            if self._bound and not self._verified:
                record = await self._client.sessions.get(self._id, include_events=False)
                if record.user_id != self._user_id:
                    raise SessionAccessError(
                        f"ContextIQ session {self._id} belongs to user {record.user_id!r}, not {self._user_id!r}")
                self._verified = True
            return self._id
        matches = await self._find()
        if not matches:
            if not self._create:
                raise SessionNotFoundError(
                    f"no ContextIQ session holds agents session {self.session_id!r} of user "
                    f"{self._user_id!r} (agent_id {self._agent_id!r}, engine {self.engine or 'default'!r}) and "
                    "create=False; note that a key limited to another user's scope sees none of this user's "
                    "sessions", status=404, code="session_not_found")
            created = await self._client.sessions.create(
                self._user_id, agent_id=self._agent_id, scope=self._scope,
                metadata={METADATA_KEY: {"session_id": self.session_id}}, ttl_seconds=self._ttl_seconds)
            # The server cannot make (user, agent, session_id) unique: two first uses at once
            # may both create. All converge on the oldest, and a later creator withdraws its own.
            matches = await self._find()
            winner = matches[0] if matches else created
            if winner.id != created.id:
                try:
                    await self._client.sessions.delete(created.id)
                except ContextIQError:
                    pass  # the duplicate is empty and ignored by every lookup; best effort
            self._id = winner.id
        else:
            self._id = matches[0].id
        return self._id

    async def _find(self) -> List[ContextIQSessionRecord]:
        """The ContextIQ sessions of this mapping, oldest first (one, but for a race)."""
        matches = []
        async for record in self._client.sessions.iter(user_id=self._user_id, agent_id=self._agent_id,
                                                       page_size=_SESSIONS_PAGE):
            mapping = record.metadata.get(METADATA_KEY)
            if (isinstance(mapping, dict) and mapping.get("session_id") == self.session_id
                    and record.agent_id == self._agent_id):
                matches.append(record)
        matches.sort(key=lambda record: (record.created_at, record.id))
        return matches

    def _translate(self, error: ContextIQError) -> ContextIQSessionError:
        where = (f"agents session {self.session_id!r} of user {self._user_id!r} "
                 f"(engine {self.engine or 'default'!r}, ContextIQ session {self._id or 'not resolved'})")
        kwargs: Dict[str, Any] = {"status": error.status, "code": error.code, "detail": error.detail}
        if error.status == 404 and error.code == "session_not_found":
            return SessionNotFoundError(
                f"{where}: the ContextIQ session does not exist, expired, or this API key cannot reach it "
                f"({error})", **kwargs)
        if error.status in (401, 403):
            return SessionAccessError(
                f"{where}: ContextIQ refused the credential ({error}); check the API key, its permissions "
                "and its scope (a key limited to one user reaches only that user's sessions)", **kwargs)
        return ContextIQSessionError(f"{where}: {error}", **kwargs)

    # The event log

    async def _sync(self, session_id: str) -> None:
        """Replays the events appended since the last sync into the live history."""
        while True:
            page = await self._client.sessions.events(session_id, limit=_EVENTS_PAGE, cursor=self._cursor)
            for event in page.events:
                if event.seq > self._seen:
                    self._apply(event)
                    self._seen = event.seq
            if not page.next_cursor or page.next_cursor == self._cursor:
                return
            self._cursor = page.next_cursor

    def _apply(self, event: Event) -> None:
        mark = event.metadata.get(METADATA_KEY)
        op = mark.get("op") if isinstance(mark, dict) else None
        if op == "pop_item":
            removed = self._live.pop() if self._live else None
            if event.seq == self._awaited_pop:
                self._popped[event.seq] = removed
        elif op == "clear_session":
            self._live.clear()
        elif op == "item":
            if isinstance(event.content, dict):
                self._live.append(_Entry(event.seq, event.id, event.role, event.author, event.content))
        elif op is None and isinstance(event.content, str) and event.content.strip() \
                and event.role in ("user", "assistant", "system"):
            # A text event another client appended (the native API, a tool): the history
            # shows it as the message it is.
            item = {"role": event.role, "content": event.content}
            self._live.append(_Entry(event.seq, event.id, event.role, event.author, item))
        # Anything else (another client's structured events) is no item of this history.

    async def _append_items(self, session_id: str, items: Sequence[Dict[str, Any]]) -> None:
        # Tool outputs carry only a call id: name them after their call, in this batch or earlier.
        tool_names = {entry.item.get("call_id"): entry.item.get("name") for entry in self._live
                      if entry.item.get("name")}
        tool_names.update({item.get("call_id"): item.get("name") for item in items if item.get("name")})
        events = [_item_event(item, tool_names) for item in items]
        batch = _APPEND_BATCH
        start = 0
        while start < len(events):
            chunk = events[start:start + batch]
            try:
                await self._client.sessions.append_many(session_id, chunk)
            except ContextIQError as error:
                # A server configured for fewer events or smaller bodies: a refused append
                # stored nothing, so the same events go again in smaller batches.
                if len(chunk) > 1 and _too_large(error):
                    batch = max(1, len(chunk) // 2)
                    continue
                raise
            start += len(chunk)

    async def _pop(self, session_id: str) -> Optional[_Entry]:
        await self._sync(session_id)
        if not self._live:
            return None  # empty as of this read: no marker needed
        marker = await self._client.sessions.append(
            session_id, author=MARKER_AUTHOR, role="system", content={"op": "pop_item"},
            metadata={METADATA_KEY: {"op": "pop_item"}})
        # The marker removes whatever was latest at its place in the log, which a concurrent
        # writer may have changed: replaying up to it says which item this pop removed.
        self._awaited_pop = marker.seq
        try:
            await self._sync(session_id)
        finally:
            self._awaited_pop = None
        return self._popped.pop(marker.seq, None)

    async def _clear(self, session_id: str) -> None:
        await self._sync(session_id)
        if not self._live:
            return
        await self._client.sessions.append(
            session_id, author=MARKER_AUTHOR, role="system", content={"op": "clear_session"},
            metadata={METADATA_KEY: {"op": "clear_session"}})

    async def _queue_generation(self, session_id: str, config: Optional[GenerationConfig]) -> List[Job]:
        await self._sync(session_id)
        record = await self._client.sessions.get(session_id, include_events=False)
        state = record.state.get(METADATA_KEY)
        remembered = state.get("remembered_seq") if isinstance(state, dict) else None
        watermark = remembered if isinstance(remembered, int) else 0
        turns: List[InlineEvent] = []
        for entry in self._live:
            text = _item_text(entry.item) if entry.seq > watermark else None
            if text is not None:
                turns.append({"id": entry.event_id, "role": entry.role, "author": entry.author,
                              "content": text[:_INLINE_CHARS]})
        jobs = []
        for start in range(0, len(turns), _INLINE_EVENTS):
            jobs.append(await self._client.memories.generate(
                source_type="events", scope=record.scope, events=turns[start:start + _INLINE_EVENTS],
                config=config))
        if self._seen > watermark:
            # In the session's state, so every instance and process shares the watermark.
            await self._client.sessions.patch_state(session_id, {METADATA_KEY: {"remembered_seq": self._seen}})
        return jobs


# Items and events


def _json_item(item: Any) -> Dict[str, Any]:
    """The item as plain JSON (a copy), or TypeError / ValueError when it is not JSON."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a session item is a dict (a Responses API input item), not {type(item).__name__}")
    return cast(Dict[str, Any], json.loads(json.dumps(item, allow_nan=False)))


def _item_role(item: Mapping[str, Any]) -> Role:
    """The ContextIQ role of an item: who produced it."""
    role = item.get("role")
    if isinstance(role, str):
        if role in ("user", "assistant", "system"):
            return cast(Role, role)
        if role == "developer":
            return "system"
        return "assistant"
    kind = str(item.get("type") or "")
    if kind.endswith("_output") or kind == "mcp_list_tools":
        return "tool"
    if kind == "mcp_approval_response":
        return "user"
    # Tool calls, reasoning, compaction, references: the model's.
    return "assistant"


def _item_author(item: Mapping[str, Any], tool_names: Mapping[Any, Any]) -> str:
    role = item.get("role")
    kind = str(item.get("type") or "")
    if isinstance(role, str):
        candidate: Any = role
    elif kind.endswith("_output"):
        candidate = tool_names.get(item.get("call_id")) or "tool"
    elif kind.endswith("_call") and item.get("name"):
        candidate = item.get("name")
    else:
        candidate = kind or "assistant"
    return _author(candidate, fallback="tool" if kind.endswith("_output") else "assistant")


def _author(value: Any, *, fallback: str) -> str:
    """A valid event author (the server refuses blank ones, control characters, over 256)."""
    if isinstance(value, str):
        text = "".join(ch for ch in value if ch.isprintable()).strip()[:_MAX_AUTHOR_CHARS].strip()
        if text:
            return text
    return fallback


def _item_event(item: Dict[str, Any], tool_names: Mapping[Any, Any]) -> AppendEvent:
    mark: Dict[str, Any] = {"op": "item"}
    if isinstance(item.get("type"), str):
        mark["type"] = item["type"]
    return {
        "author": _item_author(item, tool_names),
        "role": _item_role(item),
        "content": item,
        "metadata": {METADATA_KEY: mark},
    }


def _item_text(item: Mapping[str, Any]) -> Optional[str]:
    """The text of a message item, as the server reads an event's content: `text`, or
    `content` as a string or as parts with `text`; None for items without text."""
    value = item.get("text")
    if value is None:
        value = item.get("content")
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        text = "\n".join(parts)
    else:
        return None
    return text if text.strip() else None


def _session_gone(error: ContextIQError) -> bool:
    return error.status == 404 and error.code == "session_not_found"


def _too_large(error: ContextIQError) -> bool:
    return error.status == 413 or (error.status == 422 and error.code == "limit_exceeded" and error.field == "events")
