"""A session's history through the SDK: its state at any event, forks, rewinds, and parent
sessions (children listed under their parent and deleted with it)."""

from __future__ import annotations

import uuid
from typing import Any, List

import pytest

import contextiq
from contextiq import (
    ConflictError,
    Event,
    ForkOrigin,
    NotFoundError,
    PermissionDeniedError,
    Rewind,
    Session,
    StateAt,
    ValidationError,
    WriteReceipt,
)
from support import unique

MISSING = "0190b8a4-0000-7000-8000-000000000002"

# The states after each event of `history`: the initial state, each event's delta and the
# state patches between the events.
STATE_AT = [
    {"step": 0, "keep": True},
    {"step": 1, "city": "Berlin", "mood": "curious"},
    {"step": 2, "city": "Berlin", "mood": "curious"},
    {"step": 3, "city": "Hamburg", "mood": "curious", "nested": {"a": 1, "b": 2}},
    {"step": 3, "city": "Hamburg", "mood": "curious", "nested": {"a": 1, "b": 2}},
]


def history(client: contextiq.ContextIQ, user: str, **create: Any) -> Session:
    """Events 1 to 4 (invocations `inv-one` to `inv-four`) with state deltas, and state patches
    between them (after events 1 and 3)."""
    session = client.sessions.create(user, state={"step": 0, "keep": True}, **create)

    def append(content: str, delta: dict) -> None:
        client.sessions.append(session.id, author="user", content=content, invocation_id=f"inv-{content}",
                               state_delta=delta)

    append("one", {"step": 1, "city": "Berlin"})
    client.sessions.patch_state(session.id, {"keep": None, "mood": "curious"})
    append("two", {"step": 2})
    append("three", {"step": 3, "city": "Hamburg", "nested": {"a": 1}})
    client.sessions.patch_state(session.id, {"nested": {"b": 2}})
    append("four", {})
    return session


async def ahistory(client: contextiq.AsyncContextIQ, user: str) -> Session:
    session = await client.sessions.create(user, state={"step": 0, "keep": True})

    async def append(content: str, delta: dict) -> None:
        await client.sessions.append(session.id, author="user", content=content, invocation_id=f"inv-{content}",
                                     state_delta=delta)

    await append("one", {"step": 1, "city": "Berlin"})
    await client.sessions.patch_state(session.id, {"keep": None, "mood": "curious"})
    await append("two", {"step": 2})
    await append("three", {"step": 3, "city": "Hamburg", "nested": {"a": 1}})
    await client.sessions.patch_state(session.id, {"nested": {"b": 2}})
    await append("four", {})
    return session


def context_seqs(client: contextiq.ContextIQ, session_id: str) -> List[int]:
    return [part.event.seq for part in client.sessions.context(session_id, 2000, memory_top_k=0).events]


def test_the_state_at_any_event(client: contextiq.ContextIQ, user: str) -> None:
    session = history(client, user)
    for seq, expected in enumerate(STATE_AT):
        at = client.sessions.state(session.id, at_seq=seq)
        assert isinstance(at, StateAt) and (at.session_id, at.at_seq) == (session.id, seq)
        assert at.state == expected, seq
    now = client.sessions.state(session.id)
    assert (now.at_seq, now.state) == (4, STATE_AT[4]) and now.raw == {"session_id": session.id, "at_seq": 4,
                                                                        "state": STATE_AT[4]}
    assert client.sessions.get(session.id, include_events=False).state == now.state

    for bad in (5, -1):
        with pytest.raises(ValidationError) as refused:
            client.sessions.state(session.id, at_seq=bad)
        assert (refused.value.code, refused.value.field) == ("validation_failed", "at_seq")
    with pytest.raises(NotFoundError) as missing:
        client.sessions.state(MISSING, at_seq=0)
    assert missing.value.code == "session_not_found"


