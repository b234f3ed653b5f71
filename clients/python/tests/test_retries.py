"""Retries: 429 and 503 are sent again after Retry-After (or a backoff); connection failures
where that is safe. Against a server limited to 1 request per second with a burst of 1, and
with mock transports for what a server cannot be made to do on demand."""

from __future__ import annotations

import asyncio
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from typing import Any, List, Tuple

import httpx
import pytest

import contextiq
from contextiq import RateLimitError, ServiceUnavailableError
from contextiq import _base
from support import AsyncRecordingTransport, RecordingTransport, Server, problem, unique


def _fresh_key(limited_server: Server) -> str:
    """A key of its own, so that each test starts with a full bucket."""
    with contextiq.ContextIQ(base_url=limited_server.url, api_key=limited_server.admin_key, max_retries=10) as admin:
        return admin.keys.create(unique("burst"), ["SESSION_READ", "SESSION_WRITE"]).key


def test_burst_succeeds_after_retry_after(limited_server: Server) -> None:
    transport = RecordingTransport(httpx.HTTPTransport())
    key = _fresh_key(limited_server)
    started = time.monotonic()
    with contextiq.ContextIQ(base_url=limited_server.url, api_key=key, max_retries=5, transport=transport) as client:
        results = [client.sessions.list(limit=1) for _ in range(4)]
    elapsed = time.monotonic() - started
    assert len(results) == 4
    statuses = transport.statuses()
    assert statuses.count(200) == 4 and 429 in statuses
    assert set(statuses) <= {200, 429}
    # Each 429 said Retry-After: 1, and the client waited it out before sending again.
    assert elapsed >= 0.95 * statuses.count(429), (elapsed, statuses)


def test_no_retries_raises_rate_limited(limited_server: Server) -> None:
    key = _fresh_key(limited_server)
    with contextiq.ContextIQ(base_url=limited_server.url, api_key=key, max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            for _ in range(5):
                client.sessions.list()
    error = caught.value
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.response is not None and error.response.headers["ratelimit-remaining"] == "0"


async def test_async_concurrent_burst(limited_server: Server) -> None:
    key = _fresh_key(limited_server)
    transport = AsyncRecordingTransport(httpx.AsyncHTTPTransport())
    async with contextiq.AsyncContextIQ(base_url=limited_server.url, api_key=key, max_retries=10,
                                        transport=transport) as client:
        pages = await asyncio.gather(*(client.sessions.list(limit=1) for _ in range(3)))
        assert len(pages) == 3
        async with contextiq.AsyncContextIQ(base_url=limited_server.url, api_key=key, max_retries=0) as impatient:
            outcomes = await asyncio.gather(*(impatient.sessions.list() for _ in range(3)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, RateLimitError)]
    assert refused and all(o.code == "rate_limited" for o in refused)
    assert transport.statuses().count(200) == 3 and 429 in transport.statuses()


# Mock transports: what a real server cannot be made to do on demand.

@pytest.fixture(autouse=False)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "backoff", lambda attempt: 0.0)


def _answer(answers: List[Any], count: int) -> httpx.Response:
    """The `count`th answer (the last one again past the end): a fresh copy of a response, or
    the exception to raise."""
    answer = answers[min(count, len(answers)) - 1]
    if isinstance(answer, Exception):
        raise answer
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _scripted(answers: List[Any]) -> Tuple[httpx.MockTransport, List[httpx.Request]]:
    """A transport answering each request with the next of `answers` (a response or an exception)."""
    requests: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return _answer(answers, len(requests))

    return httpx.MockTransport(handler), requests


SESSIONS = httpx.Response(200, json={"sessions": [], "next_cursor": None})


def _client(transport: httpx.MockTransport, **options: Any) -> contextiq.ContextIQ:
    return contextiq.ContextIQ(base_url="http://sdk.test", api_key="ck_test", transport=transport, **options)


def test_503_then_success(no_backoff: None) -> None:
    transport, requests = _scripted([problem(503, "store_unavailable", headers={"retry-after": "0"}), SESSIONS])
    with _client(transport) as client:
        assert client.sessions.list().sessions == []
    assert len(requests) == 2


def test_backoff_without_retry_after(no_backoff: None) -> None:
    transport, requests = _scripted([problem(503, "service_unavailable")] * 3 + [SESSIONS])
    with _client(transport, max_retries=3) as client:
        client.sessions.list()
    assert len(requests) == 4


def test_retries_run_out(no_backoff: None) -> None:
    transport, requests = _scripted([problem(503, "store_unavailable", headers={"retry-after": "0"})])
    with _client(transport, max_retries=2) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.sessions.list()
    assert len(requests) == 3 and caught.value.code == "store_unavailable" and caught.value.retry_after == 0


def test_opening_a_stream_is_retried(no_backoff: None) -> None:
    ended = httpx.Response(200, headers={"content-type": "text/event-stream"},
                           content=b'event: end\ndata: {"reason": "session_not_found"}\n\n')
    transport, requests = _scripted([problem(503, "store_unavailable", headers={"retry-after": "0"}), ended])
    with _client(transport) as client:
        assert list(client.sessions.stream_events("0198c1a2-0000-7000-8000-000000000001")) == []
    assert len(requests) == 2
    transport, requests = _scripted([problem(429, "rate_limited", headers={"retry-after": "0"})])
    with _client(transport, max_retries=1) as client:
        with pytest.raises(RateLimitError):
            next(client.jobs.stream("0198c1a2-0000-7000-8000-000000000002"))
    assert len(requests) == 2


