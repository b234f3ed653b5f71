"""Cursor pages: the `iter` methods follow `next_cursor` over more than two pages."""

from __future__ import annotations

from typing import Any

import contextiq


def test_sessions_iter_over_pages(recorded: Any, user: str) -> None:
    client, transport = recorded
    made = [client.sessions.create(user, agent_id="pager").id for _ in range(5)]
    first = client.sessions.list(user_id=user, limit=2)
    assert len(first) == 2 and first.next_cursor
    second = client.sessions.list(user_id=user, limit=2, cursor=first.next_cursor)
    third = client.sessions.list(user_id=user, limit=2, cursor=second.next_cursor)
    assert len(third) == 1 and third.next_cursor is None
    assert [s.id for s in [*first, *second, *third]] == made[::-1]
    before = transport.count("GET", "/api/v1/sessions")
    assert [s.id for s in client.sessions.iter(user_id=user, page_size=2)] == made[::-1]
    assert transport.count("GET", "/api/v1/sessions") - before == 3


def test_events_iter_over_pages(recorded: Any, user: str) -> None:
    client, transport = recorded
    session = client.sessions.create(user)
    client.sessions.append_many(session.id, [{"author": "user", "content": f"event {n}"} for n in range(1, 8)])
    before = transport.count("GET", "/api/v1/sessions/{id}/events")
    events = list(client.sessions.iter_events(session.id, page_size=3))
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.content for e in events] == [f"event {n}" for n in range(1, 8)]
    assert transport.count("GET", "/api/v1/sessions/{id}/events") - before == 3
    assert list(client.sessions.iter_events(client.sessions.create(user).id)) == []


def test_memories_iter_over_pages(recorded: Any, user: str) -> None:
    client, transport = recorded
    scope = {"user_id": user}
    made = [client.memories.create(scope, f"Fact number {n}").id for n in range(5)]
    page = client.memories.list(scope, limit=2)
    assert len(page) == 2 and page.next_cursor
    before = transport.count("GET", "/api/v1/memories")
    assert [m.id for m in client.memories.iter(scope, page_size=2)] == made[::-1]
    assert transport.count("GET", "/api/v1/memories") - before == 3
    assert [m.id for m in client.memories.iter(scope, page_size=100)] == made[::-1]


async def test_async_iterators(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    scope = {"user_id": user}
    sessions = [(await aclient.sessions.create(user)).id for _ in range(5)]
    assert [s.id async for s in aclient.sessions.iter(user_id=user, page_size=2)] == sessions[::-1]
    memories = [(await aclient.memories.create(scope, f"Async fact {n}")).id for n in range(5)]
    assert [m.id async for m in aclient.memories.iter(scope, page_size=2)] == memories[::-1]
    await aclient.sessions.append_many(sessions[0], [{"author": "user", "content": str(n)} for n in range(5)])
    assert [e.content async for e in aclient.sessions.iter_events(sessions[0], page_size=2)] == [
        str(n) for n in range(5)]
