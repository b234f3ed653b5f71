"""The Session protocol of openai-agents, method by method, on the real server.

The reference is openai-agents' own `SQLiteSession`: the same operations give the same answers.
What the server stores is checked through the native API.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

import pytest
from agents.memory import SQLiteSession, Session, SessionSettings

import contextiq
from contextiq_openai_agents import METADATA_KEY, ContextIQSession
from openai_agents_support import assistant, function_call, function_output, mapped_sessions, unique, user_message


async def test_it_is_an_agents_session(make_session, user):
    session = make_session("chat-1", user_id=user)
    assert isinstance(session, Session)  # the runtime-checkable protocol
    assert session.session_id == "chat-1"
    assert session.session_settings == SessionSettings()
    assert session.contextiq_session_id is None  # nothing asked of the server yet


async def test_the_same_operations_answer_as_sqlite_session(make_session, user):
    """Every protocol method and its edge cases, against openai-agents' SQLiteSession."""
    ours = make_session(unique("chat"), user_id=user)
    reference = SQLiteSession("reference")
    u1, a1 = user_message("I want to go to Lisbon"), assistant("Lisbon it is.")
    call, output = function_call("flights", '{"to": "LIS"}', "call-1"), function_output("call-1", "3 flights")
    a2, u2, u3 = assistant("There are 3 flights."), user_message("Book the first"), user_message("Start over")
    script: List[Tuple[Any, ...]] = [
        ("get", None), ("get", 3), ("pop",), ("clear",), ("get", None),
        ("add", [u1, a1]), ("get", None), ("get", 1), ("get", 2), ("get", 5), ("get", 0),
        ("add", []), ("get", None),
        ("add", [call, output, a2]), ("get", None), ("get", 2),
        ("pop",), ("get", None), ("get", 1),
        ("add", [u2]), ("get", None),
        ("pop",), ("pop",), ("get", None),
        ("clear",), ("get", None), ("get", 2), ("pop",),
        ("add", [u3]), ("get", None), ("pop",), ("pop",), ("get", None),
    ]
    for step, operation in enumerate(script):
        expected = await apply(reference, operation)
        actual = await apply(ours, operation)
        assert actual == expected, f"step {step}: {operation[0]}{operation[1:]}"
    reference.close()


async def test_limits_count_the_latest_items_in_chronological_order(make_session, user):
    session = make_session(unique("chat"), user_id=user)
    items = [user_message(f"message {n}") for n in range(7)]
    await session.add_items(items[:4])
    await session.add_items(items[4:])
    assert await session.get_items() == items
    assert await session.get_items(limit=3) == items[4:]
    assert await session.get_items(limit=1) == items[6:]
    assert await session.get_items(limit=100) == items
    # A limit of zero or less is no item (as RedisSession; SQLite's LIMIT would give all for -1).
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == []


async def test_session_settings_give_the_default_limit(make_session, user):
    session_id = unique("chat")
    writer = make_session(session_id, user_id=user)
    items = [user_message(f"message {n}") for n in range(5)]
    await writer.add_items(items)
    limited = make_session(session_id, user_id=user, session_settings={"limit": 2})
    assert limited.session_settings == SessionSettings(limit=2)
    assert await limited.get_items() == items[3:]
    assert await limited.get_items(limit=4) == items[1:]  # an explicit limit wins
    typed = make_session(session_id, user_id=user, session_settings=SessionSettings(limit=1))
    assert await typed.get_items() == items[4:]


async def test_pop_removes_and_returns_the_latest_item(make_session, native, user):
    session = make_session(unique("chat"), user_id=user)
    a, b, c = user_message("a"), assistant("b"), user_message("c")
    await session.add_items([a, b, c])
    assert await session.pop_item() == c
    assert await session.get_items() == [a, b]
    await session.add_items([c])
    assert await session.get_items() == [a, b, c]
    assert await session.pop_item() == c
    assert await session.pop_item() == b
    assert await session.pop_item() == a
    assert await session.pop_item() is None
    assert await session.get_items() == []
    # Append-only: every item stays an event; each pop is a marker event after it.
    events = list(native.sessions.iter_events(session.contextiq_session_id))
    assert [event.metadata[METADATA_KEY]["op"] for event in events] == [
        "item", "item", "item", "pop_item", "item", "pop_item", "pop_item", "pop_item"]
    marker = events[3]
    assert (marker.role, marker.author, marker.content) == ("system", "openai-agents", {"op": "pop_item"})