def test_a_fork_has_the_history_up_to_its_point_and_the_state_as_it_was(client: contextiq.ContextIQ,
                                                                        user: str) -> None:
    source = history(client, user, metadata={"channel": "web"})
    source_events = list(client.sessions.iter_events(source.id))
    fork = client.sessions.fork(source.id, at_seq=2, metadata={"branch": "b"})
    assert isinstance(fork, Session) and fork.id != source.id
    assert fork.forked_from == ForkOrigin(session_id=source.id, seq=2)
    assert isinstance(fork.forked_from, ForkOrigin) and fork.raw["forked_from"] == {"session_id": source.id, "seq": 2}
    assert fork.state == STATE_AT[2] and fork.metadata == {"branch": "b"} and fork.event_count == 2
    assert (fork.user_id, fork.scope, fork.parent_session_id, fork.events) == (user, source.scope, None, None)
    copies = list(client.sessions.iter_events(fork.id))
    assert len(copies) == 2
    for copy, original in zip(copies, source_events):
        assert copy.id != original.id and copy.session_id == fork.id, "copies get ids of their own"
        for name in ("seq", "content", "author", "role", "invocation_id", "token_count", "actions", "timestamp"):
            assert getattr(copy, name) == getattr(original, name), name
    assert fork.token_count == sum(event.token_count for event in copies)
    # The fork's own history rebuilds as the source's did, and it goes on by itself.
    assert client.sessions.state(fork.id, at_seq=1).state == STATE_AT[1]
    client.sessions.append(fork.id, author="user", content="fork-three", state_delta={"step": 30})
    assert client.sessions.get(fork.id, include_events=False).event_count == 3
    unchanged = client.sessions.get(source.id)
    assert unchanged.event_count == 4 and unchanged.events == source_events and unchanged.forked_from is None

    # By invocation: through its last event; by default: all of it, with the source's metadata.
    by_invocation = client.sessions.fork(source.id, invocation_id="inv-three")
    assert isinstance(by_invocation, Session)
    assert by_invocation.event_count == 3 and by_invocation.state["nested"] == {"a": 1, "b": 2}
    assert by_invocation.forked_from == ForkOrigin(session_id=source.id, seq=3)
    whole = client.sessions.fork(source.id)
    assert isinstance(whole, Session) and whole.event_count == 4 and whole.state == unchanged.state
    assert whole.metadata == {"channel": "web"} and whole.forked_from == ForkOrigin(session_id=source.id, seq=4)
    empty = client.sessions.fork(source.id, at_seq=0, ttl_seconds=3600)
    assert isinstance(empty, Session) and empty.event_count == 0 and empty.state == STATE_AT[0]
    assert empty.expires_at is not None and list(client.sessions.iter_events(empty.id)) == []

    # A named fork; the name cannot be taken twice.
    named = str(uuid.uuid4())
    first = client.sessions.fork(source.id, at_seq=1, fork_id=named)
    assert first.id == named and client.sessions.get(named).forked_from == ForkOrigin(session_id=source.id, seq=1)
    with pytest.raises(ConflictError) as taken:
        client.sessions.fork(source.id, at_seq=1, fork_id=named)
    assert (taken.value.status, taken.value.code) == (409, "session_exists")

    for arguments, field in [
        ({"at_seq": 5}, "at_seq"),
        ({"at_seq": -1}, "at_seq"),
        ({"at_seq": 1, "invocation_id": "inv-one"}, "invocation_id"),
        ({"invocation_id": "no-such-invocation"}, "invocation_id"),
    ]:
        with pytest.raises(ValidationError) as refused:
            client.sessions.fork(source.id, **arguments)
        assert (refused.value.code, refused.value.field) == ("validation_failed", field), arguments
    with pytest.raises(NotFoundError) as missing:
        client.sessions.fork(MISSING)
    assert missing.value.code == "session_not_found"


