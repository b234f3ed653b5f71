"""The engine option: each reasoning engine is a partition the others never see."""

from __future__ import annotations

from agents import Agent, Runner

import contextiq
from openai_agents_support import StubModel, mapped_sessions, shape, text_output, unique, user_message


async def test_engines_keep_apart_the_same_session_id(make_session, server, user):
    session_id = unique("chat")
    engine_a, engine_b = unique("eng-a"), unique("eng-b")
    in_a = make_session(session_id, user_id=user, engine=engine_a)
    in_b = make_session(session_id, user_id=user, engine=engine_b)
    default = make_session(session_id, user_id=user)
    assert (in_a.engine, in_b.engine, default.engine) == (engine_a, engine_b, None)

    await in_a.add_items([user_message("said in A")])
    assert await in_b.get_items() == []
    assert await default.get_items() == []
    await in_b.add_items([user_message("said in B")])
    assert await in_a.get_items() == [user_message("said in A")]
    assert await in_a.pop_item() == user_message("said in A")
    assert await in_b.get_items() == [user_message("said in B")]
    assert len({in_a.contextiq_session_id, in_b.contextiq_session_id, default.contextiq_session_id}) == 3

    # Natively, each is reached through its engine only.
    with server.client(engine=engine_a) as native_a, server.client() as native_default:
        [record] = mapped_sessions(native_a, user, session_id)
        assert record.id == in_a.contextiq_session_id
        assert [e.content for e in native_a.sessions.iter_events(record.id)][0] == user_message("said in A")
        try:
            native_default.sessions.get(record.id)
            raise AssertionError("the default engine sees another engine's session")
        except contextiq.NotFoundError:
            pass
        assert [s.id for s in mapped_sessions(native_default, user, session_id)] == [default.contextiq_session_id]


async def test_a_given_client_is_moved_to_the_engine(make_session, server, user):
    engine = unique("eng")
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key) as client:
        session = make_session(unique("chat"), user_id=user, client=client, engine=engine)
        assert session.engine == engine and session.client is not client and client.engine is None
        model = StubModel([[text_output("hi")]])
        await Runner.run(Agent(name="a", model=model), "hello", session=session)
        # A client already on the engine is used as is.
        on_engine = client.with_engine(engine)
        same = make_session(session.session_id, user_id=user, client=on_engine)
        assert same.client is on_engine
        assert [shape(i) for i in await same.get_items()] == [("message", "user", "hello"), ("message", "assistant", "hi")]
        assert await make_session(session.session_id, user_id=user, client=client).get_items() == []
    with server.client(engine=engine) as native:
        assert len(list(native.sessions.iter_events(session.contextiq_session_id))) == 2


async def test_remember_writes_memories_in_the_engine(make_session, server, user):
    engine = unique("eng")
    session = make_session(unique("chat"), user_id=user, engine=engine)
    await session.add_items([user_message("I live in Madrid.")])
    job = await session.remember(wait=True)
    assert job is not None and job.status == "completed" and job.counts.added == 1
    with server.client(engine=engine) as native_engine, server.client() as native_default:
        assert any("Madrid" in m.fact for m in native_engine.memories.iter({"user_id": user}))
        assert list(native_default.memories.iter({"user_id": user})) == []