async def test_clear_empties_the_history_and_a_new_one_starts(make_session, native, user):
    session_id = unique("chat")
    session = make_session(session_id, user_id=user)
    await session.add_items([user_message("old"), assistant("old answer")])
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.clear_session()  # already empty: nothing to mark
    await session.add_items([user_message("new")])
    assert await session.get_items() == [user_message("new")]
    # Another instance (a fresh lookup and replay) sees the same history.
    assert await make_session(session_id, user_id=user).get_items() == [user_message("new")]
    ops = [e.metadata[METADATA_KEY]["op"] for e in native.sessions.iter_events(session.contextiq_session_id)]
    assert ops == ["item", "item", "clear_session", "item"]


async def test_items_keep_their_json_and_returned_items_are_copies(make_session, user):
    session = make_session(unique("chat"), user_id=user)
    item = {"role": "user", "content": [{"type": "input_text", "text": "héllo ✓"}], "x": {"n": [1, 2.5, None, True]}}
    await session.add_items([item])
    got = await session.get_items()
    assert got == [item]
    got[0]["content"][0]["text"] = "changed"
    assert await session.get_items() == [item]
    popped = await session.pop_item()
    assert popped == item


async def test_items_become_readable_events(make_session, native, user):
    """One event per item: the item's JSON as content, role and author from the item."""
    session_id = unique("chat")
    session = make_session(session_id, user_id=user, agent_id="travel-agent")
    items = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        user_message("Weather in Lisbon?"),
        {"type": "reasoning", "id": "rs_1", "summary": []},
        function_call("get_weather", '{"city": "Lisbon"}', "call-7"),
        function_output("call-7", "sunny"),
        assistant("Sunny."),
    ]
    await session.add_items(items)
    [record] = mapped_sessions(native, user, session_id, agent_id="travel-agent")
    assert record.id == session.contextiq_session_id
    assert record.metadata == {METADATA_KEY: {"session_id": session_id}}
    assert (record.user_id, record.agent_id, record.scope) == (user, "travel-agent", {"user_id": user})
    events = list(native.sessions.iter_events(record.id))
    assert [e.content for e in events] == items
    assert [(e.role, e.author) for e in events] == [
        ("system", "system"), ("system", "developer"), ("user", "user"), ("assistant", "reasoning"),
        ("assistant", "get_weather"), ("tool", "get_weather"), ("assistant", "assistant")]
    assert [e.metadata[METADATA_KEY] for e in events][3:6] == [
        {"op": "item", "type": "reasoning"}, {"op": "item", "type": "function_call"},
        {"op": "item", "type": "function_call_output"}]


async def test_text_events_of_other_clients_join_the_history(make_session, native, user):
    session_id = unique("chat")
    session = make_session(session_id, user_id=user)
    await session.add_items([user_message("from the agent")])
    native.sessions.append(session.contextiq_session_id, author="crm", role="system",
                           content="The user is a premium customer.")
    native.sessions.append(session.contextiq_session_id, author="crm", role="tool", content={"not": "an item"})
    assert await session.get_items() == [
        user_message("from the agent"), {"role": "system", "content": "The user is a premium customer."}]
    assert await session.pop_item() == {"role": "system", "content": "The user is a premium customer."}


async def test_instances_share_one_contextiq_session(make_session, native, user):
    session_id = unique("chat")
    first = make_session(session_id, user_id=user)
    second = make_session(session_id, user_id=user)
    await first.add_items([user_message("one")])
    assert await second.get_items() == [user_message("one")]
    await second.add_items([user_message("two")])
    assert await second.pop_item() == user_message("two")
    assert await first.get_items() == [user_message("one")]
    assert first.contextiq_session_id == second.contextiq_session_id
    assert len(mapped_sessions(native, user, session_id)) == 1
    # agent_id is part of the mapping; so is the user.
    other_agent = make_session(session_id, user_id=user, agent_id="another-agent")
    assert await other_agent.get_items() == []
    assert await make_session(session_id, user_id=unique("user")).get_items() == []
    assert other_agent.contextiq_session_id != first.contextiq_session_id