def test_a_rewind_restores_the_state_and_takes_the_events_out_of_the_context(client: contextiq.ContextIQ,
                                                                             user: str) -> None:
    session = history(client, user)
    rewound = client.sessions.rewind(session.id, to_seq=1)
    assert isinstance(rewound, Session) and rewound.state == STATE_AT[1] and rewound.event_count == 5
    events = list(client.sessions.iter_events(session.id))
    assert [event.kind for event in events] == ["message"] * 4 + ["rewind"], "nothing is deleted"
    marker = events[-1]
    assert isinstance(marker, Event) and marker.seq == 5 and marker.compaction is None
    assert marker.rewind == Rewind(to_seq=1, before_invocation_id="inv-two")
    assert (marker.author, marker.role) == ("system:rewind", "system")
    # ADK's delta: what changed, None for what went.
    assert marker.actions.state_delta == {"step": 1, "city": "Berlin", "nested": None}
    assert all(event.rewind is None and "rewind" not in event.raw for event in events[:4])
    assert client.sessions.state(session.id, at_seq=4).state == STATE_AT[4], "the history before it is kept"
    assert client.sessions.state(session.id, at_seq=5).state == rewound.state

    # The context leaves the rewound events out; a new turn follows the rewind.
    client.sessions.append(session.id, author="user", content="two-again", state_delta={"step": 2})
    assert context_seqs(client, session.id) == [1, 6]
    text = client.sessions.context(session.id, 2000, memory_top_k=0).text
    assert "three" not in text and "two-again" in text

    # ADK's way: before an invocation; a rewind to a rewound point brings its events back.
    again = client.sessions.rewind(session.id, before_invocation_id="inv-four")
    assert isinstance(again, Session) and again.state["step"] == 3 and again.event_count == 7
    last = list(client.sessions.iter_events(session.id))[-1]
    assert last.kind == "rewind" and last.rewind == Rewind(to_seq=3, before_invocation_id="inv-four")
    assert context_seqs(client, session.id) == [1, 2, 3]

    for arguments, field in [
        ({}, "to_seq"),
        ({"to_seq": 7}, "to_seq"),
        ({"to_seq": 8}, "to_seq"),
        ({"to_seq": -1}, "to_seq"),
        ({"to_seq": 1, "before_invocation_id": "inv-one"}, "to_seq"),
        ({"before_invocation_id": "nope"}, "before_invocation_id"),
    ]:
        with pytest.raises(ValidationError) as refused:
            client.sessions.rewind(session.id, **arguments)
        assert (refused.value.code, refused.value.field) == ("validation_failed", field), arguments
    assert client.sessions.get(session.id, include_events=False).event_count == 7, "a refused rewind writes nothing"
    with pytest.raises(NotFoundError):
        client.sessions.rewind(MISSING, to_seq=0)


def test_children_are_listed_under_their_parent_and_deleted_with_it(client: contextiq.ContextIQ, user: str) -> None:
    parent = client.sessions.create(user)
    assert parent.parent_session_id is None and parent.forked_from is None

    def child(agent: str, parent_id: str) -> Session:
        return client.sessions.create(user, agent_id=agent, scope={"user_id": user, "agent_id": agent},
                                      parent_session_id=parent_id)

    planner = child("planner", parent.id)
    searcher = child("searcher", parent.id)
    grandchild = child("planner", planner.id)
    unrelated = client.sessions.create(user)
    assert planner.parent_session_id == parent.id and grandchild.parent_session_id == planner.id
    assert client.sessions.get(searcher.id).parent_session_id == parent.id
    children = client.sessions.list(parent_session_id=parent.id)
    assert sorted(s.id for s in children) == sorted([planner.id, searcher.id])
    assert all(s.parent_session_id == parent.id for s in children)
    assert [s.id for s in client.sessions.iter(parent_session_id=planner.id, page_size=1)] == [grandchild.id]
    assert [s.id for s in client.sessions.list(parent_session_id=parent.id, agent_id="searcher")] == [searcher.id]
    # A fork keeps its source's parent.
    fork = client.sessions.fork(planner.id)
    assert isinstance(fork, Session) and fork.parent_session_id == parent.id

    # A parent must be within reach, and its scope within the child's.
    with pytest.raises(ValidationError) as missing:
        client.sessions.create(user, parent_session_id=MISSING)
    assert missing.value.field == "parent_session_id"
    with pytest.raises(ValidationError) as wider:
        client.sessions.create(unique("other"), parent_session_id=parent.id)
    assert wider.value.field == "scope"

    # Deleting the parent deletes its descendants, and nothing else.
    client.sessions.delete(parent.id)
    for gone in (parent, planner, searcher, grandchild, fork):
        with pytest.raises(NotFoundError):
            client.sessions.get(gone.id)
    assert client.sessions.get(unrelated.id).id == unrelated.id
    assert list(client.sessions.list(parent_session_id=parent.id)) == []


