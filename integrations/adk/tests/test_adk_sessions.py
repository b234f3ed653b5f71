"""ADK's `VertexAiSessionService` (as `ContextIQSessionService`) against the server: every
method, and the native API's view of what it wrote."""

from __future__ import annotations

import json
import re
import time

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types
from google.genai.errors import ClientError

from contextiq_adk import ContextIQSessionService
from support import Server, unique

APP = "my_app"


@pytest.fixture(scope="module")
def sessions(server: Server) -> ContextIQSessionService:
    return ContextIQSessionService(server.base_url, server.admin_key)


def user_event(text: str, **kwargs) -> Event:
    return Event(
        author="user",
        invocation_id=kwargs.pop("invocation_id", unique("inv")),
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        **kwargs,
    )


def model_event(text: str, **kwargs) -> Event:
    return Event(
        author="assistant_agent",
        invocation_id=kwargs.pop("invocation_id", unique("inv")),
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        **kwargs,
    )


async def test_create_with_a_session_id(server: Server, sessions, user):
    session_id = unique("chosen")
    created = await sessions.create_session(app_name=APP, user_id=user, state={"a": 1}, session_id=session_id)
    assert created.id == session_id
    assert created.user_id == user
    assert created.state == {"a": 1}
    assert created.last_update_time == pytest.approx(time.time(), abs=60)

    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session_id)
    assert fetched is not None
    assert (fetched.id, fetched.user_id, fetched.state, fetched.events) == (session_id, user, {"a": 1}, [])

    native = server.native_session_by_name(user, session_id)
    assert native["id"] != session_id  # the native record has a UUID of its own
    assert native["user_id"] == user
    assert native["state"] == {"a": 1}
    assert native["metadata"]["agent_engine"]["session_id"] == session_id


async def test_create_without_a_session_id(server: Server, sessions, user):
    created = await sessions.create_session(app_name=APP, user_id=user)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", created.id)
    assert created.state == {}
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=created.id)
    assert fetched is not None and fetched.id == created.id
    # A server-assigned id is the native record's id.
    native = server.native("GET", f"/sessions/{created.id}").json()
    assert native["user_id"] == user


async def test_create_twice_with_one_id_is_already_exists(sessions, user):
    session_id = unique("dup")
    await sessions.create_session(app_name=APP, user_id=user, session_id=session_id)
    with pytest.raises(ClientError) as raised:
        await sessions.create_session(app_name=APP, user_id=user, session_id=session_id)
    assert raised.value.code == 409
    assert raised.value.status == "ALREADY_EXISTS"


async def test_get_a_missing_session_is_none(sessions, user):
    assert await sessions.get_session(app_name=APP, user_id=user, session_id=unique("missing")) is None


async def test_get_with_the_wrong_user_raises(sessions, user):
    created = await sessions.create_session(app_name=APP, user_id=user)
    with pytest.raises(ValueError, match="does not belong"):
        await sessions.get_session(app_name=APP, user_id=unique("intruder"), session_id=created.id)


async def test_list_sessions_with_and_without_a_user(sessions, user):
    other = unique("user")
    mine = {(await sessions.create_session(app_name=APP, user_id=user, state={"n": n})).id for n in range(3)}
    theirs = (await sessions.create_session(app_name=APP, user_id=other)).id

    listed = await sessions.list_sessions(app_name=APP, user_id=user)
    assert {session.id for session in listed.sessions} == mine
    assert all(session.user_id == user for session in listed.sessions)
    assert sorted(session.state["n"] for session in listed.sessions) == [0, 1, 2]

    everyone = await sessions.list_sessions(app_name=APP)
    ids = {session.id for session in everyone.sessions}
    assert mine | {theirs} <= ids

    assert (await sessions.list_sessions(app_name=APP, user_id=unique("nobody"))).sessions == []


async def test_list_sessions_reads_every_page(sessions, user):
    """More sessions than one page holds (Google's default page is 100): ADK follows
    `nextPageToken`."""
    import asyncio

    created = await asyncio.gather(*(sessions.create_session(app_name=APP, user_id=user) for _ in range(120)))
    listed = await sessions.list_sessions(app_name=APP, user_id=user)
    assert sorted(session.id for session in listed.sessions) == sorted(session.id for session in created)