def test_max_retries_zero_sends_once(no_backoff: None) -> None:
    transport, requests = _scripted([problem(429, "rate_limited", headers={"retry-after": "0"}), SESSIONS])
    with _client(transport, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            client.sessions.list()
    assert len(requests) == 1


def test_timeout_of_a_write_is_not_repeated(no_backoff: None) -> None:
    timeout = problem(503, "timeout", headers={"retry-after": "0"})
    transport, requests = _scripted([timeout, timeout, SESSIONS])
    with _client(transport) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.sessions.create("u1")
        assert caught.value.code == "timeout" and len(requests) == 1
        client.sessions.list()  # a read is repeated
    assert len(requests) == 3


def test_long_retry_after_is_raised_not_waited(no_backoff: None) -> None:
    transport, requests = _scripted([problem(429, "rate_limited", headers={"retry-after": "3600"}), SESSIONS])
    with _client(transport) as client:
        with pytest.raises(RateLimitError) as caught:
            client.sessions.list()
    assert caught.value.retry_after == 3600 and len(requests) == 1


def test_retry_after_as_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: List[float] = []
    monkeypatch.setattr(time, "sleep", lambda seconds: slept.append(seconds))
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=3), usegmt=True)
    transport, requests = _scripted([problem(429, "rate_limited", headers={"retry-after": when}), SESSIONS])
    with _client(transport) as client:
        client.sessions.list()
    assert len(requests) == 2 and len(slept) == 1 and 1.5 <= slept[0] <= 3.5


def test_connection_errors(no_backoff: None) -> None:
    refused = httpx.ConnectError("connection refused")
    transport, requests = _scripted([refused, refused, SESSIONS])
    with _client(transport) as client:
        client.sessions.list()
    assert len(requests) == 3
    # A connection never made: even a POST is safe to send again.
    created = {"id": "0198c1a2-0000-7000-8000-000000000001", "user_id": "u1", "scope": {"user_id": "u1"},
               "state": {}, "metadata": {}, "created_at": "2026-01-01T00:00:00Z",
               "updated_at": "2026-01-01T00:00:00Z", "event_count": 0, "events": []}
    transport, requests = _scripted([refused, httpx.Response(201, json=created)])
    with _client(transport) as client:
        assert client.sessions.create("u1").user_id == "u1"
    assert len(requests) == 2
    # A connection lost after sending: a POST may have taken effect, so it is not repeated ...
    lost = httpx.ReadError("connection reset")
    transport, requests = _scripted([lost, httpx.Response(201, json=created)])
    with _client(transport) as client:
        with pytest.raises(httpx.ReadError):
            client.sessions.create("u1")
    assert len(requests) == 1
    # ... but a read, a delete, a patch or a search is.
    transport, requests = _scripted([lost, SESSIONS])
    with _client(transport) as client:
        client.sessions.list()
    assert len(requests) == 2
    transport, requests = _scripted([lost, httpx.Response(200, json={"results": []})])
    with _client(transport) as client:
        assert client.memories.search({"user_id": "u1"}, "x").results == []
    assert len(requests) == 2
    transport, requests = _scripted([lost])
    with _client(transport, max_retries=0) as client:
        with pytest.raises(httpx.ReadError):
            client.sessions.list()
    assert len(requests) == 1


async def test_async_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: List[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    answers = [problem(429, "rate_limited", headers={"retry-after": "2"}), httpx.ConnectError("refused"), SESSIONS]
    calls: List[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _answer(answers, len(calls))

    async with contextiq.AsyncContextIQ(base_url="http://sdk.test", transport=httpx.MockTransport(handler)) as client:
        assert (await client.sessions.list()).sessions == []
    assert len(calls) == 3 and len(slept) == 2 and 2 <= slept[0] <= 2.25


def test_retry_delay_policy() -> None:
    def response(status: int, code: str, retry_after: str = "") -> httpx.Response:
        return problem(status, code, headers={"retry-after": retry_after} if retry_after else None)

    assert _base.retry_delay(response(404, "session_not_found"), "GET", "/api/v1/sessions/{id}", 0, 3) is None
    assert _base.retry_delay(response(500, "internal_error"), "GET", "/api/v1/sessions", 0, 3) is None
    assert 1 <= _base.retry_delay(response(429, "rate_limited", "1"), "POST", "/api/v1/sessions", 0, 3) <= 1.25
    assert _base.retry_delay(response(429, "rate_limited", "1"), "POST", "/api/v1/sessions", 3, 3) is None
    assert _base.retry_delay(response(503, "timeout", "1"), "POST", "/api/v1/memories/search", 0, 3) is not None
    assert _base.retry_delay(response(503, "timeout", "1"), "POST", "/api/v1/memories", 0, 3) is None
    for attempt, base in enumerate([0.5, 1, 2, 4, 8, 8, 8]):
        assert base <= _base.backoff(attempt) <= base * 1.25