def test_a_write_only_credential_gets_receipts(client: contextiq.ContextIQ, server: Any, user: str) -> None:
    session = history(client, user)
    key = client.keys.create(unique("write-only"), ["SESSION_WRITE"])
    with contextiq.ContextIQ(base_url=server.url, api_key=key.key) as writer:
        fork = writer.sessions.fork(session.id, at_seq=2)
        assert isinstance(fork, WriteReceipt) and fork.id != session.id
        rewound = writer.sessions.rewind(session.id, to_seq=1)
        assert isinstance(rewound, WriteReceipt) and rewound.id == session.id
        with pytest.raises(PermissionDeniedError):
            writer.sessions.state(session.id)
    forked = client.sessions.get(fork.id, include_events=False)
    assert forked.forked_from == ForkOrigin(session_id=session.id, seq=2) and forked.state == STATE_AT[2]
    assert client.sessions.state(session.id).state == STATE_AT[1]


async def test_the_async_client_reads_states_forks_and_rewinds(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    session = await ahistory(aclient, user)
    at = await aclient.sessions.state(session.id, at_seq=3)
    assert isinstance(at, StateAt) and at.at_seq == 3 and at.state == STATE_AT[3]
    assert (await aclient.sessions.state(session.id)).at_seq == 4
    with pytest.raises(ValidationError):
        await aclient.sessions.state(session.id, at_seq=9)

    fork = await aclient.sessions.fork(session.id, invocation_id="inv-two", metadata={"branch": "async"})
    assert isinstance(fork, Session) and fork.forked_from == ForkOrigin(session_id=session.id, seq=2)
    assert fork.state == STATE_AT[2] and fork.metadata == {"branch": "async"}
    assert [event.content async for event in aclient.sessions.iter_events(fork.id)] == ["one", "two"]
    named = str(uuid.uuid4())
    assert (await aclient.sessions.fork(session.id, fork_id=named)).id == named
    with pytest.raises(ConflictError) as taken:
        await aclient.sessions.fork(session.id, fork_id=named)
    assert taken.value.code == "session_exists"
    with pytest.raises(ValidationError) as both:
        await aclient.sessions.fork(session.id, at_seq=1, invocation_id="inv-one")
    assert both.value.field == "invocation_id"

    rewound = await aclient.sessions.rewind(session.id, before_invocation_id="inv-three")
    assert isinstance(rewound, Session) and rewound.state == STATE_AT[2] and rewound.event_count == 5
    events = [event async for event in aclient.sessions.iter_events(session.id)]
    assert events[-1].kind == "rewind" and events[-1].rewind == Rewind(to_seq=2, before_invocation_id="inv-three")
    assert events[-1].actions.state_delta == {"step": 2, "city": "Berlin", "nested": None}
    context = await aclient.sessions.context(session.id, 2000, memory_top_k=0)
    assert [part.event.seq for part in context.events] == [1, 2]
    with pytest.raises(ValidationError) as neither:
        await aclient.sessions.rewind(session.id)
    assert neither.value.field == "to_seq"

    child = await aclient.sessions.create(user, parent_session_id=session.id)
    assert child.parent_session_id == session.id
    assert [s.id async for s in aclient.sessions.iter(parent_session_id=session.id)] == [child.id]
    assert [s.id for s in await aclient.sessions.list(parent_session_id=session.id)] == [child.id]
    await aclient.sessions.delete(session.id)
    with pytest.raises(NotFoundError):
        await aclient.sessions.get(child.id)
    assert (await aclient.sessions.get(fork.id)).forked_from is not None, "a fork is no child: it stays"
