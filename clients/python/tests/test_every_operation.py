"""Every operation of the API through the SDK, once with each client, in the order of the
README's curl walk-through; the recording transport checks that every entry of OPERATIONS
was called and answered with a success."""

from __future__ import annotations

from typing import Any

import pytest

import contextiq
from contextiq import (
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
    NotFoundError,
    RevisionList,
    SearchResponse,
    Session,
    SessionList,
    StateAt,
)

TOPICS: Any = ["USER_PREFERENCES", "USER_PERSONAL_INFO", "KEY_CONVERSATION_DETAILS",
               {"name": "DIET", "description": "what the user eats"}]


def test_every_operation_sync(recorded: Any, user: str) -> None:
    client, transport = recorded
    assert isinstance(client.health(), Health) and client.health().status == "ok"
    assert client.ready().status == "ready"
    assert "# TYPE" in client.metrics()

    # Sessions
    session = client.sessions.create(user, agent_id="travel-agent", state={"step": 1}, ttl_seconds=86400)
    assert isinstance(session, Session)
    assert session.scope == {"user_id": user} and session.events == [] and session.event_count == 0
    assert session.agent_id == "travel-agent" and session.expires_at is not None
    event = client.sessions.append(session.id, author="user", role="user", content="I want to go to Lisbon in May")
    assert isinstance(event, Event) and event.seq == 1 and event.session_id == session.id
    batch = client.sessions.append_many(session.id, [
        {"author": "agent", "role": "assistant", "content": "Lisbon it is."},
        {"author": "search", "role": "tool", "content": {"flights": 3}},
    ])
    assert isinstance(batch, EventBatch) and [e.seq for e in batch] == [2, 3]
    read = client.sessions.get(session.id)
    assert read.event_count == 3 and read.events is not None
    assert [e.content for e in read.events] == ["I want to go to Lisbon in May", "Lisbon it is.", {"flights": 3}]
    assert client.sessions.get(session.id, include_events=False).events is None
    page = client.sessions.events(session.id, limit=2)
    assert isinstance(page, EventList) and len(page) == 2 and page.next_cursor
    patched = client.sessions.patch_state(session.id, {"step": 2, "draft": None})
    assert isinstance(patched, Session) and patched.state == {"step": 2}
    listed = client.sessions.list(user_id=user, limit=20)
    assert isinstance(listed, SessionList) and [s.id for s in listed] == [session.id]
    # History: the state at an event, a fork, a rewind of the fork, a child session
    at = client.sessions.state(session.id, at_seq=0)
    assert isinstance(at, StateAt) and at.state == {"step": 1}
    fork = client.sessions.fork(session.id, at_seq=2)
    assert isinstance(fork, Session) and fork.forked_from is not None and fork.forked_from.seq == 2
    rewound = client.sessions.rewind(fork.id, to_seq=1)
    assert isinstance(rewound, Session) and rewound.event_count == 3
    child = client.sessions.create(user, parent_session_id=session.id)
    assert [s.id for s in client.sessions.list(parent_session_id=session.id)] == [child.id]
    client.sessions.delete(fork.id)

    # Memories
    scope = {"user_id": user}
    memory = client.memories.create(scope, "Allergic to peanuts", topic="USER_PERSONAL_INFO",
                                    metadata={"source": "onboarding"}, ttl_seconds=31536000)
    assert isinstance(memory, Memory) and memory.fact == "Allergic to peanuts" and memory.scope == scope
    assert client.memories.get(memory.id) == memory
    memories = client.memories.list(scope, limit=20)
    assert isinstance(memories, MemoryList) and [m.id for m in memories] == [memory.id]
    found = client.memories.search(scope, "what can they not eat?", top_k=5, filter={"topic": "USER_PERSONAL_INFO"})
    assert isinstance(found, SearchResponse) and found[0].memory.id == memory.id and 0 <= found[0].score <= 1
    home = client.memories.create(scope, "User lives in Lisbon")
    profile = client.memories.profile(scope)
    assert isinstance(profile, contextiq.Profile) and [(a.attribute, a.value, a.memory_id) for a in profile] == [
        ("residence", "Lisbon", home.id)]
    client.memories.delete(home.id, purge=True)
    updated = client.memories.update(memory.id, fact="Allergic to peanuts and cashews")
    assert isinstance(updated, Memory) and updated.fact == "Allergic to peanuts and cashews"
    revisions = client.memories.revisions(memory.id)
    assert isinstance(revisions, RevisionList) and [r.action for r in revisions] == ["created", "updated"]
    restored = client.memories.restore(memory.id, revisions[0].id)
    assert isinstance(restored, Memory) and restored.fact == "Allergic to peanuts"
    client.memories.delete(memory.id)
    with pytest.raises(NotFoundError) as deleted:
        client.memories.get(memory.id)
    assert deleted.value.code == "memory_not_found"
    client.memories.delete(memory.id, purge=True)
    with pytest.raises(NotFoundError):
        client.memories.revisions(memory.id)

    # Generation: the session's events, then the job
    client.sessions.append_many(session.id, [
        {"author": "user", "role": "user", "content": "I am vegetarian and I love coffee."},
        {"author": "user", "role": "user", "content": "My favourite colour is blue."},
    ])
    job = client.memories.generate(source_type="session", source_reference=session.id,
                                   config={"extractor": "rules", "topics": TOPICS})
    assert isinstance(job, Job) and job.source_type == "session" and job.source_reference == session.id
    done = client.jobs.wait(job.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.counts.added >= 1 and len(done.memories_added) == done.counts.added
    assert client.jobs.get(job.id).status == "completed"

    # Context: a compaction, a context within a budget, the live streams
    compacting = client.sessions.compact(session.id, keep_recent_events=1)
    assert isinstance(compacting, Job) and compacting.source_type == "compaction"
    assert [j.status for j in client.jobs.stream(compacting.id)][-1] == "completed"
    compacted = client.jobs.get(compacting.id)
    assert compacted.compaction is not None and compacted.compaction.start_seq == 1
    context = client.sessions.context(session.id, 2000)
    assert isinstance(context, Context) and context.total_tokens <= 2000 and len(context.summaries) == 1
    streamed = client.sessions.stream_events(session.id, after_seq=0)
    assert next(streamed).seq == 1
    streamed.close()

    # Keys
    created = client.keys.create(f"walk-{user}", ["SESSION_READ"], scope={"user_id": user}, expires_in_seconds=3600)
    assert isinstance(created, CreatedKey) and created.key.startswith("ck_") and created.key not in repr(created)
    assert created.scope == {"user_id": user} and created.permissions == ["SESSION_READ"]
    assert isinstance(client.keys.get(created.id), Key) and client.keys.get(created.id).name == f"walk-{user}"
    keys = client.keys.list()
    assert isinstance(keys, KeyList) and created.id in [k.id for k in keys]
    revoked = client.keys.revoke(created.id)
    assert revoked.revoked_at is not None

    client.sessions.delete(session.id)
    with pytest.raises(NotFoundError) as gone:
        client.sessions.get(session.id)
    assert gone.value.code == "session_not_found"

    assert transport.operations == set(contextiq.OPERATIONS), set(contextiq.OPERATIONS) - transport.operations


async def test_every_operation_async(arecorded: Any, user: str) -> None:
    client, transport = arecorded
    assert (await client.health()).status == "ok"
    assert (await client.ready()).status == "ready"
    assert "# TYPE" in await client.metrics()

    session = await client.sessions.create(user, agent_id="travel-agent", state={"step": 1})
    assert isinstance(session, Session) and session.events == []
    event = await client.sessions.append(session.id, author="user", content="I want to go to Lisbon in May")
    assert event.seq == 1 and event.role == "user"
    batch = await client.sessions.append_many(session.id, [
        {"author": "agent", "role": "assistant", "content": "Lisbon it is.", "invocation_id": "turn-2"},
        {"author": "user", "content": "My favourite colour is green."},
    ])
    assert [e.seq for e in batch] == [2, 3]
    read = await client.sessions.get(session.id)
    assert read.event_count == 3 and read.events is not None and len(read.events) == 3
    page = await client.sessions.events(session.id, limit=2)
    assert [e.seq for e in page] == [1, 2] and page.next_cursor
    patched = await client.sessions.patch_state(session.id, {"step": 2, "nested": {"a": 1}})
    assert isinstance(patched, Session) and patched.state == {"step": 2, "nested": {"a": 1}}
    assert [s.id for s in await client.sessions.list(user_id=user)] == [session.id]
    assert (await client.sessions.state(session.id, at_seq=0)).state == {"step": 1}
    fork = await client.sessions.fork(session.id, invocation_id="turn-2")
    assert isinstance(fork, Session) and fork.forked_from is not None and fork.event_count == 2
    rewound = await client.sessions.rewind(fork.id, before_invocation_id="turn-2")
    assert isinstance(rewound, Session) and rewound.event_count == 3 and rewound.state == {"step": 1}
    await client.sessions.delete(fork.id)

    scope = {"user_id": user}
    memory = await client.memories.create(scope, "Allergic to peanuts", topic="USER_PERSONAL_INFO")
    assert isinstance(memory, Memory)
    assert (await client.memories.get(memory.id)).fact == "Allergic to peanuts"
    assert [m.id for m in await client.memories.list(scope)] == [memory.id]
    found = await client.memories.search(scope, "peanut allergy")
    assert found.memories[0].id == memory.id
    assert (await client.memories.profile(scope)).attributes == []
    updated = await client.memories.update(memory.id, fact="Allergic to peanuts and cashews", topic=None)
    assert isinstance(updated, Memory) and updated.topic is None
    revisions = await client.memories.revisions(memory.id)
    assert [r.action for r in revisions] == ["created", "updated"]
    restored = await client.memories.restore(memory.id, revisions[0].id)
    assert isinstance(restored, Memory) and restored.fact == "Allergic to peanuts"
    assert restored.topic == "USER_PERSONAL_INFO"
    await client.memories.delete(memory.id)
    await client.memories.delete(memory.id, purge=True)
    with pytest.raises(NotFoundError):
        await client.memories.get(memory.id)

    job = await client.memories.generate(source_type="session", source_reference=session.id)
    done = await client.jobs.wait(job.id, timeout=60)
    assert done.status == "completed", done.error
    assert (await client.jobs.get(job.id)).counts == done.counts

    compacting = await client.sessions.compact(session.id)
    assert [j.status async for j in client.jobs.stream(compacting.id)][-1] == "completed"
    context = await client.sessions.context(session.id, 500, include_state=False)
    assert context.state is None and context.total_tokens <= 500
    streamed = client.sessions.stream_events(session.id, after_seq=0)
    assert (await streamed.__anext__()).seq == 1
    await streamed.aclose()

    created = await client.keys.create(f"walk-{user}", ["MEMORY_READ"], scope=scope)
    assert created.key.startswith("ck_")
    assert (await client.keys.get(created.id)).id == created.id
    assert created.id in [k.id for k in await client.keys.list()]
    assert (await client.keys.revoke(created.id)).revoked_at is not None

    await client.sessions.delete(session.id)
    with pytest.raises(NotFoundError):
        await client.sessions.get(session.id)

    assert transport.operations == set(contextiq.OPERATIONS), set(contextiq.OPERATIONS) - transport.operations
