"""Sessions through the SDK: fields, times, state patches, filters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import contextiq
from contextiq import Session, WriteReceipt
from support import unique


def test_create_with_every_field(client: contextiq.ContextIQ, user: str) -> None:
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    session = client.sessions.create(
        user, agent_id="planner", scope={"user_id": user, "app": "travel"}, state={"step": 1, "cart": []},
        metadata={"channel": "web"}, expires_at=expires,
    )
    assert session.user_id == user and session.agent_id == "planner"
    assert session.scope == {"user_id": user, "app": "travel"}
    assert session.state == {"step": 1, "cart": []} and session.metadata == {"channel": "web"}
    assert session.expires_at == expires
    assert session.created_at.tzinfo is not None and session.created_at <= session.updated_at
    assert session.raw["id"] == session.id


def test_naive_datetime_is_utc(client: contextiq.ContextIQ, user: str) -> None:
    naive = datetime.utcnow().replace(microsecond=0) + timedelta(hours=5)
    session = client.sessions.create(user, expires_at=naive)
    assert session.expires_at == naive.replace(tzinfo=timezone.utc)


def test_append_keeps_every_field(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user)
    when = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=timezone.utc)
    event = client.sessions.append(session.id, author="tool-runner", role="tool", content=[1, "two", {"three": 3}],
                                   metadata={"latency_ms": 12}, invocation_id="inv-1", timestamp=when)
    assert event.role == "tool" and event.content == [1, "two", {"three": 3}]
    assert event.metadata == {"latency_ms": 12} and event.invocation_id == "inv-1"
    assert event.timestamp == when
    again = client.sessions.get(session.id).events
    assert again is not None and again[0] == event


def test_merge_patch_semantics(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user, state={"a": {"b": 1, "c": 2}, "d": 3})
    patched = client.sessions.patch_state(session.id, {"a": {"c": None, "e": 5}, "d": None})
    assert isinstance(patched, Session) and patched.state == {"a": {"b": 1, "e": 5}}
    unchanged = client.sessions.patch_state(session.id, {})
    assert isinstance(unchanged, Session) and unchanged.updated_at == patched.updated_at


def test_write_only_credential_gets_receipts(client: contextiq.ContextIQ, server, user: str) -> None:
    session = client.sessions.create(user)
    memory = client.memories.create({"user_id": user}, "Has a cat named Miso")
    key = client.keys.create(unique("write-only"), ["SESSION_WRITE", "MEMORY_WRITE"])
    with contextiq.ContextIQ(base_url=server.url, api_key=key.key) as writer:
        receipt = writer.sessions.patch_state(session.id, {"x": 1})
        assert isinstance(receipt, WriteReceipt) and receipt.id == session.id
        memory_receipt = writer.memories.update(memory.id, fact="Has a cat named Mochi")
        assert isinstance(memory_receipt, WriteReceipt) and memory_receipt.id == memory.id
    assert client.sessions.get(session.id).state == {"x": 1}
    assert client.memories.get(memory.id).fact == "Has a cat named Mochi"


def test_list_filters_by_agent(client: contextiq.ContextIQ, user: str) -> None:
    a = client.sessions.create(user, agent_id="agent-a")
    b = client.sessions.create(user, agent_id="agent-b")
    assert [s.id for s in client.sessions.list(user_id=user)] == [b.id, a.id]
    assert [s.id for s in client.sessions.list(user_id=user, agent_id="agent-a")] == [a.id]
    listed = client.sessions.list(user_id=user)
    assert all(s.events is None for s in listed)


async def test_async_sessions(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    session = await aclient.sessions.create(user, state={"n": 0})
    for n in range(1, 4):
        await aclient.sessions.append(session.id, author="user", content=f"message {n}")
        await aclient.sessions.patch_state(session.id, {"n": n})
    read = await aclient.sessions.get(session.id)
    assert read.state == {"n": 3} and read.event_count == 3
    assert [e.content async for e in aclient.sessions.iter_events(session.id, page_size=2)] == [
        "message 1", "message 2", "message 3"]
    await aclient.sessions.delete(session.id)
    with pytest.raises(contextiq.NotFoundError):
        await aclient.sessions.delete(session.id)
