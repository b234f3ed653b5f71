"""`agents.Runner` with a `ContextIQSession`: the model sees the history the server keeps."""

from __future__ import annotations

from agents import Agent, RunConfig, Runner, function_tool
from agents.memory import SessionSettings

from contextiq_openai_agents import METADATA_KEY
from openai_agents_support import StubModel, mapped_sessions, shape, text_output, tool_call_output, unique


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_two_turns_the_second_sees_the_first(make_session, native, user):
    session_id = unique("chat")
    model = StubModel([
        [tool_call_output("get_weather", '{"city": "Lisbon"}', call_id="call-lis")],
        [text_output("It is sunny in Lisbon.")],
        [text_output("You asked about Lisbon.")],
    ])
    agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[get_weather])

    first = await Runner.run(agent, "What's the weather in Lisbon?", session=make_session(session_id, user_id=user))
    assert first.final_output == "It is sunny in Lisbon."
    # A new instance (as a new request of a web app would make) finds the same conversation.
    second = await Runner.run(agent, "Which city did I ask about?", session=make_session(session_id, user_id=user))
    assert second.final_output == "You asked about Lisbon."

    turn_one = [
        ("message", "user", "What's the weather in Lisbon?"),
        ("function_call", "get_weather", '{"city": "Lisbon"}', "call-lis"),
        ("function_call_output", "call-lis", "sunny in Lisbon"),
        ("message", "assistant", "It is sunny in Lisbon."),
    ]
    assert [shape(item) for item in model.inputs[0]] == turn_one[:1]
    assert [shape(item) for item in model.inputs[1]] == turn_one[:3]
    assert [shape(item) for item in model.inputs[2]] == turn_one + [("message", "user", "Which city did I ask about?")]

    # The native API holds the conversation: one event per item, readable roles and authors.
    [record] = mapped_sessions(native, user, session_id)
    events = list(native.sessions.iter_events(record.id))
    assert [shape(e.content) for e in events] == turn_one + [
        ("message", "user", "Which city did I ask about?"), ("message", "assistant", "You asked about Lisbon.")]
    assert [(e.role, e.author) for e in events] == [
        ("user", "user"), ("assistant", "get_weather"), ("tool", "get_weather"), ("assistant", "assistant"),
        ("user", "user"), ("assistant", "assistant")]
    assert all(e.metadata[METADATA_KEY]["op"] == "item" for e in events)
    assert [shape(i) for i in await make_session(session_id, user_id=user).get_items()] == [
        shape(e.content) for e in events]


async def test_session_settings_limit_what_the_model_sees(make_session, user):
    session = make_session(unique("chat"), user_id=user)
    model = StubModel([[text_output(f"answer {n}")] for n in range(3)])
    agent = Agent(name="assistant", model=model)
    for n in range(2):
        await Runner.run(agent, f"question {n}", session=session)
    await Runner.run(agent, "question 2", session=session, run_config=RunConfig(session_settings=SessionSettings(limit=2)))
    assert [shape(item) for item in model.inputs[2]] == [
        ("message", "user", "question 1"), ("message", "assistant", "answer 1"), ("message", "user", "question 2")]
    assert len(await session.get_items()) == 6


async def test_a_streamed_run_saves_its_items(make_session, user):
    session = make_session(unique("chat"), user_id=user)
    model = StubModel([[text_output("streamed answer")], [text_output("again")]])
    agent = Agent(name="assistant", model=model)
    result = Runner.run_streamed(agent, "stream this", session=session)
    async for _ in result.stream_events():
        pass
    assert result.final_output == "streamed answer"
    assert [shape(i) for i in await session.get_items()] == [
        ("message", "user", "stream this"), ("message", "assistant", "streamed answer")]
    await Runner.run(agent, "and now?", session=session)
    assert [shape(i) for i in model.inputs[1]][:2] == [
        ("message", "user", "stream this"), ("message", "assistant", "streamed answer")]


async def test_remember_after_a_run(make_session, native, user):
    session = make_session(unique("chat"), user_id=user)
    agent = Agent(name="assistant", model=StubModel([[text_output("Good to know!")]]))
    await Runner.run(agent, "I live in Berlin.", session=session)
    job = await session.remember(wait=True)
    assert job is not None and job.status == "completed" and job.counts.added == 1
    assert any("Berlin" in m.fact for m in native.memories.iter({"user_id": user}))


def test_a_sync_program_runs_turns_in_loops_of_their_own(server, user):
    """`Runner.run_sync` and `asyncio.run` per call: the session follows the event loop."""
    import asyncio

    from contextiq_openai_agents import ContextIQSession

    session = ContextIQSession(unique("chat"), user_id=user, base_url=server.url, api_key=server.admin_key)
    model = StubModel([[text_output("one")], [text_output("two")], [text_output("three")]])
    agent = Agent(name="assistant", model=model)
    assert Runner.run_sync(agent, "first", session=session).final_output == "one"
    assert asyncio.run(Runner.run(agent, "second", session=session)).final_output == "two"
    assert Runner.run_sync(agent, "third", session=session).final_output == "three"
    assert len(asyncio.run(session.get_items())) == 6
    assert [shape(i) for i in model.inputs[2]][:4] == [
        ("message", "user", "first"), ("message", "assistant", "one"),
        ("message", "user", "second"), ("message", "assistant", "two")]
    asyncio.run(session.aclose())
