"""Compaction done by the server reaches ADK as ADK's own: a compaction event of ContextIQ
reads back through `get_session` as an `EventCompaction`, and the next `Runner` turn shows the
model the summary in place of the events it covers, with no compaction configured in ADK."""

from __future__ import annotations

from google.adk.agents import LlmAgent
from google.adk.runners import Runner

from contextiq_adk import ContextIQSessionService
from support import Server, unique, wait_for
from test_runner import StubModel, request_text, run_turn

APP = "compaction_app"


async def test_a_server_compaction_replaces_the_events_it_covers_in_the_model_request(server: Server):
    engine = unique("compaction")
    sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    model = StubModel(requests=[])
    runner = Runner(agent=LlmAgent(name="assistant", model=model), app_name=APP, session_service=sessions)
    user = unique("user")
    session = await sessions.create_session(app_name=APP, user_id=user)
    said = ["My name is Maria and I live in Hamburg.", "I am vegetarian.", "I want to visit Lisbon in May.",
            "Book me a window seat."]
    for text in said:
        await run_turn(runner, user, session.id, text)

    # Compact through the native API, keeping the newest turn (its two events) verbatim.
    native = server.native_session_by_name(user, session.id, engine=engine)
    job = server.native("POST", f"/sessions/{native['id']}/compact", engine=engine, expect=202,
                        json={"keep_recent_events": 2}).json()

    def finished():
        current = server.native("GET", f"/jobs/{job['id']}", engine=engine).json()
        return current if current["status"] in ("completed", "failed") else None

    done = wait_for(finished, timeout=30, what="the compaction job")
    assert done["status"] == "completed", done
    assert (done["compaction"]["start_seq"], done["compaction"]["end_seq"]) == (1, 6), done

    stored = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)
    compactions = [event for event in stored.events if event.actions and event.actions.compaction]
    assert len(compactions) == 1, [event.model_dump(exclude_none=True) for event in stored.events]
    compaction = compactions[0].actions.compaction
    summary = compaction.compacted_content.parts[0].text
    # The offline summary of six short events: no longer than they are, so the facts only.
    assert "User lives in Hamburg [#1]" in summary, summary
    assert compaction.start_timestamp == stored.events[0].timestamp
    assert compaction.end_timestamp == stored.events[5].timestamp

    model.requests.clear()
    await run_turn(runner, user, session.id, "What did I ask for?")
    sent = request_text(model.requests[0])
    assert "User lives in Hamburg [#1]" in sent, sent
    assert "I want to visit Lisbon in May." not in sent, "the compacted turn is not sent verbatim"
    assert "Book me a window seat." in sent, "the kept turn is"
    assert "What did I ask for?" in sent
