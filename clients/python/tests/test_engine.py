"""The engine option: `X-Engine-Id` partitions the org's sessions, memories and jobs."""

from __future__ import annotations

from typing import Any, List

import httpx
import pytest

import contextiq
from contextiq import NotFoundError
from support import Server, unique


def test_engine_isolates_sessions(client: contextiq.ContextIQ, server: Server, user: str) -> None:
    with contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key, engine="engine-a") as engine_a:
        assert engine_a.engine == "engine-a"
        inside = engine_a.sessions.create(user)
        assert engine_a.sessions.get(inside.id).id == inside.id
        with pytest.raises(NotFoundError) as elsewhere:
            client.sessions.get(inside.id)
        assert elsewhere.value.code == "session_not_found"
        assert client.sessions.list(user_id=user).sessions == []
        outside = client.sessions.create(user)
        assert [s.id for s in engine_a.sessions.list(user_id=user)] == [inside.id]
        assert [s.id for s in client.sessions.list(user_id=user)] == [outside.id]
        with pytest.raises(NotFoundError):
            engine_a.sessions.append(outside.id, author="user", content="hi")
        # Another engine sees neither.
        assert client.with_engine("engine-b").sessions.list(user_id=user).sessions == []
        # with_engine shares the connections and reaches the same partition.
        assert client.with_engine("engine-a").sessions.get(inside.id).id == inside.id
        assert client.with_engine(None).sessions.get(outside.id).id == outside.id


def test_engine_isolates_memories_and_jobs(client: contextiq.ContextIQ, server: Server, user: str) -> None:
    scope = {"user_id": user}
    with contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key, engine="engine-a") as engine_a:
        memory = engine_a.memories.create(scope, "Plays the cello")
        assert client.memories.list(scope).memories == []
        assert client.memories.search(scope, "cello").results == []
        assert engine_a.memories.search(scope, "cello")[0].memory.id == memory.id
        with pytest.raises(NotFoundError):
            client.memories.get(memory.id)
        job = engine_a.memories.generate(source_type="events", scope=scope,
                                         events=[{"author": "user", "content": "I live in Berlin"}])
        with pytest.raises(NotFoundError) as missing_job:
            client.jobs.get(job.id)
        assert missing_job.value.code == "job_not_found"
        assert engine_a.jobs.wait(job.id).status == "completed"
        assert client.memories.list(scope).memories == []
        assert {m.fact for m in engine_a.memories.iter(scope)} >= {"Plays the cello"}
        assert len(engine_a.memories.list(scope)) == 2
        # Keys belong to the org, whatever the engine.
        assert {k.id for k in engine_a.keys.list()} == {k.id for k in client.keys.list()}


def test_engine_header_only_on_engine_routes() -> None:
    seen: List[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("x-engine-id")))
        if request.url.path == "/api/v1/keys":
            return httpx.Response(200, json={"keys": []})
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "service": "contextiq", "version": "0"})
        return httpx.Response(200, json={"sessions": [], "next_cursor": None})

    with contextiq.ContextIQ(base_url="http://sdk.test", api_key="ck_x", engine="agent_7",
                             transport=httpx.MockTransport(handler)) as client:
        client.sessions.list()
        client.keys.list()
        client.health()
        client.with_engine(None).sessions.list()
    assert seen == [("/api/v1/sessions", "agent_7"), ("/api/v1/keys", None), ("/health", None),
                    ("/api/v1/sessions", None)]


@pytest.mark.parametrize("engine", ["", "a" * 64, "has space", "a/b", "ümlaut"])
def test_invalid_engine_is_refused_before_sending(engine: str) -> None:
    with pytest.raises(ValueError):
        contextiq.ContextIQ(base_url="http://sdk.test", engine=engine)
    with pytest.raises(ValueError):
        contextiq.ContextIQ(base_url="http://sdk.test").with_engine(engine)


async def test_async_engine(aclient: contextiq.AsyncContextIQ, server: Server, user: str) -> None:
    engine = unique("eng")
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key, engine=engine) as scoped:
        session = await scoped.sessions.create(user)
        with pytest.raises(NotFoundError):
            await aclient.sessions.get(session.id)
        assert (await aclient.with_engine(engine).sessions.get(session.id)).id == session.id
