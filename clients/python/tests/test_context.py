"""Context engineering through the SDK: token counts, state deltas, compaction (on request and
by policy), a context within a budget, and the live streams of events and jobs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Iterator, List

import httpx
import pytest

import contextiq
from contextiq import Compaction, Context, Event, EventPart, Job, NotFoundError, StatePart, SummaryPart, ValidationError

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
    # A batch: each event's delta applied in order, with the events, atomically.
    batch = client.sessions.append_many(session.id, [
        {"author": "agent", "role": "assistant", "content": "Step two.", "actions": {"state_delta": {"step": 2}}},
        {"author": "user", "content": "Done?", "actions": {"state_delta": {"step": 3, "done": True}}},
    ])
    assert [event.actions.state_delta for event in batch] == [{"step": 2}, {"step": 3, "done": True}]
    read = client.sessions.get(session.id)
    assert read.state == {"step": 3, "done": True}
    assert read.events is not None and [event.actions.state_delta for event in read.events][0] == {"step": 1}
    assert read.token_count == sum(event.token_count for event in read.events) > 4


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



async def test_the_async_client_sets_state_compacts_and_reads_the_compaction(aclient: contextiq.AsyncContextIQ,
                                                                               user: str) -> None:
    policy = {"token_threshold": 100000, "keep_recent_events": 3}
    session = await aclient.sessions.create(user, compaction_policy=policy)
    assert session.compaction.policy == {"every_events": None, **policy} and session.token_count == 0
    event = await aclient.sessions.append(session.id, author="user", content="Book the 9:15 to Lisbon.",
                                          state_delta={"step": "booking", "seat": None})
    assert event.actions.state_delta == {"step": "booking", "seat": None} and event.token_count > 0
    await aclient.sessions.append_many(session.id, conversation(6))
    assert (await aclient.sessions.get(session.id, include_events=False)).state == {"step": "booking", "seat": None}

    job = await aclient.jobs.wait((await aclient.sessions.compact(session.id, keep_recent_events=2)).id)
    assert job.status == "completed" and job.source_type == "compaction", job.error
    assert isinstance(job.compaction, Compaction) and (job.compaction.start_seq, job.compaction.end_seq) == (1, 5)
    events = [event async for event in aclient.sessions.iter_events(session.id)]
    assert [event.kind for event in events] == ["message"] * 7 + ["compaction"]
    summary = events[-1]
    assert summary.id == job.compaction_event_id and summary.seq == 8 and summary.compaction == job.compaction
    assert summary.token_count == job.compaction.tokens_after and summary.role == "system"
    read = await aclient.sessions.get(session.id, include_events=False)
    assert (read.compaction.through_seq, read.compaction.uncompacted_events) == (5, 2)
    assert read.token_count == sum(event.token_count for event in events)

    context = await aclient.sessions.context(session.id, 2000, memory_top_k=0)
    assert context.budget_tokens == 2000 and context.total_tokens <= 2000 and context.tokenizer
    assert isinstance(context.state, StatePart) and context.state.state == read.state
    assert all(isinstance(part, SummaryPart) for part in context.summaries) and context.summaries[0].seq == 8
    assert all(isinstance(part, EventPart) for part in context.events) and context.memories == []
    assert [part.event.seq for part in context.events] == [6, 7] and context.coverage.verbatim_from_seq == 6
    with pytest.raises(NotFoundError) as missing:
        await aclient.sessions.compact(MISSING)
    assert missing.value.code == "session_not_found"


async def test_the_async_stream_sends_stored_then_live_events_resumes_and_ends(aclient: contextiq.AsyncContextIQ,
                                                                               user: str) -> None:
    session = await aclient.sessions.create(user)
    await aclient.sessions.append_many(session.id, conversation(2))
    stream = aclient.sessions.stream_events(session.id, after_seq=0)
    assert [(await stream.__anext__()).seq, (await stream.__anext__()).seq] == [1, 2]

    async def later() -> Event:
        await asyncio.sleep(0.2)
        return await aclient.sessions.append(session.id, author="user", content="Is it on time?",
                                             state_delta={"asked": True})

    appending = asyncio.create_task(later())
    live = await asyncio.wait_for(stream.__anext__(), 30)
    assert live == await appending and live.seq == 3 and live.actions.state_delta == {"asked": True}
    await stream.aclose()

    # Last-Event-ID wins over after_seq.
    resumed = aclient.sessions.stream_events(session.id, after_seq=0, last_event_id=2)
    assert (await resumed.__anext__()).seq == 3
    await aclient.sessions.delete(session.id)
    assert [event async for event in resumed] == [], "the stream ends with the session"

    with pytest.raises(ValidationError) as refused:
        await aclient.sessions.stream_events(session.id, after_seq=-1).__anext__()
    assert refused.value.field == "after_seq"
    with pytest.raises(NotFoundError):
        await aclient.sessions.stream_events(session.id).__anext__()


async def test_the_async_job_stream_ends_with_the_finished_job(aclient: contextiq.AsyncContextIQ, user: str) -> None:
    session = await aclient.sessions.create(user)
    await aclient.sessions.append_many(session.id, conversation(4))
    job = await aclient.sessions.compact(session.id, keep_recent_events=1)
    seen = [update async for update in aclient.jobs.stream(job.id)]
    assert seen and all(isinstance(update, Job) and update.id == job.id for update in seen)
    assert seen[-1].status == "completed" and seen[-1].compaction_event_id is not None
    assert seen[-1] == await aclient.jobs.get(job.id)
    with pytest.raises(NotFoundError) as missing:
        async for _ in aclient.jobs.stream(MISSING):
            pass
    assert missing.value.code == "job_not_found"


# Server-Sent Events as the server may send them, through a mock transport: keep-alive
# comments, CRLF line ends, lines split across chunks, a data field over several lines,
# events of other kinds; and the response closed when the caller stops early.

def _event_json(seq: int) -> str:
    return json.dumps({"id": f"0190b8a4-0000-7000-8000-00000000000{seq}", "session_id": MISSING, "seq": seq,
                       "author": "user", "role": "user", "content": f"turn {seq}", "metadata": {},
                       "timestamp": "2026-12-05T13:14:19Z", "token_count": 2, "kind": "message",
                       "actions": {"state_delta": {}}})


SSE = (": keep-alive\r\n\r\n"
       f"event: event\r\nid: 1\r\ndata: {_event_json(1)}\r\n\r\n"
       "retry: 1000\n\n"
       "event: other\ndata: {\"ignored\": true}\n\n"
       "event: event\nid: 2\ndata: " + _event_json(2).replace(", ", ",\ndata: ") + "\n\n"
       ":\n\n"
       f"event: event\nid: 3\ndata: {_event_json(3)}\n\n"
       "event: end\ndata: {\"reason\": \"session_not_found\"}\n\n").encode()


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in small chunks, which records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def _chunks(self) -> List[bytes]:
        return [SSE[i:i + 7] for i in range(0, len(SSE), 7)]

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()

    async def __aiter__(self) -> Any:
        for chunk in self._chunks():
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def _mock(bodies: List[_Body], requests: List[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        bodies.append(_Body())
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=bodies[-1])

    return httpx.MockTransport(handler)


def test_server_sent_events_are_parsed_and_the_response_closed() -> None:
    bodies: List[_Body] = []
    requests: List[httpx.Request] = []
    with contextiq.ContextIQ(base_url="http://sdk.test", api_key="ck_test", engine="bot",
                             transport=_mock(bodies, requests)) as client:
        assert [event.content for event in client.sessions.stream_events(MISSING)] == ["turn 1", "turn 2", "turn 3"]
        assert bodies[-1].closed
        stream = client.sessions.stream_events(MISSING, after_seq=5, last_event_id=1)
        assert next(stream).seq == 1 and not bodies[-1].closed
        stream.close()
        assert bodies[-1].closed, "stopping early closes the response"
    request = requests[-1]
    assert request.url.path == f"/api/v1/sessions/{MISSING}/events/stream" and request.url.params["after_seq"] == "5"
    assert request.headers["last-event-id"] == "1" and request.headers["accept"] == "text/event-stream"
    assert request.headers["x-engine-id"] == "bot"


async def test_async_server_sent_events_are_parsed_and_the_response_closed() -> None:
    bodies: List[_Body] = []
    requests: List[httpx.Request] = []
    async with contextiq.AsyncContextIQ(base_url="http://sdk.test", api_key="ck_test",
                                        transport=_mock(bodies, requests)) as client:
        assert [event.seq async for event in client.sessions.stream_events(MISSING)] == [1, 2, 3]
        assert bodies[-1].closed
        stream = client.sessions.stream_events(MISSING)
        assert (await stream.__anext__()).seq == 1 and not bodies[-1].closed
        await stream.aclose()
        assert bodies[-1].closed, "stopping early closes the response"
    assert "after_seq" not in requests[-1].url.params and "last-event-id" not in requests[-1].headers
