"""Rewinds cross between ADK and the server both ways: `Runner.rewind_async` is stored as a
rewind event, so the server's own context assembly leaves the rewound turns out as ADK does;
and a rewind made through the native API reaches ADK as ADK's own, so the next `Runner` turn
does not show the model the rewound turns."""

from __future__ import annotations

from google.adk.agents import LlmAgent
from google.adk.runners import Runner

from contextiq_adk import ContextIQSessionService
from support import Server, unique
from test_runner import StubModel, request_text, run_turn

APP = "rewind_app"


def context_text(server: Server, native_id: str, engine: str) -> str:
    body = {"budget_tokens": 4000, "memory_top_k": 0}
    return server.native("POST", f"/sessions/{native_id}/context", engine=engine, json=body).json()["text"]


async def test_an_adk_rewind_is_a_rewind_for_the_server(server: Server):
    engine = unique("rewind")
    sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    model = StubModel(requests=[])
    runner = Runner(agent=LlmAgent(name="assistant", model=model), app_name=APP, session_service=sessions)
    user = unique("user")
    session = await sessions.create_session(app_name=APP, user_id=user)
    await run_turn(runner, user, session.id, "My name is Maria.")
    second = await run_turn(runner, user, session.id, "I live in Berlin.")
    await run_turn(runner, user, session.id, "I am a pilot.")

    await runner.rewind_async(user_id=user, session_id=session.id, rewind_before_invocation_id=second[0].invocation_id)

    native = server.native_session_by_name(user, session.id, engine=engine)
    rewinds = [event for event in native["events"] if event["kind"] == "rewind"]
    assert len(rewinds) == 1, native["events"]
    assert rewinds[0]["rewind"] == {"to_seq": 2, "before_invocation_id": second[0].invocation_id}, rewinds[0]
    text = context_text(server, native["id"], engine)
    assert "My name is Maria." in text, text
    assert "Berlin" not in text and "pilot" not in text, text


async def test_a_native_rewind_reaches_adk_as_its_own(server: Server):
    engine = unique("rewind")
    sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    model = StubModel(requests=[])
    runner = Runner(agent=LlmAgent(name="assistant", model=model), app_name=APP, session_service=sessions)
    user = unique("user")
    session = await sessions.create_session(app_name=APP, user_id=user, state={"step": 0})
    await run_turn(runner, user, session.id, "My name is Maria.")
    await run_turn(runner, user, session.id, "I live in Berlin.")
    native = server.native_session_by_name(user, session.id, engine=engine)
    assert native["event_count"] == 4, native["events"]

    rewound = server.native("POST", f"/sessions/{native['id']}/rewind", engine=engine, expect=201,
                            json={"to_seq": 2}).json()
    assert rewound["event_count"] == 5, rewound

    stored = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    marker = stored.events[-1]
    assert marker.actions.rewind_before_invocation_id == stored.events[2].invocation_id, marker

    model.requests.clear()
    await run_turn(runner, user, session.id, "Where do I live?")
    sent = request_text(model.requests[0])
    assert "My name is Maria." in sent, sent
    assert "Berlin" not in sent, "the rewound turn is not sent to the model"
    assert "Where do I live?" in sent
