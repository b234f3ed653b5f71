"""The asynchronous client, `AsyncContextIQ`.

This file is the source of both clients: `tools/unasync.py` writes `_sync_client.py` from it
(`async def` to `def`, `AsyncContextIQ` to `ContextIQ`, ...), and a test checks that the two
agree. Edit this one, then run `python tools/unasync.py`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Dict, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

import httpx

from . import _base
from ._base import NOT_GIVEN, ClientConfig, NotGiven, body, patch_body, query
from ._errors import ContextIQError
from ._models import (
    Context,
    CreatedKey,
    Event,
    EventBatch,
    EventList,
    Health,
    Job,
    Key,
    KeyList,
    Memory,
    MemoryList,
    Profile,
    RevisionList,
    SearchResponse,
    Session,
    SessionList,
    StateAt,
    WriteReceipt,
    memory_or_job,
    memory_or_receipt,
    session_or_receipt,
)
from ._types import (
    AppendEvent,
    CompactionPolicy,
    DirectFact,
    EventRange,
    GenerateSourceType,
    GenerationConfig,
    InlineEvent,
    Permission,
    Role,
    Scope,
    SearchFilter,
    StatePatch,
    Timestamp,
)

__all__ = ["AsyncContextIQ"]

_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
_SSE = "text/event-stream"


class AsyncContextIQ:
    """A client of a ContextIQ server's native API (`/api/v1`) and service endpoints.

    Args:
        base_url: the server, e.g. `http://127.0.0.1:8000` (default: env `CONTEXTIQ_BASE_URL`,
            else `http://127.0.0.1:8000`).
        api_key: an API key, `ck_...`, sent as `X-API-Key` (default: env `CONTEXTIQ_API_KEY`).
        token: a JWT, sent as `Authorization: Bearer`; not with `api_key`.
        engine: the reasoning engine (a partition of the org, 1-63 of `[A-Za-z0-9_-]`), sent as
            `X-Engine-Id` on the sessions, memories and jobs routes; None is the default engine.
        timeout: seconds for each HTTP request (None: no limit).
        max_retries: how often a request is sent again after a 429 or 503 (or a connection
            failure, where that is safe); 0 disables retries.
        transport: an httpx transport (tests, proxies, `httpx.MockTransport`).
        default_headers: more headers for every request.

    Use it as a context manager, or call `aclose()`, to release its connections.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        token: Optional[str] = None,
        engine: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        max_retries: int = 3,
        transport: Optional[httpx.AsyncBaseTransport] = None,
        *,
        default_headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        config = ClientConfig.create(base_url, api_key, token, engine, timeout, max_retries, default_headers)
        http = httpx.AsyncClient(
            base_url=config.base_url,
            headers=config.client_headers(),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )
        self._setup(config, http, owns_http=True)

    def _setup(self, config: ClientConfig, http: httpx.AsyncClient, owns_http: bool) -> None:
        self._config = config
        self._http = http
        self._owns_http = owns_http
        self.sessions = AsyncSessions(self)
        self.memories = AsyncMemories(self)
        self.jobs = AsyncJobs(self)
        self.keys = AsyncKeys(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def engine(self) -> Optional[str]:
        """The reasoning engine of this client's requests (None: the default engine)."""
        return self._config.engine

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    def with_engine(self, engine: Optional[str]) -> "AsyncContextIQ":
        """A client of another engine that shares this one's connections (close this one only)."""
        other = object.__new__(type(self))
        other._setup(self._config.with_engine(engine), self._http, owns_http=False)
        return other

    async def aclose(self) -> None:
        """Closes the connections (of a client made by `with_engine`: nothing to do)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncContextIQ":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._config.base_url!r}, engine={self._config.engine!r})"

    # Service endpoints

    async def health(self) -> Health:
        """`GET /health`: the process is up."""
        return Health.from_json(await self._json("GET", "/health"))

    async def ready(self) -> Health:
        """`GET /health/ready`: the store answers (a 503 raises `ContextIQError` once retries are spent)."""
        return Health.from_json(await self._json("GET", "/health/ready"))

    async def metrics(self) -> str:
        """`GET /metrics`: the Prometheus text exposition of the server's metrics."""
        response = await self._send("GET", "/metrics", accept="text/plain")
        return response.text

    # The transport

    async def _json(
        self,
        method: str,
        template: str,
        *,
        ids: Optional[Dict[str, str]] = None,
        params: Optional[Dict[str, str]] = None,
        json: Any = None,
        content_type: Optional[str] = None,
    ) -> Any:
        response = await self._send(method, template, ids=ids, params=params, json=json, content_type=content_type)
        return _base.decode_json(response)

    async def _events(
        self,
        template: str,
        *,
        ids: Optional[Dict[str, str]] = None,
        params: Optional[Dict[str, str]] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> AsyncIterator[Tuple[str, Any]]:
        """The Server-Sent Events of a `GET` stream, as `(event, data)`, until the server ends it.

        Opening the stream is a request like any other (retried as the policy allows; an error
        answer raises). Once it streams no read timeout applies: a stream waits as long as
        nothing happens (the server sends a comment every 15 s). The response is closed when the
        stream ends, fails, or the caller stops iterating and closes the iterator.
        """
        response = await self._send("GET", template, ids=ids, params=params, headers=headers, accept=_SSE, stream=True)
        try:
            parser = _base.ServerSentEvents()
            async for line in response.aiter_lines():
                sent = parser.feed(line)
                if sent is not None:
                    yield sent
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        template: str,
        *,
        ids: Optional[Dict[str, str]] = None,
        params: Optional[Dict[str, str]] = None,
        json: Any = None,
        content_type: Optional[str] = None,
        accept: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Sends one operation (`template` is its OpenAPI path), retrying as the policy allows.

        With `stream=True` the body of a success is left unread, with no read timeout: the
        caller reads it and closes the response.
        """
        config = self._config
        if json is not None and content_type is None:
            content_type = _JSON
        request_headers = config.request_headers(template, content_type)
        if accept is not None:
            request_headers["Accept"] = accept
        request_headers.update(headers or {})
        request = self._http.build_request(
            method,
            _base.expand(template, ids or {}),
            params=params or None,
            content=_base.encode(json) if json is not None else None,
            headers=request_headers,
            timeout=httpx.Timeout(config.timeout, read=None) if stream else self._http.timeout,
        )
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                delay = _base.transport_retry_delay(error, method, template, attempt, config.max_retries)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if response.is_success:
                return response
            if stream:  # the problem document, read whole before it is raised or the request sent again
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            delay = _base.retry_delay(response, method, template, attempt, config.max_retries)
            if delay is None:
                raise ContextIQError.from_response(response)
            await asyncio.sleep(delay)
            attempt += 1


class _AsyncResource:
    def __init__(self, client: AsyncContextIQ) -> None:
        self._client = client


class AsyncSessions(_AsyncResource):
    """Sessions: the event log and state of each conversation (`/api/v1/sessions`)."""

    async def create(
        self,
        user_id: str,
        *,
        agent_id: Optional[str] = None,
        scope: Optional[Scope] = None,
        state: Optional[Dict[str, Any]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        ttl_seconds: Optional[int] = None,
        expires_at: Optional[Timestamp] = None,
        compaction_policy: Optional[CompactionPolicy] = None,
        parent_session_id: Optional[str] = None,
    ) -> Session:
        """Creates a session; its scope defaults to `{"user_id": user_id}`. `compaction_policy`
        (`every_events`, `token_threshold`, `keep_recent_events`) makes it compact itself.
        `parent_session_id` makes it a child of that session (a sub-agent's session under its
        coordinator's): the parent must be within reach and its scope within this one's, and
        deleting the parent deletes this session too."""
        payload = body(user_id=user_id, agent_id=agent_id, scope=scope, state=state, metadata=metadata,
                       ttl_seconds=ttl_seconds, expires_at=expires_at,
                       compaction_policy=dict(compaction_policy) if compaction_policy is not None else None,
                       parent_session_id=parent_session_id)
        return Session.from_json(await self._client._json("POST", "/api/v1/sessions", json=payload))

    async def get(self, session_id: str, *, include_events: bool = True) -> Session:
        """A session with its first events (up to 1,000; `include_events=False` to omit them)."""
        params = query(include_events=None if include_events else False)
        data = await self._client._json("GET", "/api/v1/sessions/{id}", ids={"id": session_id}, params=params)
        return Session.from_json(data)

    async def list(
        self,
        *,
        user_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        parent_session_id: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> SessionList:
        """One page of sessions, newest first (`limit` 1 to 100, default 20); with
        `parent_session_id`, only the children of that session."""
        params = query(user_id=user_id, agent_id=agent_id, parent_session_id=parent_session_id, limit=limit,
                       cursor=cursor)
        return SessionList.from_json(await self._client._json("GET", "/api/v1/sessions", params=params))

    async def iter(
        self,
        *,
        user_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        parent_session_id: Optional[str] = None,
        page_size: int = 100,
    ) -> AsyncIterator[Session]:
        """Every session (newest first), following `next_cursor` page after page."""
        cursor: Optional[str] = None
        while True:
            page = await self.list(user_id=user_id, agent_id=agent_id, parent_session_id=parent_session_id,
                                   limit=page_size, cursor=cursor)
            for session in page.sessions:
                yield session
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def delete(self, session_id: str) -> None:
        """Deletes a session and its events, and its descendants (children, their children,
        ...) with theirs; memories made from them stay."""
        await self._client._json("DELETE", "/api/v1/sessions/{id}", ids={"id": session_id})

    async def append(
        self,
        session_id: str,
        *,
        author: str,
        content: Any,
        role: Optional[Role] = None,
        metadata: Optional[Dict[str, Any]] = None,
        invocation_id: Optional[str] = None,
        timestamp: Optional[Timestamp] = None,
        state_delta: Optional[Dict[str, Any]] = None,
    ) -> Event:
        """Appends one event (`content`: text or any JSON value; `role` defaults to user);
        `state_delta` sets those keys in the session's state with it (ADK's `actions.state_delta`)."""
        actions = None if state_delta is None else {"state_delta": dict(state_delta)}
        payload = body(author=author, content=content, role=role, metadata=metadata, invocation_id=invocation_id,
                       timestamp=timestamp, actions=actions)
        data = await self._client._json("POST", "/api/v1/sessions/{id}/events", ids={"id": session_id}, json=payload)
        return Event.from_json(data)

    async def append_many(self, session_id: str, events: Sequence[AppendEvent]) -> EventBatch:
        """Appends several events atomically and in order (1 to `MAX_EVENTS_PER_REQUEST`)."""
        payload = {"events": [dict(event) for event in events]}
        data = await self._client._json("POST", "/api/v1/sessions/{id}/events", ids={"id": session_id}, json=payload)
        return EventBatch.from_json(data)

    async def events(self, session_id: str, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> EventList:
        """One page of a session's events in order (`limit` 1 to 1000, default 100)."""
        params = query(limit=limit, cursor=cursor)
        data = await self._client._json("GET", "/api/v1/sessions/{id}/events", ids={"id": session_id}, params=params)
        return EventList.from_json(data)

    async def iter_events(self, session_id: str, *, page_size: int = 100) -> AsyncIterator[Event]:
        """Every event of a session in order, following `next_cursor` page after page."""
        cursor: Optional[str] = None
        while True:
            page = await self.events(session_id, limit=page_size, cursor=cursor)
            for event in page.events:
                yield event
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def patch_state(self, session_id: str, patch: StatePatch) -> Union[Session, WriteReceipt]:
        """Applies a JSON Merge Patch (RFC 7396) to the state: `None` deletes a key, dicts merge.

        Returns the session, or a `WriteReceipt` to a credential that may write sessions but not
        read them.
        """
        data = await self._client._json("PATCH", "/api/v1/sessions/{id}/state", ids={"id": session_id},
                                        json=dict(patch), content_type=_MERGE_PATCH)
        return session_or_receipt(data)

    async def state(self, session_id: str, *, at_seq: Optional[int] = None) -> StateAt:
        """The session's state now, or as it was after event `at_seq` (and the state patches
        made before the next event; 0: as the session was created), rebuilt from the state each
        event set and each state patch."""
        data = await self._client._json("GET", "/api/v1/sessions/{id}/state", ids={"id": session_id},
                                        params=query(at_seq=at_seq))
        return StateAt.from_json(data)

    async def fork(
        self,
        session_id: str,
        *,
        at_seq: Optional[int] = None,
        invocation_id: Optional[str] = None,
        fork_id: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        ttl_seconds: Optional[int] = None,
        expires_at: Optional[Timestamp] = None,
    ) -> Union[Session, WriteReceipt]:
        """A new session with this one's history up to a point and the state as it was there.

        The fork branches off after event `at_seq` (0: before the first), or after the last
        event of `invocation_id` (not both); by default after the newest event. It gets copies
        of those events (with ids of their own), the same user, agent, scope, parent and
        compaction policy, and `forked_from` naming the source, which is left as it is.
        `fork_id` is the fork's id (the body's `session_id`; a taken one raises
        `ConflictError`, `session_exists`); `metadata` defaults to the source's.

        Returns the fork (without its events), or a `WriteReceipt` with its id to a credential
        that may write sessions but not read them.
        """
        payload = body(at_seq=at_seq, invocation_id=invocation_id, session_id=fork_id, metadata=metadata,
                       ttl_seconds=ttl_seconds, expires_at=expires_at)
        data = await self._client._json("POST", "/api/v1/sessions/{id}/fork", ids={"id": session_id}, json=payload)
        return session_or_receipt(data)

    async def rewind(
        self,
        session_id: str,
        *,
        to_seq: Optional[int] = None,
        before_invocation_id: Optional[str] = None,
    ) -> Union[Session, WriteReceipt]:
        """Takes the session back to how it was after event `to_seq` (0: as it was created), or
        to before the first event of `before_invocation_id` (ADK's rewind); give exactly one.

        Appends a `rewind` event that restores the state of that point; the events in between
        stay stored and listed but leave the conversation (context assembly and compaction skip
        them), and a later rewind can go back to any of them. Returns the session after the
        rewind (without its events), or a `WriteReceipt` to a credential that may write
        sessions but not read them.
        """
        payload = body(to_seq=to_seq, before_invocation_id=before_invocation_id)
        data = await self._client._json("POST", "/api/v1/sessions/{id}/rewind", ids={"id": session_id}, json=payload)
        return session_or_receipt(data)

    async def compact(self, session_id: str, *, keep_recent_events: Optional[int] = None) -> Job:
        """Queues a compaction: a job that summarises the events after the last compaction, all
        but the `keep_recent_events` newest, into one compaction event (nothing is deleted)."""
        payload = body(keep_recent_events=keep_recent_events)
        data = await self._client._json("POST", "/api/v1/sessions/{id}/compact", ids={"id": session_id}, json=payload)
        return Job.from_json(data)

    async def context(
        self,
        session_id: str,
        budget_tokens: int,
        *,
        query: Optional[str] = None,
        memory_top_k: Optional[int] = None,
        include_state: Optional[bool] = None,
    ) -> Context:
        """What to put in front of the model for the next turn, within `budget_tokens`: the newest
        event, the state, summaries, the memories most relevant to `query` (default: the newest
        user turn) and the recent events, with their token counts and as one `text`. Events
        a rewind took out of the conversation are left out."""
        payload = body(budget_tokens=budget_tokens, query=query, memory_top_k=memory_top_k,
                       include_state=include_state)
        data = await self._client._json("POST", "/api/v1/sessions/{id}/context", ids={"id": session_id}, json=payload)
        return Context.from_json(data)

    async def stream_events(
        self,
        session_id: str,
        *,
        after_seq: Optional[int] = None,
        last_event_id: Optional[int] = None,
    ) -> AsyncIterator[Event]:
        """The session's events as they are appended (Server-Sent Events), from any process.

        By default only new events; `after_seq` (0: from the first) or `last_event_id` (resume
        after that seq) send stored ones first. Ends when the session is deleted or expires, or
        the server stops (resume with `last_event_id`).
        """
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        stream = self._client._events("/api/v1/sessions/{id}/events/stream", ids={"id": session_id},
                                      params=query(after_seq=after_seq), headers=headers)
        try:
            async for name, data in stream:
                if name == "event":
                    yield Event.from_json(data)
        finally:  # at once, not when the stream is collected: its response holds a connection
            await stream.aclose()


class AsyncMemories(_AsyncResource):
    """Memories: durable facts about a scope, with revisions and search (`/api/v1/memories`)."""

    @overload
    async def create(
        self,
        scope: Scope,
        fact: str,
        *,
        topic: Optional[str] = None,
        confidence: Optional[float] = None,
        metadata: Optional[Dict[str, Any]] = None,
        ttl_seconds: Optional[int] = None,
        expires_at: Optional[Timestamp] = None,
        said_at: Optional[Timestamp] = None,
        source_session_id: Optional[str] = None,
        source_event_ids: Optional[Sequence[str]] = None,
        consolidate: Literal[False] = False,
    ) -> Memory: ...

    @overload
    async def create(
        self,
        scope: Scope,
        fact: str,
        *,
        topic: Optional[str] = None,
        confidence: Optional[float] = None,
        ttl_seconds: Optional[int] = None,
        consolidate: Literal[True],
    ) -> Job: ...

    async def create(
        self,
        scope: Scope,
        fact: str,
        *,
        topic: Optional[str] = None,
        confidence: Optional[float] = None,
        metadata: Optional[Dict[str, Any]] = None,
        ttl_seconds: Optional[int] = None,
        expires_at: Optional[Timestamp] = None,
        said_at: Optional[Timestamp] = None,
        source_session_id: Optional[str] = None,
        source_event_ids: Optional[Sequence[str]] = None,
        consolidate: bool = False,
    ) -> Union[Memory, Job]:
        """Remembers a fact about a scope, as is; with `consolidate=True` the fact goes through
        duplicate detection and updates as a job, and the answer is that `Job`."""
        payload = body(scope=scope, fact=fact, topic=topic, confidence=confidence, metadata=metadata,
                       ttl_seconds=ttl_seconds, expires_at=expires_at, said_at=said_at,
                       source_session_id=source_session_id,
                       source_event_ids=list(source_event_ids) if source_event_ids is not None else None,
                       consolidate=True if consolidate else None)
        return memory_or_job(await self._client._json("POST", "/api/v1/memories", json=payload))

    async def get(self, memory_id: str) -> Memory:
        """A memory."""
        return Memory.from_json(await self._client._json("GET", "/api/v1/memories/{id}", ids={"id": memory_id}))

    async def list(
        self,
        scope: Scope,
        *,
        topic: Optional[str] = None,
        created_after: Optional[Timestamp] = None,
        created_before: Optional[Timestamp] = None,
        updated_after: Optional[Timestamp] = None,
        updated_before: Optional[Timestamp] = None,
        said_after: Optional[Timestamp] = None,
        said_before: Optional[Timestamp] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> MemoryList:
        """One page of the memories of exactly this scope, newest first (`limit` 1 to 100, default 20)."""
        params = query(scope=scope, topic=topic, created_after=created_after, created_before=created_before,
                       updated_after=updated_after, updated_before=updated_before, said_after=said_after,
                       said_before=said_before, limit=limit, cursor=cursor)
        return MemoryList.from_json(await self._client._json("GET", "/api/v1/memories", params=params))

    async def iter(
        self,
        scope: Scope,
        *,
        topic: Optional[str] = None,
        created_after: Optional[Timestamp] = None,
        created_before: Optional[Timestamp] = None,
        updated_after: Optional[Timestamp] = None,
        updated_before: Optional[Timestamp] = None,
        said_after: Optional[Timestamp] = None,
        said_before: Optional[Timestamp] = None,
        page_size: int = 100,
    ) -> AsyncIterator[Memory]:
        """Every memory of the scope (newest first), following `next_cursor` page after page."""
        cursor: Optional[str] = None
        while True:
            page = await self.list(scope, topic=topic, created_after=created_after, created_before=created_before,
                                   updated_after=updated_after, updated_before=updated_before, said_after=said_after,
                                   said_before=said_before, limit=page_size,
                                   cursor=cursor)
            for memory in page.memories:
                yield memory
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def update(
        self,
        memory_id: str,
        *,
        fact: Union[str, NotGiven] = NOT_GIVEN,
        topic: Union[str, None, NotGiven] = NOT_GIVEN,
        confidence: Union[float, NotGiven] = NOT_GIVEN,
        metadata: Union[Dict[str, Any], NotGiven] = NOT_GIVEN,
        ttl_seconds: Union[int, NotGiven] = NOT_GIVEN,
        expires_at: Union[Timestamp, None, NotGiven] = NOT_GIVEN,
        said_at: Union[Timestamp, NotGiven] = NOT_GIVEN,
    ) -> Union[Memory, WriteReceipt]:
        """Changes the fields given (`topic=None` or `expires_at=None` clears them); a change
        that changes nothing writes no revision. Returns the memory, or a `WriteReceipt` to a
        credential that may write memories but not read them."""
        payload = patch_body(fact=fact, topic=topic, confidence=confidence, metadata=metadata,
                             ttl_seconds=ttl_seconds, expires_at=expires_at, said_at=said_at)
        data = await self._client._json("PATCH", "/api/v1/memories/{id}", ids={"id": memory_id}, json=payload)
        return memory_or_receipt(data)

    async def delete(self, memory_id: str, *, purge: bool = False) -> None:
        """Deletes a memory (its history stays and `restore` brings it back); `purge=True`
        erases it and every revision for good."""
        params = query(purge=True if purge else None)
        await self._client._json("DELETE", "/api/v1/memories/{id}", ids={"id": memory_id}, params=params)

    async def revisions(self, memory_id: str) -> RevisionList:
        """A memory's history, oldest first."""
        data = await self._client._json("GET", "/api/v1/memories/{id}/revisions", ids={"id": memory_id})
        return RevisionList.from_json(data)

    async def restore(self, memory_id: str, revision_id: str) -> Union[Memory, WriteReceipt]:
        """Returns a memory, live or deleted, to the state a revision recorded (itself a revision)."""
        data = await self._client._json("POST", "/api/v1/memories/{id}/restore", ids={"id": memory_id},
                                        json={"revision_id": revision_id})
        return memory_or_receipt(data)

    async def search(
        self,
        scope: Scope,
        query: str,
        *,
        top_k: Optional[int] = None,
        filter: Optional[SearchFilter] = None,
        recency_weight: Optional[float] = None,
        recency_half_life_days: Optional[float] = None,
    ) -> SearchResponse:
        """Hybrid search (BM25 and embeddings, fused) within exactly this scope (`top_k` 1 to 100, default 10).
        `recency_weight` (0 to 1) ranks what was said recently higher: each score becomes
        `(1 - w) * relevance + w * 0.5 ** (age / recency_half_life_days)` (default 30 days)."""
        payload = body(scope=scope, search_query=query, top_k=top_k, filter=filter, recency_weight=recency_weight,
                       recency_half_life_days=recency_half_life_days)
        return SearchResponse.from_json(await self._client._json("POST", "/api/v1/memories/search", json=payload))

    async def profile(self, scope: Scope) -> Profile:
        """The current value of each attribute the scope's memories set (name, age, residence,
        job, favourites, ...), each with the memory it comes from; `profile.get("residence")`."""
        params = query(scope=scope)
        return Profile.from_json(await self._client._json("GET", "/api/v1/memories/profile", params=params))

    async def generate(
        self,
        *,
        source_type: GenerateSourceType,
        source_reference: Optional[str] = None,
        scope: Optional[Scope] = None,
        events: Optional[Sequence[InlineEvent]] = None,
        memories: Optional[Sequence[DirectFact]] = None,
        event_range: Optional[EventRange] = None,
        config: Optional[GenerationConfig] = None,
    ) -> Job:
        """Queues a job that turns a conversation into memories; `jobs.wait(job.id)` for its outcome.

        `source_type="session"` reads the stored session `source_reference` (the events not
        processed yet for the scope, or `event_range`); `"events"` reads `events` sent inline;
        `"memories"` consolidates finished facts. `scope` is where the memories go (for a
        session, its scope by default).
        """
        payload = body(source_type=source_type, source_reference=source_reference, scope=scope,
                       events=[dict(e) for e in events] if events is not None else None,
                       memories=[dict(m) for m in memories] if memories is not None else None,
                       event_range=event_range, config=config)
        return Job.from_json(await self._client._json("POST", "/api/v1/memories/generate", json=payload))


class AsyncJobs(_AsyncResource):
    """Generation jobs (`/api/v1/jobs`)."""

    async def get(self, job_id: str) -> Job:
        """A job and its outcome so far."""
        return Job.from_json(await self._client._json("GET", "/api/v1/jobs/{id}", ids={"id": job_id}))

    async def stream(self, job_id: str) -> AsyncIterator[Job]:
        """The job each time it changes (Server-Sent Events), ending once it is completed or failed."""
        stream = self._client._events("/api/v1/jobs/{id}/stream", ids={"id": job_id})
        try:
            async for name, data in stream:
                if name == "job":
                    yield Job.from_json(data)
        finally:
            await stream.aclose()

    async def wait(self, job_id: str, timeout: Optional[float] = 60.0, *, poll_interval: float = 0.5) -> Job:
        """Polls a job until it is `completed` or `failed`, and returns it (check `job.status`).

        Raises `TimeoutError` when it is not done after `timeout` seconds (None: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = max(0.01, poll_interval)
        while True:
            job = await self.get(job_id)
            if job.done:
                return job
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
                await asyncio.sleep(min(interval, remaining))
            else:
                await asyncio.sleep(interval)
            interval = min(interval * 1.5, 5.0)


class AsyncKeys(_AsyncResource):
    """API keys of the caller's org (`/api/v1/keys`; needs an ADMIN credential)."""

    async def create(
        self,
        name: str,
        permissions: Sequence[Permission],
        *,
        scope: Optional[Scope] = None,
        expires_in_seconds: Optional[int] = None,
        expires_at: Optional[Timestamp] = None,
        rate_limit_per_second: Optional[int] = None,
    ) -> CreatedKey:
        """Creates a key holding no more than the caller (permissions, scope, expiry, rate);
        `CreatedKey.key` is the key itself, shown this once."""
        payload = body(name=name, permissions=list(permissions), scope=scope, expires_in_seconds=expires_in_seconds,
                       expires_at=expires_at, rate_limit_per_second=rate_limit_per_second)
        return CreatedKey.from_json(await self._client._json("POST", "/api/v1/keys", json=payload))

    async def list(self) -> KeyList:
        """The org's keys (never the keys themselves: their prefixes)."""
        return KeyList.from_json(await self._client._json("GET", "/api/v1/keys"))

    async def get(self, key_id: str) -> Key:
        """A key's record."""
        return Key.from_json(await self._client._json("GET", "/api/v1/keys/{id}", ids={"id": key_id}))

    async def revoke(self, key_id: str) -> Key:
        """Revokes a key and every key minted under it, at once; returns its record."""
        return Key.from_json(await self._client._json("DELETE", "/api/v1/keys/{id}", ids={"id": key_id}))