async def test_concurrent_appends_all_land_with_their_state(server: Server, sessions, user):
    """Each append merges its delta atomically with the event: concurrent appends lose nothing."""
    import asyncio

    session = await sessions.create_session(app_name=APP, user_id=user)
    copies = [await sessions.get_session(app_name=APP, user_id=user, session_id=session.id) for _ in range(20)]
    events = [user_event(f"m{n}", actions=EventActions(state_delta={f"k{n}": n, "last": n})) for n in range(20)]
    await asyncio.gather(*(sessions.append_event(copy, event) for copy, event in zip(copies, events)))
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    assert sorted(event.id for event in fetched.events) == sorted(event.id for event in events)
    assert {key: value for key, value in fetched.state.items() if key != "last"} == {f"k{n}": n for n in range(20)}
    # The state is the deltas applied in the order the events were stored.
    order = {event.id: n for n, event in enumerate(events)}
    assert fetched.state["last"] == order[fetched.events[-1].id]
    assert server.native("GET", f"/sessions/{session.id}").json()["event_count"] == 20


async def test_a_user_id_with_quotes_is_filtered_exactly(sessions):
    tricky = unique('we"ird\\user')
    created = await sessions.create_session(app_name=APP, user_id=tricky)
    listed = await sessions.list_sessions(app_name=APP, user_id=tricky)
    assert [session.id for session in listed.sessions] == [created.id]


async def test_append_event_merges_the_state_delta(server: Server, sessions, user):
    session = await sessions.create_session(
        app_name=APP, user_id=user, state={"keep": 1, "nested": {"a": 1, "b": 2}}
    )
    first = user_event(
        "hello",
        actions=EventActions(state_delta={"x": 1, "user:name": "Ana", "nested": {"c": 3}, "temp:scratch": 9}),
    )
    second = model_event("hi Ana", actions=EventActions(state_delta={"x": 2, "app:theme": "dark"}))
    await sessions.append_event(session, first)
    await sessions.append_event(session, second)

    expected = {"keep": 1, "nested": {"c": 3}, "x": 2, "user:name": "Ana", "app:theme": "dark"}
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    assert fetched.state == expected  # each key replaced whole; temp: keys never stored
    assert [event.id for event in fetched.events] == [first.id, second.id]
    assert [event.author for event in fetched.events] == ["user", "assistant_agent"]
    assert [event.invocation_id for event in fetched.events] == [first.invocation_id, second.invocation_id]
    assert [event.content.parts[0].text for event in fetched.events] == ["hello", "hi Ana"]
    assert fetched.events[0].actions.state_delta == {"x": 1, "user:name": "Ana", "nested": {"c": 3}}
    for sent, got in zip([first, second], fetched.events):
        assert got.timestamp == pytest.approx(sent.timestamp, abs=1e-3)
    assert fetched.last_update_time >= session.last_update_time

    native = server.native("GET", f"/sessions/{session.id}").json()
    assert native["state"] == expected
    assert native["event_count"] == 2


async def test_events_round_trip_function_calls(sessions, user):
    session = await sessions.create_session(app_name=APP, user_id=user)
    call = Event(
        author="agent",
        invocation_id="inv-1",
        content=types.Content(role="model", parts=[
            types.Part(function_call=types.FunctionCall(id="call-1", name="load_memory", args={"query": "coffee"}))
        ]),
        long_running_tool_ids={"call-1"},
        custom_metadata={"k": "v"},
        branch="root.agent",
    )
    response = Event(
        author="agent",
        invocation_id="inv-1",
        content=types.Content(role="user", parts=[
            types.Part(function_response=types.FunctionResponse(id="call-1", name="load_memory",
                                                                response={"memories": []}))
        ]),
    )
    await sessions.append_event(session, call)
    await sessions.append_event(session, response)
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    got_call, got_response = fetched.events
    assert got_call.id == call.id and got_response.id == response.id
    assert got_call.content.parts[0].function_call.name == "load_memory"
    assert got_call.content.parts[0].function_call.args == {"query": "coffee"}
    assert got_call.long_running_tool_ids == {"call-1"}
    assert got_call.custom_metadata == {"k": "v"}
    assert got_call.branch == "root.agent"
    assert got_response.content.parts[0].function_response.response == {"memories": []}


