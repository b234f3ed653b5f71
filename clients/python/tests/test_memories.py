"""Memories, search and generation jobs through the SDK."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

import contextiq
from contextiq import Job, Memory, NOT_GIVEN
from support import unique


def test_generate_from_inline_events(client: contextiq.ContextIQ) -> None:
    job = client.memories.generate(source_type="events", events=[{"author": "user", "content": "I live in Lisbon"}],
                                   scope={"user_id": "u9"})
    assert isinstance(job, Job) and job.status in ("pending", "running", "completed")
    assert job.scope == {"user_id": "u9"} and job.source_type == "events" and job.extractor == "rules"
    done = client.jobs.wait(job.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.done and done.finished_at is not None and done.attempts >= 1
    assert done.events_processed == 1 and done.facts_extracted >= 1
    # Added the first time; a run of the suite on the same server would find it known.
    assert done.counts.added + done.counts.unchanged >= 1
    facts = [m.fact for m in client.memories.iter({"user_id": "u9"})]
    assert any("Lisbon" in fact for fact in facts), facts


def test_generate_updates_and_forgets(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    first = client.jobs.wait(client.memories.generate(
        source_type="events", scope=scope, events=[{"role": "user", "content": "My favourite colour is blue."}]).id)
    assert first.counts.added == 1
    second = client.jobs.wait(client.memories.generate(
        source_type="events", scope=scope, events=[{"role": "user", "content": "My favourite colour is green now."}]).id)
    assert second.counts.updated == 1 and second.memories_updated == first.memories_added
    memory = client.memories.get(first.memories_added[0])
    assert "green" in memory.fact
    revisions = client.memories.revisions(memory.id)
    assert [r.action for r in revisions] == ["created", "updated"]
    assert revisions[1].job_id == second.id and revisions[1].cause is not None
    # Restore undoes the job's change.
    restored = client.memories.restore(memory.id, revisions[0].id)
    assert isinstance(restored, Memory) and "blue" in restored.fact


def test_generate_direct_facts(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    job = client.memories.generate(source_type="memories", scope=scope, memories=[
        {"fact": "Prefers window seats", "topic": "USER_PREFERENCES"},
        {"fact": "Travels with a dog", "topic": "USER_PERSONAL_INFO", "confidence": 0.8},
    ])
    done = client.jobs.wait(job.id)
    assert done.status == "completed" and done.counts.added == 2
    again = client.jobs.wait(client.memories.generate(source_type="memories", scope=scope,
                                                      memories=[{"fact": "Prefers window seats"}]).id)
    assert again.counts.unchanged == 1 and again.counts.added == 0


def test_create_with_consolidation_is_a_job(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    kept = client.memories.create(scope, "Speaks Portuguese")
    job = client.memories.create(scope, "Speaks Portuguese", consolidate=True)
    assert isinstance(job, Job)
    done = client.jobs.wait(job.id)
    assert done.counts.unchanged == 1 and done.counts.added == 0
    assert [m.id for m in client.memories.list(scope)] == [kept.id]


def test_update_leaves_absent_fields_and_clears_null(client: contextiq.ContextIQ, user: str) -> None:
    memory = client.memories.create({"user_id": user}, "Runs marathons", topic="USER_PERSONAL_INFO", confidence=0.7,
                                    metadata={"k": "v"}, ttl_seconds=3600)
    assert memory.expires_at is not None and memory.confidence == pytest.approx(0.7)
    updated = client.memories.update(memory.id, confidence=0.9)
    assert isinstance(updated, Memory)
    assert updated.topic == "USER_PERSONAL_INFO" and updated.metadata == {"k": "v"} and updated.expires_at is not None
    cleared = client.memories.update(memory.id, topic=None, expires_at=None, fact=NOT_GIVEN)
    assert isinstance(cleared, Memory) and cleared.topic is None and cleared.expires_at is None
    assert cleared.fact == "Runs marathons"
    same = client.memories.update(memory.id, confidence=0.9)
    assert isinstance(same, Memory) and same.updated_at == cleared.updated_at
    assert len(client.memories.revisions(memory.id)) == 3


def test_list_filters(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    a = client.memories.create(scope, "Likes jazz", topic="USER_PREFERENCES")
    b = client.memories.create(scope, "Lives in Porto", topic="USER_PERSONAL_INFO")
    assert [m.id for m in client.memories.list(scope, topic="USER_PREFERENCES")] == [a.id]
    assert [m.id for m in client.memories.list(scope, created_after=a.created_at)] == [b.id]
    assert [m.id for m in client.memories.list(scope, created_before=b.created_at)] == [a.id]
    assert client.memories.list({"user_id": unique("nobody")}).memories == []


def test_search(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    peanuts = client.memories.create(scope, "Allergic to peanuts", topic="USER_PERSONAL_INFO",
                                     metadata={"source": "onboarding"})
    client.memories.create(scope, "Favourite city is Lisbon", topic="USER_PREFERENCES")
    client.memories.create(scope, "Works as a nurse", topic="USER_PERSONAL_INFO", metadata={"source": "chat"})
    client.memories.create({"user_id": unique("other")}, "Allergic to peanuts")
    results = client.memories.search(scope, "food allergy peanuts", top_k=3)
    assert len(results) == 3 and results[0].memory.id == peanuts.id
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert all(r.memory.scope == scope for r in results)
    assert len(client.memories.search(scope, "food allergy", top_k=1)) == 1
    filtered = client.memories.search(scope, "anything about the user", filter={"metadata": {"source": "chat"}})
    assert [r.memory.fact for r in filtered] == ["Works as a nurse"]
    topical = client.memories.search(scope, "city", filter={"topic": "USER_PREFERENCES",
                                                             "created_after": peanuts.created_at})
    assert [m.fact for m in topical.memories] == ["Favourite city is Lisbon"]
    assert client.memories.search({"user_id": unique("empty")}, "peanuts").results == []


def test_said_at_filters_and_recency(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    old = client.memories.create(scope, "User's favourite tea is green tea", said_at="2020-03-01T08:00:00Z")
    assert old.said_at == datetime(2020, 3, 1, 8, tzinfo=timezone.utc) and old.created_at > old.said_at
    new = client.memories.create(scope, "User's favourite tea is black tea")
    assert new.said_at == new.created_at
    assert [m.id for m in client.memories.list(scope, said_before="2021-01-01T00:00:00Z")] == [old.id]
    assert [m.id for m in client.memories.iter(scope, said_after=datetime(2021, 1, 1, tzinfo=timezone.utc))] == [new.id]
    later = client.memories.search(scope, "green tea", filter={"said_after": "2021-01-01T00:00:00Z"})
    assert [r.memory.id for r in later] == [new.id]
    assert client.memories.search(scope, "green tea")[0].memory.id == old.id
    recent = client.memories.search(scope, "green tea", recency_weight=0.9)
    assert [r.memory.id for r in recent] == [new.id, old.id]
    slow = client.memories.search(scope, "green tea", recency_weight=0.3, recency_half_life_days=36525)
    assert slow[0].memory.id == old.id
    moved = client.memories.update(old.id, said_at="2019-05-05T05:05:05Z")
    assert isinstance(moved, Memory) and moved.said_at == datetime(2019, 5, 5, 5, 5, 5, tzinfo=timezone.utc)
    with pytest.raises(contextiq.ValidationError) as refused:
        client.memories.search(scope, "tea", recency_half_life_days=0)
    assert refused.value.field == "recency_half_life_days"


async def test_async_said_at_and_recency(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    scope = {"user_id": user}
    old = await aclient.memories.create(scope, "User plays the cello", said_at="2020-03-01T08:00:00Z")
    new = await aclient.memories.create(scope, "User plays the violin")
    listed = await aclient.memories.list(scope, said_before="2021-01-01T00:00:00Z")
    assert [m.id for m in listed] == [old.id]
    recent = await aclient.memories.search(scope, "cello", recency_weight=0.9)
    assert [r.memory.id for r in recent][0] == new.id
    moved = await aclient.memories.update(old.id, said_at="2019-05-05T05:05:05Z")
    assert isinstance(moved, Memory) and moved.said_at.year == 2019


def test_profile(client: contextiq.ContextIQ, user: str) -> None:
    scope = {"user_id": user}
    job = client.memories.generate(source_type="events", scope=scope, events=[
        {"role": "user", "content": "Hi, I'm Maria. I live in Berlin and I work as a nurse."},
        {"role": "user", "content": "My favourite colour is blue."},
    ])
    assert client.jobs.wait(job.id, timeout=60).status == "completed"
    moved = client.memories.generate(source_type="events", scope=scope, events=[
        {"role": "user", "content": "I moved to Hamburg last month."},
    ])
    assert client.jobs.wait(moved.id, timeout=60).status == "completed"
    profile = client.memories.profile(scope)
    assert isinstance(profile, contextiq.Profile) and profile.scope == scope
    assert profile.get("name") == "Maria" and profile.get("residence") == "Hamburg"
    assert profile.get("occupation") == "a nurse" and profile.get("favourite colour") == "blue"
    assert profile.get("shoe size") is None
    residence = next(entry for entry in profile if entry.attribute == "residence")
    assert client.memories.get(residence.memory_id).fact == residence.fact == "User lives in Hamburg"
    assert [entry.attribute for entry in profile] == sorted(entry.attribute for entry in profile)
    assert client.memories.profile({"user_id": unique("empty")}).attributes == []
    with pytest.raises(contextiq.ValidationError):
        client.memories.profile({})


def test_wait_times_out() -> None:
    pending = {"id": "0198c1a2-0000-7000-8000-000000000001", "status": "pending", "source_type": "events",
               "scope": {"user_id": "u"}, "extractor": "rules", "attempts": 0, "max_attempts": 3,
               "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "events_processed": 0,
               "more_events_pending": False, "facts_extracted": 0, "memories_added": [], "memories_updated": [],
               "memories_deleted": [], "counts": {"added": 0, "updated": 0, "deleted": 0, "unchanged": 0},
               "llm_usage": {}}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=pending))
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        with pytest.raises(TimeoutError):
            client.jobs.wait(pending["id"], timeout=0.3, poll_interval=0.05)


async def test_async_generation_and_search(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    scope = {"user_id": user}
    job = await aclient.memories.generate(source_type="events", scope=scope, events=[
        {"author": "user", "content": "I live in Lisbon"},
        {"author": "user", "content": "I am vegetarian."},
    ], config={"disable_consolidation": True, "metadata": {"origin": "chat"}})
    done = await aclient.jobs.wait(job.id, timeout=60)
    assert done.status == "completed" and done.counts.added == 2
    results = await aclient.memories.search(scope, "where do they live?", top_k=1)
    assert "Lisbon" in results[0].memory.fact and results[0].memory.metadata == {"origin": "chat"}
    assert (await aclient.memories.profile(scope)).get("residence") == "Lisbon"
    consolidated = await aclient.memories.create(scope, "Lives in Lisbon", consolidate=True)
    assert isinstance(consolidated, Job)
    assert (await aclient.jobs.wait(consolidated.id)).status == "completed"