async def test_concurrent_first_uses_converge_on_one_session(make_session, native, user):
    session_id = unique("chat")
    sessions = [make_session(session_id, user_id=user) for _ in range(3)]
    await asyncio.gather(*(s.add_items([user_message(f"from {n}")]) for n, s in enumerate(sessions)))
    assert len({s.contextiq_session_id for s in sessions}) == 1
    assert len(mapped_sessions(native, user, session_id)) == 1
    items = await sessions[0].get_items()
    assert sorted(text["content"] for text in items) == ["from 0", "from 1", "from 2"]


async def test_concurrent_pops_remove_distinct_items(make_session, user):
    session_id = unique("chat")
    writer = make_session(session_id, user_id=user)
    items = [user_message(f"m{n}") for n in range(4)]
    await writer.add_items(items)
    poppers = [make_session(session_id, user_id=user) for _ in range(3)]
    popped = await asyncio.gather(*(p.pop_item() for p in poppers), writer.pop_item())
    assert sorted(item["content"] for item in popped) == ["m0", "m1", "m2", "m3"]
    assert await writer.get_items() == []
    # Within one instance too.
    await writer.add_items(items[:2])
    assert sorted(i["content"] for i in await asyncio.gather(writer.pop_item(), writer.pop_item())) == ["m0", "m1"]


async def test_long_histories_page_and_batch(make_session, user):
    """1,050 items: 11 appends of 100 and two pages of events; the cache resumes past them."""
    session_id = unique("chat")
    session = make_session(session_id, user_id=user)
    items = [user_message(f"m{n}") for n in range(1050)]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=2) == items[-2:]
    other = make_session(session_id, user_id=user)
    await other.add_items([user_message("late")])
    assert await session.get_items(limit=2) == [items[-1], user_message("late")]
    assert await session.pop_item() == user_message("late")
    assert len(await other.get_items()) == 1050


async def test_a_batch_over_the_body_limit_is_split(make_session, user):
    """The server takes 1 MiB per request: 60 items of 20 kB go in several appends, in order."""
    session = make_session(unique("chat"), user_id=user)
    items = [user_message(f"{n:03d}" + "x" * 20_000) for n in range(60)]
    await session.add_items(items)
    assert await session.get_items() == items


async def test_an_item_the_server_cannot_take_is_an_error(make_session, user):
    from contextiq_openai_agents import ContextIQSessionError

    session = make_session(unique("chat"), user_id=user)
    with pytest.raises(ContextIQSessionError) as raised:
        await session.add_items([user_message("x" * 1_100_000)])
    assert raised.value.status == 413 and raised.value.code == "payload_too_large"
    assert isinstance(raised.value.__cause__, contextiq.ContextIQError)
    assert await session.get_items() == []


