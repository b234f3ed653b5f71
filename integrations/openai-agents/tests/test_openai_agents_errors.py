"""What goes wrong raises a `ContextIQSessionError` that says what and where."""

from __future__ import annotations

import pytest
from agents import Agent, Runner

import contextiq
from contextiq_openai_agents import ContextIQSession, ContextIQSessionError, SessionAccessError, SessionNotFoundError
from openai_agents_support import StubModel, mapped_sessions, text_output, unique, user_message

MISSING_UUID = "0198c1a2-0000-7000-8000-000000000000"


async def test_create_false_needs_an_existing_session(make_session, native, user):
    session_id = unique("chat")
    strict = make_session(session_id, user_id=user, create=False)
    for call in (strict.get_items(), strict.add_items([user_message("x")]), strict.pop_item(),
                 strict.clear_session()):
        with pytest.raises(SessionNotFoundError) as raised:
            await call
        assert session_id in str(raised.value) and user in str(raised.value)
        assert raised.value.code == "session_not_found"
    assert mapped_sessions(native, user, session_id) == []
    # Once another instance created it, create=False finds it.
    await make_session(session_id, user_id=user).add_items([user_message("hello")])
    assert await strict.get_items() == [user_message("hello")]


async def test_create_false_does_not_recreate_a_deleted_session(make_session, native, user):
    session_id = unique("chat")
    await make_session(session_id, user_id=user).add_items([user_message("hello")])
    strict = make_session(session_id, user_id=user, create=False)
    assert await strict.get_items() == [user_message("hello")]
    native.sessions.delete(strict.contextiq_session_id)
    with pytest.raises(SessionNotFoundError):
        await strict.add_items([user_message("again")])
    assert mapped_sessions(native, user, session_id) == []


async def test_a_missing_given_session_is_not_found(make_session, native, user):
    session = make_session("chat", user_id=user, contextiq_session_id=MISSING_UUID)
    with pytest.raises(SessionNotFoundError) as raised:
        await session.get_items()
    assert MISSING_UUID in str(raised.value) and raised.value.status == 404
    assert isinstance(raised.value.__cause__, contextiq.NotFoundError)
    # A given session deleted after first use stays gone: never silently replaced.
    record = native.sessions.create(user)
    bound = make_session("chat", user_id=user, contextiq_session_id=record.id)
    await bound.add_items([user_message("x")])
    native.sessions.delete(record.id)
    with pytest.raises(SessionNotFoundError):
        await bound.add_items([user_message("y")])


async def test_a_given_session_of_another_user_is_refused(make_session, native, user):
    record = native.sessions.create(unique("someone-else"))
    session = make_session("chat", user_id=user, contextiq_session_id=record.id)
    with pytest.raises(SessionAccessError) as raised:
        await session.get_items()
    assert "belongs to user" in str(raised.value)
    assert list(native.sessions.iter_events(record.id)) == []


async def test_a_key_limited_to_another_user_is_forbidden(make_session, server, native):
    key = server.scoped_key({"user_id": "u1"})
    session_id = unique("chat")
    other = make_session(session_id, user_id=unique("u2"), api_key=key)
    for call in (other.get_items(), other.add_items([user_message("x")])):
        with pytest.raises(SessionAccessError) as raised:
            await call
        assert (raised.value.status, raised.value.code) == (403, "forbidden")
        assert "scope" in str(raised.value) and session_id in str(raised.value)
        assert isinstance(raised.value.__cause__, contextiq.PermissionDeniedError)
    # The same key works for its own user ...
    own = make_session(session_id, user_id="u1", api_key=key)
    await own.add_items([user_message("mine")])
    assert await own.get_items() == [user_message("mine")]
    # ... and cannot reach another user's session even by its id.
    record = native.sessions.create(unique("u3"))
    with pytest.raises(SessionNotFoundError):
        await make_session("x", user_id="u1", api_key=key, contextiq_session_id=record.id).get_items()


async def test_a_forbidden_session_stops_a_run(make_session, server):
    key = server.scoped_key({"user_id": "u1"})
    model = StubModel([[text_output("never")]])
    with pytest.raises(SessionAccessError):
        await Runner.run(Agent(name="a", model=model), "hi",
                         session=make_session(unique("chat"), user_id=unique("u2"), api_key=key))
    assert model.inputs == []


async def test_a_read_only_key_reads_but_cannot_write(make_session, server, user):
    session_id = unique("chat")
    await make_session(session_id, user_id=user).add_items([user_message("hello")])
    key = server.scoped_key({"user_id": user}, permissions=["SESSION_READ"])
    reader = make_session(session_id, user_id=user, api_key=key)
    assert await reader.get_items() == [user_message("hello")]
    with pytest.raises(SessionAccessError) as raised:
        await reader.add_items([user_message("x")])
    assert raised.value.status == 403
    with pytest.raises(SessionAccessError):
        await reader.pop_item()
    assert await reader.get_items() == [user_message("hello")]


async def test_bad_or_missing_credentials(make_session, user):
    with pytest.raises(SessionAccessError) as raised:
        await make_session(unique("chat"), user_id=user, api_key="ck_not_a_real_key").get_items()
    assert raised.value.status == 401
    # No key at all (the root conftest removes CONTEXTIQ_API_KEY from the environment).
    with pytest.raises(SessionAccessError) as raised:
        await make_session(unique("chat"), user_id=user, api_key=None).add_items([user_message("x")])
    assert (raised.value.status, raised.value.code) == (401, "missing_credentials")


async def test_other_refusals_keep_the_servers_problem(make_session, user):
    session = make_session(unique("chat"), user_id=user, agent_id=" ")  # blank: invalid
    with pytest.raises(ContextIQSessionError) as raised:
        await session.add_items([user_message("x")])
    assert (raised.value.status, raised.value.code) == (422, "validation_failed")
    assert not isinstance(raised.value, (SessionAccessError, SessionNotFoundError))


async def test_arguments_are_checked(server):
    with pytest.raises(ValueError):
        ContextIQSession("", user_id="u")
    with pytest.raises(ValueError):
        ContextIQSession("s", user_id="")
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key) as client:
        with pytest.raises(ValueError):
            ContextIQSession("s", user_id="u", client=client, api_key="ck_x")
    with pytest.raises(ValueError):
        ContextIQSession("s", user_id="u", base_url=server.url, api_key="k", engine="not an engine!")
