"""Every tool with good arguments, over Streamable HTTP and stdio, and what it did: through the
tools themselves, and over HTTP through the native API as well (`mcp.native`, the admin key).

The memories come from the server's own pipeline (rules extractor, consolidation with the
local embedding model): no LLM.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Dict, List

import contextiq
import pytest

from mcp_support import Connection, ok, problem

pytestmark = pytest.mark.asyncio(loop_scope="session")

COUNTS_ADDED = {"added": 1, "updated": 0, "deleted": 0, "unchanged": 0}
# Three facts that consolidation keeps apart.
FACTS = [
    ("User is allergic to peanuts", "USER_PERSONAL_INFO"),
    ("User plays the cello every Sunday", "USER_PREFERENCES"),
    ("User works as a marine biologist", "USER_PERSONAL_INFO"),
]


async def remember(mcp: Connection, fact: str, scope: Dict[str, str], **arguments: Any) -> Dict[str, Any]:
    """remember, checked to have added exactly this one memory; the memory."""
    outcome = ok(await mcp.call("remember", fact=fact, scope=scope, **arguments))
    assert outcome["status"] == "completed" and outcome["counts"] == COUNTS_ADDED, outcome
    [memory] = outcome["memories"]
    assert memory["fact"] == fact and memory["scope"] == scope
    return memory


async def listed_ids(mcp: Connection, scope: Dict[str, str]) -> List[str]:
    page = ok(await mcp.call("list_memories", scope=scope, limit=100))
    assert page["next_cursor"] is None
    return [memory["id"] for memory in page["memories"]]


async def test_remember_adds_a_fact_once(mcp: Connection) -> None:
    scope = mcp.narrowed()
    fact = "User is allergic to peanuts"
    first = ok(await mcp.call("remember", fact=fact, topic="USER_PERSONAL_INFO", scope=scope))
    assert first["status"] == "completed", first
    assert first["counts"] == COUNTS_ADDED and first["facts_extracted"] == 1 and first["events_processed"] == 0
    assert "note" not in first and "error" not in first
    [memory] = first["memories"]
    assert memory["fact"] == fact and memory["scope"] == scope and memory["topic"] == "USER_PERSONAL_INFO"
    assert memory["source_session_id"] is None

    # The same fact again: consolidation finds it known and changes nothing.
    second = ok(await mcp.call("remember", fact=fact, topic="USER_PERSONAL_INFO", scope=scope))
    assert second["status"] == "completed" and second["job_id"] != first["job_id"]
    assert second["counts"] == {"added": 0, "updated": 0, "deleted": 0, "unchanged": 1}
    assert second["memories"] == []

    assert await listed_ids(mcp, scope) == [memory["id"]]
    if mcp.native is not None:
        [stored] = mcp.native.memories.list(scope).memories
        assert (stored.id, stored.fact, stored.topic, stored.scope) == (memory["id"], fact, "USER_PERSONAL_INFO", scope)
        job = mcp.native.jobs.get(first["job_id"])
        assert job.status == "completed" and job.memories_added == [memory["id"]] and job.scope == scope
        assert mcp.native.jobs.get(second["job_id"]).counts.unchanged == 1


async def test_remember_without_waiting_returns_the_queued_job(mcp: Connection) -> None:
    scope = mcp.narrowed()
    queued = ok(await mcp.call("remember", fact="User speaks fluent Finnish", scope=scope, wait_seconds=0))
    assert queued["status"] in ("pending", "running") and queued["memories"] == []
    assert queued["job_id"] in queued["note"] and "get_job" in queued["note"]
    # get_job reports it until it is done.
    for _ in range(200):
        job = ok(await mcp.call("get_job", job_id=queued["job_id"]))["job"]
        if job["status"] not in ("pending", "running"):
            break
        await asyncio.sleep(0.05)
    assert job["id"] == queued["job_id"] and job["status"] == "completed", job
    [memory_id] = job["memories_added"]
    assert await listed_ids(mcp, scope) == [memory_id]


async def test_recall_finds_the_memory_with_a_score(mcp: Connection) -> None:
    scope = mcp.narrowed()
    memories = [await remember(mcp, fact, scope, topic=topic) for fact, topic in FACTS]
    cello = memories[1]

    found = ok(await mcp.call("recall", query="Which musical instrument does the user play?", scope=scope))
    results = found["results"]
    assert 1 <= len(results) <= 3
    assert results[0]["memory"]["id"] == cello["id"] and results[0]["memory"]["fact"] == cello["fact"]
    scores = [result["score"] for result in results]
    assert all(isinstance(score, float) and score > 0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(result["memory"]["scope"] == scope for result in results)

    top = ok(await mcp.call("recall", query="peanut allergy", scope=scope, top_k=1))["results"]
    assert [result["memory"]["id"] for result in top] == [memories[0]["id"]]
    # Only the topic's memories.
    of_topic = ok(await mcp.call("recall", query="cello", scope=scope, topic="USER_PERSONAL_INFO"))["results"]
    assert of_topic and all(r["memory"]["topic"] == "USER_PERSONAL_INFO" for r in of_topic)
    assert cello["id"] not in [r["memory"]["id"] for r in of_topic]
    # Another scope holds none of them.
    assert ok(await mcp.call("recall", query="cello", scope=mcp.narrowed()))["results"] == []

    if mcp.native is not None:
        native = mcp.native.memories.search(scope, "Which musical instrument does the user play?")
        assert native.results[0].memory.id == cello["id"]


async def test_recall_filters_by_when_it_was_said_and_weighs_recency(mcp: Connection) -> None:
    scope = mcp.narrowed()
    older, newer = [await remember(mcp, fact, scope, topic=topic) for fact, topic in FACTS[:2]]
    assert datetime.fromisoformat(older["said_at"]) < datetime.fromisoformat(newer["said_at"])
    query = "What is the user allergic to?"

    def ids(results: List[Dict[str, Any]]) -> List[str]:
        return [result["memory"]["id"] for result in results]

    everything = ok(await mcp.call("recall", query=query, scope=scope))["results"]
    assert ids(everything)[0] == older["id"] and set(ids(everything)) == {older["id"], newer["id"]}
    # said_after and said_before are strict bounds on said_at.
    after = ok(await mcp.call("recall", query=query, scope=scope, said_after=older["said_at"]))["results"]
    assert ids(after) == [newer["id"]]
    before = ok(await mcp.call("recall", query=query, scope=scope, said_before=newer["said_at"]))["results"]
    assert ids(before) == [older["id"]]
    window = ok(await mcp.call("recall", query=query, scope=scope, said_after=older["said_at"],
                               said_before=newer["said_at"]))["results"]
    assert window == []

    # Recency alone: every memory is a moment old, so each scores about 1 whatever its relevance,
    # where relevance alone scores the weaker match well below the best.
    assert everything[-1]["score"] < 0.9
    recent = ok(await mcp.call("recall", query=query, scope=scope, recency_weight=1.0,
                               recency_half_life_days=365))["results"]
    assert set(ids(recent)) == {older["id"], newer["id"]}
    assert all(result["score"] > 0.999 for result in recent), recent
    # A half-life without a weight weighs nothing: the same scores as relevance alone.
    unweighted = ok(await mcp.call("recall", query=query, scope=scope, recency_half_life_days=7))["results"]
    assert [(r["memory"]["id"], r["score"]) for r in unweighted] == [(r["memory"]["id"], r["score"]) for r in everything]


async def test_list_memories_pages_with_next_cursor(mcp: Connection) -> None:
    scope = mcp.narrowed()
    memories = [await remember(mcp, fact, scope, topic=topic) for fact, topic in FACTS]
    newest_first = [memory["id"] for memory in reversed(memories)]

    first = ok(await mcp.call("list_memories", scope=scope, limit=1))
    assert [m["id"] for m in first["memories"]] == newest_first[:1]
    assert isinstance(first["next_cursor"], str) and first["next_cursor"]
    second = ok(await mcp.call("list_memories", scope=scope, limit=1, cursor=first["next_cursor"]))
    assert [m["id"] for m in second["memories"]] == newest_first[1:2]

    # Page after page, every memory once, newest first.
    seen = [m["id"] for m in first["memories"] + second["memories"]]
    cursor = second["next_cursor"]
    while cursor:
        page = ok(await mcp.call("list_memories", scope=scope, limit=1, cursor=cursor))
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        assert len(seen) <= 3
    assert seen == newest_first
    assert await listed_ids(mcp, scope) == newest_first

    topic = ok(await mcp.call("list_memories", scope=scope, topic="USER_PREFERENCES"))
    assert [m["id"] for m in topic["memories"]] == [memories[1]["id"]] and topic["next_cursor"] is None

    if mcp.native is not None:
        assert [m.id for m in mcp.native.memories.list(scope).memories] == newest_first


async def test_memory_history_shows_the_update_and_the_forget(mcp: Connection) -> None:
    scope = mcp.narrowed()
    created = await remember(mcp, "User lives in Porto", scope)
    moved = ok(await mcp.call("remember", fact="User lives in Lisbon", scope=scope))
    assert moved["counts"] == {"added": 0, "updated": 1, "deleted": 0, "unchanged": 0}, moved
    [updated] = moved["memories"]
    assert updated["id"] == created["id"] and updated["fact"] == "User lives in Lisbon"

    history = ok(await mcp.call("memory_history", memory_id=created["id"]))["revisions"]
    assert [r["action"] for r in history] == ["created", "updated"]
    assert all(r["memory_id"] == created["id"] for r in history)
    assert history[0]["before"] is None and history[0]["after"]["fact"] == "User lives in Porto"
    assert (history[1]["before"]["fact"], history[1]["after"]["fact"]) == ("User lives in Porto", "User lives in Lisbon")
    assert history[1]["job_id"] == moved["job_id"] and history[1]["cause"]["reason"]

    forgotten = ok(await mcp.call("forget", memory_id=created["id"]))["forgotten"]
    assert forgotten["id"] == created["id"] and forgotten["fact"] == "User lives in Lisbon"

    history = ok(await mcp.call("memory_history", memory_id=created["id"]))["revisions"]
    assert [r["action"] for r in history] == ["created", "updated", "deleted"]
    assert history[2]["before"]["fact"] == "User lives in Lisbon"

    if mcp.native is not None:
        revisions = mcp.native.memories.revisions(created["id"]).revisions
        assert [(r.id, r.action) for r in revisions] == [(r["id"], r["action"]) for r in history]


async def test_forget_removes_the_memory(mcp: Connection) -> None:
    scope = mcp.narrowed()
    memories = [await remember(mcp, fact, scope, topic=topic) for fact, topic in FACTS]
    peanuts = memories[0]
    found = ok(await mcp.call("recall", query="peanut allergy", scope=scope))["results"]
    assert found[0]["memory"]["id"] == peanuts["id"]

    forgotten = ok(await mcp.call("forget", memory_id=peanuts["id"]))["forgotten"]
    assert forgotten == {**peanuts, "updated_at": forgotten["updated_at"]}

    found = ok(await mcp.call("recall", query="peanut allergy", scope=scope))["results"]
    assert peanuts["id"] not in [r["memory"]["id"] for r in found] and len(found) == 2
    assert await listed_ids(mcp, scope) == [memories[2]["id"], memories[1]["id"]]
    # Gone: forgetting it again finds nothing.
    problem(await mcp.call("forget", memory_id=peanuts["id"]), 404, "memory_not_found")

    if mcp.native is not None:
        with pytest.raises(contextiq.NotFoundError):
            mcp.native.memories.get(peanuts["id"])
        assert [m.id for m in mcp.native.memories.list(scope).memories] == [memories[2]["id"], memories[1]["id"]]


async def test_record_turns_then_generate_memories_then_get_job(mcp: Connection) -> None:
    scope = mcp.narrowed()
    recorded = ok(await mcp.call("record_turns", scope=scope, agent_id="travel-agent", turns=[
        {"role": "user", "content": "I live in Porto"},
        {"role": "assistant", "content": "Noted, Porto."},
    ]))
    session_id = recorded["session_id"]
    events = recorded["events"]
    assert [(e["seq"], e["role"], e["author"], e["content"]) for e in events] == [
        (1, "user", "user", "I live in Porto"), (2, "assistant", "assistant", "Noted, Porto.")]
    assert all(e["session_id"] == session_id for e in events)

    # Appended to the same session, in order.
    appended = ok(await mcp.call("record_turns", session_id=session_id, turns=[
        {"role": "user", "content": "I am allergic to peanuts"},
        {"role": "tool", "content": {"restaurants": ["Casa Guedes"]}, "author": "search"},
    ]))
    assert appended["session_id"] == session_id
    assert [(e["seq"], e["role"], e["author"], e["content"]) for e in appended["events"]] == [
        (3, "user", "user", "I am allergic to peanuts"), (4, "tool", "search", {"restaurants": ["Casa Guedes"]})]

    generated = ok(await mcp.call("generate_memories", session_id=session_id))
    assert generated["status"] == "completed", generated
    # Four events, three turns: the tool's result holds no text.
    assert generated["events_processed"] == 3 and generated["facts_extracted"] >= 2
    assert generated["counts"]["added"] == len(generated["memories"]) >= 2
    facts = {memory["fact"]: memory for memory in generated["memories"]}
    assert {"User lives in Porto", "User is allergic to peanuts"} <= set(facts), facts
    for memory in generated["memories"]:
        assert memory["scope"] == scope and memory["source_session_id"] == session_id
    user_event_ids = {e["content"]: e["id"] for e in events + appended["events"] if e["role"] == "user"}
    assert facts["User lives in Porto"]["source_event_ids"] == [user_event_ids["I live in Porto"]]

    job = ok(await mcp.call("get_job", job_id=generated["job_id"]))["job"]
    assert job["id"] == generated["job_id"] and job["status"] == "completed"
    assert job["source_type"] == "session" and job["source_reference"] == session_id and job["scope"] == scope
    assert job["counts"] == generated["counts"] and job["events_processed"] == 3
    assert sorted(job["memories_added"]) == sorted(m["id"] for m in generated["memories"])

    # Nothing new in the session: a second generation reads no event.
    again = ok(await mcp.call("generate_memories", session_id=session_id))
    assert again["status"] == "completed" and again["events_processed"] == 0 and again["memories"] == []

    found = ok(await mcp.call("recall", query="peanuts", scope=scope))["results"]
    assert found[0]["memory"]["fact"] == "User is allergic to peanuts"

    if mcp.native is not None:
        session = mcp.native.sessions.get(session_id)
        assert session.scope == scope and session.user_id == scope["user_id"] and session.agent_id == "travel-agent"
        assert [e.content for e in session.events or []] == [
            "I live in Porto", "Noted, Porto.", "I am allergic to peanuts", {"restaurants": ["Casa Guedes"]}]
        native_job = mcp.native.jobs.get(generated["job_id"])
        assert native_job.status == "completed" and sorted(native_job.memories_added) == sorted(job["memories_added"])
        assert {m.fact for m in mcp.native.memories.list(scope).memories} == set(facts)


async def test_without_a_scope_the_tools_act_on_the_credentials_own(mcp: Connection) -> None:
    # Writes in the credential's own scope (the others narrow it, but for the resources test).
    remembered = ok(await mcp.call("remember", fact="User prefers window seats on trains"))
    [memory] = remembered["memories"]
    assert memory["scope"] == mcp.scope

    # Exactly that scope: the memories of narrower scopes (other tests') are not in it.
    listed = ok(await mcp.call("list_memories"))
    assert memory["id"] in [m["id"] for m in listed["memories"]]
    assert all(m["scope"] == mcp.scope for m in listed["memories"])
    found = ok(await mcp.call("recall", query="seat on the train"))["results"]
    assert found[0]["memory"]["id"] == memory["id"]
    assert all(r["memory"]["scope"] == mcp.scope for r in found)

    recorded = ok(await mcp.call("record_turns", turns=[{"role": "user", "content": "Hello"}]))
    if mcp.native is not None:
        session = mcp.native.sessions.get(recorded["session_id"])
        assert session.scope == mcp.scope and session.user_id == mcp.scope["user_id"]
        assert memory["id"] in [m.id for m in mcp.native.memories.list(mcp.scope).memories]