async def test_get_session_config_num_recent_events_and_after_timestamp(sessions, user):
    session = await sessions.create_session(app_name=APP, user_id=user)
    start = time.time() - 300
    events = [user_event(f"message {n}", timestamp=start + 10 * n) for n in range(4)]
    for event in events:
        await sessions.append_event(session, event)

    async def ids(config):
        fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id, config=config)
        return [event.id for event in fetched.events]

    all_ids = [event.id for event in events]
    assert await ids(None) == all_ids
    assert await ids(GetSessionConfig(num_recent_events=2)) == all_ids[-2:]
    assert await ids(GetSessionConfig(num_recent_events=0)) == []
    assert await ids(GetSessionConfig(after_timestamp=start + 15)) == all_ids[2:]
    # `timestamp>=`: an event at exactly the bound is kept.
    assert await ids(GetSessionConfig(after_timestamp=start + 10)) == all_ids[1:]
    assert await ids(GetSessionConfig(after_timestamp=start + 15, num_recent_events=1)) == all_ids[-1:]
    assert await ids(GetSessionConfig(after_timestamp=time.time() + 3600)) == []


async def test_many_events_are_all_read_back_in_order(sessions, user):
    """ADK reads every page of events; the server pages them (100 a page by default)."""
    session = await sessions.create_session(app_name=APP, user_id=user)
    events = [user_event(f"m{n}", timestamp=time.time() - 1000 + n) for n in range(130)]
    for event in events:
        await sessions.append_event(session, event)
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    assert [event.id for event in fetched.events] == [event.id for event in events]


async def test_delete_session(server: Server, sessions, user):
    session = await sessions.create_session(app_name=APP, user_id=user)
    await sessions.append_event(session, user_event("bye"))
    with pytest.raises(ValueError, match="does not belong"):
        await sessions.delete_session(app_name=APP, user_id=unique("intruder"), session_id=session.id)
    assert await sessions.get_session(app_name=APP, user_id=user, session_id=session.id) is not None

    await sessions.delete_session(app_name=APP, user_id=user, session_id=session.id)
    assert await sessions.get_session(app_name=APP, user_id=user, session_id=session.id) is None
    assert (await sessions.list_sessions(app_name=APP, user_id=user)).sessions == []
    server.native("GET", f"/sessions/{session.id}", expect=404)
    # Deleting what is gone is a no-op for ADK (the ownership check reads 404).
    await sessions.delete_session(app_name=APP, user_id=user, session_id=session.id)


async def test_delete_a_session_with_a_chosen_id(server: Server, sessions, user):
    session_id = unique("chosen")
    await sessions.create_session(app_name=APP, user_id=user, session_id=session_id)
    await sessions.delete_session(app_name=APP, user_id=user, session_id=session_id)
    assert await sessions.get_session(app_name=APP, user_id=user, session_id=session_id) is None
    assert server.native_sessions(user) == []
    # The id is free again.
    again = await sessions.create_session(app_name=APP, user_id=user, session_id=session_id)
    assert again.id == session_id


async def test_full_resource_names_are_accepted_as_session_ids(sessions, user):
    created = await sessions.create_session(app_name=APP, user_id=user)
    full = f"projects/local/locations/local/reasoningEngines/default/sessions/{created.id}"
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=full)
    assert fetched is not None and fetched.id == created.id


async def test_create_with_ttl_and_expire_time(server: Server, sessions, user):
    with_ttl = await sessions.create_session(app_name=APP, user_id=user, ttl="7200s")
    native = server.native("GET", f"/sessions/{with_ttl.id}").json()
    assert native["expires_at"] is not None
    from datetime import datetime, timedelta, timezone

    expires = datetime.fromisoformat(native["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(timezone.utc)) - timedelta(hours=2)) < timedelta(minutes=2)

    at = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
    with_time = await sessions.create_session(app_name=APP, user_id=user, expire_time=at.isoformat())
    native = server.native("GET", f"/sessions/{with_time.id}").json()
    assert datetime.fromisoformat(native["expires_at"].replace("Z", "+00:00")) == at


async def test_state_written_natively_is_seen_by_adk(server: Server, sessions, user):
    created = await sessions.create_session(app_name=APP, user_id=user, state={"a": 1})
    server.native("PATCH", f"/sessions/{created.id}/state", content=json.dumps({"b": 2}),
                  headers={"Content-Type": "application/merge-patch+json"})
    fetched = await sessions.get_session(app_name=APP, user_id=user, session_id=created.id)
    assert fetched.state == {"a": 1, "b": 2}
