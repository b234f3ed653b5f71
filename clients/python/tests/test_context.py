"""Context engineering through the SDK: token counts, state deltas, compaction (on request and
by policy), a context within a budget, and the live streams of events and jobs."""

from __future__ import annotations

import threading
import time
import pytest

import contextiq
from contextiq import Context, Event, Job, NotFoundError, ValidationError

MISSING = "0190b8a4-0000-7000-8000-000000000001"


def conversation(n: int) -> list:
    return [{"author": "user" if seq % 2 else "agent", "role": "user" if seq % 2 else "assistant",
             "content": f"Turn {seq}: the train to Lisbon leaves Hamburg at {seq}:15."} for seq in range(1, n + 1)]


def test_token_counts_state_deltas_and_the_compaction_status(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user, state={"step": 0},
                                     compaction_policy={"every_events": 50, "keep_recent_events": 2})
    assert session.compaction.policy == {"every_events": 50, "token_threshold": None, "keep_recent_events": 2}
    event = client.sessions.append(session.id, author="user", content="Hello, world!", state_delta={"step": 1})
    assert isinstance(event, Event) and event.token_count == 4 and event.kind == "message"
    assert event.actions.state_delta == {"step": 1} and event.compaction is None
    read = client.sessions.get(session.id, include_events=False)
    assert read.state == {"step": 1} and read.token_count == 4
    assert (read.compaction.through_seq, read.compaction.uncompacted_events, read.compaction.uncompacted_tokens) == (0, 1, 4)


def test_compaction_and_context(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user, state={"cart": ["TP 571"]})
    client.sessions.append_many(session.id, conversation(12))
    job = client.jobs.wait(client.sessions.compact(session.id, keep_recent_events=2).id, timeout=60)
    assert isinstance(job, Job) and job.status == "completed", job.error
    assert job.compaction is not None and (job.compaction.start_seq, job.compaction.end_seq) == (1, 10)
    assert job.compaction.method == "offline" and job.compaction.tokens_after <= job.compaction.tokens_before
    summary = list(client.sessions.iter_events(session.id))[-1]
    assert summary.id == job.compaction_event_id and summary.kind == "compaction"
    assert summary.compaction == job.compaction

    context = client.sessions.context(session.id, 1000, query="train times", memory_top_k=3)
    assert isinstance(context, Context) and context.total_tokens <= 1000 and context.query == "train times"
    assert context.state is not None and context.state.state == {"cart": ["TP 571"]}
    assert [(part.start_seq, part.end_seq) for part in context.summaries] == [(1, 10)]
    assert [part.event.seq for part in context.events] == [11, 12]
    assert context.coverage.summarised == [[1, 10]] and context.coverage.verbatim_from_seq == 11
    assert context.text.endswith(context.events[-1].event.content)
    assert client.sessions.context(session.id, 1000, query="train times", memory_top_k=3) == context

    with pytest.raises(ValidationError) as refused:
        client.sessions.context(session.id, 0)
    assert refused.value.field == "budget_tokens"
    for call in (lambda: client.sessions.compact(MISSING), lambda: client.sessions.context(MISSING, 100),
                 lambda: next(client.sessions.stream_events(MISSING))):
        with pytest.raises(NotFoundError):
            call()


def test_a_stream_sends_stored_then_live_events_resumes_and_ends(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user)
    client.sessions.append_many(session.id, conversation(2))
    stream = client.sessions.stream_events(session.id, after_seq=0)
    assert [next(stream).seq, next(stream).seq] == [1, 2]

    def later() -> None:
        time.sleep(0.2)
        client.sessions.append(session.id, author="user", content="Is it on time?")

    threading.Thread(target=later).start()
    live = next(stream)
    assert live.seq == 3 and live.content == "Is it on time?"
    stream.close()

    resumed = client.sessions.stream_events(session.id, last_event_id=2)
    assert next(resumed).seq == 3
    client.sessions.delete(session.id)
    assert list(resumed) == [], "the stream ends with the session"


def test_a_job_stream_ends_with_the_finished_job(client: contextiq.ContextIQ, user: str) -> None:
    session = client.sessions.create(user)
    client.sessions.append_many(session.id, conversation(4))
    job = client.sessions.compact(session.id)
    seen = list(client.jobs.stream(job.id))
    assert seen and all(isinstance(update, Job) and update.id == job.id for update in seen)
    assert seen[-1].status == "completed" and seen[-1].compaction is not None
    with pytest.raises(NotFoundError):
        list(client.jobs.stream(MISSING))


async def test_the_async_client_compacts_assembles_and_streams(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    session = await aclient.sessions.create(user, compaction_policy={"every_events": 4, "keep_recent_events": 1})
    await aclient.sessions.append_many(session.id, conversation(6))
    stream = aclient.sessions.stream_events(session.id, after_seq=0)
    assert (await stream.__anext__()).seq == 1
    kinds = []
    async for event in stream:
        kinds.append(event.kind)
        if event.kind == "compaction":
            break
    await stream.aclose()
    assert kinds[-1] == "compaction", "the policy compacted by itself"
    context = await aclient.sessions.context(session.id, 300)
    assert context.total_tokens <= 300 and context.summaries
    with pytest.raises(NotFoundError):
        await aclient.sessions.context(MISSING, 100)
    with pytest.raises(NotFoundError):
        await aclient.sessions.stream_events(MISSING).__anext__()