async def test_items_that_are_not_json_are_refused_before_anything_is_stored(make_session, user):
    session = make_session(unique("chat"), user_id=user)
    with pytest.raises(TypeError):
        await session.add_items([user_message("fine"), "not a dict"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        await session.add_items([user_message("fine"), {"role": "user", "content": object()}])  # type: ignore
    with pytest.raises(ValueError):
        await session.add_items([{"role": "user", "content": "x", "score": float("nan")}])  # type: ignore
    assert await session.get_items() == []


async def test_delete_erases_the_contextiq_session(make_session, native, user):
    session_id = unique("chat")
    session = make_session(session_id, user_id=user)
    assert await session.delete() is False  # nothing yet
    await session.add_items([user_message("secret")])
    old_id = session.contextiq_session_id
    assert await session.delete() is True
    with pytest.raises(contextiq.NotFoundError):
        native.sessions.get(old_id)
    assert session.contextiq_session_id is None
    assert await session.get_items() == []  # a new, empty session
    assert session.contextiq_session_id not in (None, old_id)


async def test_a_session_deleted_elsewhere_is_replaced_on_next_use(make_session, native, user):
    session = make_session(unique("chat"), user_id=user)
    await session.add_items([user_message("before")])
    native.sessions.delete(session.contextiq_session_id)
    await session.add_items([user_message("after")])
    assert await session.get_items() == [user_message("after")]


async def test_a_given_contextiq_session_is_used_as_is(make_session, native, user):
    record = native.sessions.create(user, state={"plan": "premium"})
    native.sessions.append(record.id, author="user", content="Hello from the native API")
    session = make_session("any-id", user_id=user, contextiq_session_id=record.id)
    assert await session.get_items() == [{"role": "user", "content": "Hello from the native API"}]
    await session.add_items([assistant("Hello!")])
    assert [e.content for e in native.sessions.iter_events(record.id)][-1]["content"][0]["text"] == "Hello!"
    assert native.sessions.get(record.id).metadata == {}  # not remapped


async def test_remember_turns_the_live_history_into_memories(make_session, native, user):
    session = make_session(unique("chat"), user_id=user)
    await session.add_items([user_message("I live in Lisbon and I love coffee."), assistant("Noted!")])
    job = await session.remember(wait=True)
    assert job is not None and job.status == "completed", job
    assert (job.source_type, job.scope, job.counts.added) == ("events", {"user_id": user}, 2)
    memories = list(native.memories.iter({"user_id": user}))
    assert any("Lisbon" in m.fact for m in memories) and any("coffee" in m.fact for m in memories)
    first_event = next(iter(native.sessions.iter_events(session.contextiq_session_id)))
    assert all(m.source_event_ids == [first_event.id] for m in memories)
    # Nothing new: no job. A popped message is not remembered.
    assert await session.remember() is None
    await session.add_items([user_message("My favourite colour is blue.")])
    await session.pop_item()
    assert await session.remember() is None
    # New messages are, once (the watermark is in the session's state).
    await session.add_items([user_message("I am vegetarian."), function_call("f", "{}", "c"), function_output("c", "x")])
    job = await session.remember()
    assert job is not None and job.status in ("pending", "running", "completed")
    job = native.jobs.wait(job.id)
    assert (job.status, job.counts.added, job.events_processed) == ("completed", 1, 1)
    facts = [m.fact for m in native.memories.iter({"user_id": user})]
    assert len(facts) == 3 and not any("blue" in fact for fact in facts)
    state = native.sessions.get(session.contextiq_session_id, include_events=False).state
    assert state[METADATA_KEY]["remembered_seq"] == 7
    assert await session.remember() is None


async def test_remember_writes_into_the_sessions_scope(make_session, native, user):
    scope = {"user_id": user, "app": "travel"}
    session = make_session(unique("chat"), user_id=user, scope=scope)
    await session.add_items([user_message("I live in Porto.")])
    job = await session.remember(wait=True, config={"extractor": "rules", "topics": ["USER_PERSONAL_INFO"]})
    assert job is not None and job.status == "completed" and job.scope == scope
    assert [m.fact for m in native.memories.iter(scope)] and not list(native.memories.iter({"user_id": user}))


async def test_a_closed_session_refuses_work(make_session, server, user):
    owned = make_session(unique("chat"), user_id=user)
    await owned.add_items([user_message("x")])
    await owned.aclose()
    with pytest.raises(RuntimeError):
        await owned.get_items()
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key) as client:
        borrowed = ContextIQSession(owned.session_id, user_id=user, client=client)
        await borrowed.aclose()  # the caller's client: left open, the session still works
        assert await borrowed.get_items() == [user_message("x")]


async def apply(session: Any, operation: Tuple[Any, ...]) -> Any:
    name = operation[0]
    if name == "get":
        return await session.get_items(limit=operation[1])
    if name == "add":
        return await session.add_items([dict(item) for item in operation[1]])
    if name == "pop":
        return await session.pop_item()
    if name == "clear":
        return await session.clear_session()
    raise AssertionError(name)
