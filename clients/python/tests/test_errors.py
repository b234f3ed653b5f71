"""Problem answers raise ContextIQError with the server's stable code, against the real server."""

from __future__ import annotations

import pickle
import uuid

import httpx
import pytest

import contextiq
from contextiq import (
    AuthenticationError,
    BadRequestError,
    ContextIQError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ValidationError,
)
from support import ALL_DATA_PERMISSIONS, Server, unique


def test_not_found(client: contextiq.ContextIQ) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(ContextIQError) as caught:
        client.sessions.get(missing)
    error = caught.value
    assert isinstance(error, NotFoundError)
    assert (error.status, error.code, error.field) == (404, "session_not_found", None)
    assert error.title == "Session not found" and error.detail == "session not found"
    assert error.type == "urn:contextiq:problem:session_not_found"
    assert error.correlation_id and error.response is not None and error.retry_after is None
    assert str(error) == "404 session_not_found: session not found"
    for call, code in [
        (lambda: client.memories.get(missing), "memory_not_found"),
        (lambda: client.jobs.get(missing), "job_not_found"),
        (lambda: client.keys.get(missing), "api_key_not_found"),
        (lambda: client.sessions.append(missing, author="user", content="hi"), "session_not_found"),
    ]:
        with pytest.raises(NotFoundError) as other:
            call()
        assert other.value.code == code


def test_validation_names_the_field(client: contextiq.ContextIQ, user: str) -> None:
    with pytest.raises(ValidationError) as body_field:
        client.sessions.create("")
    assert (body_field.value.status, body_field.value.code, body_field.value.field) == (422, "validation_failed",
                                                                                         "user_id")
    with pytest.raises(ValidationError) as query_field:
        client.sessions.list(limit=0)
    assert query_field.value.field == "limit"
    with pytest.raises(ValidationError) as search_field:
        client.memories.search({"user_id": user}, "x", top_k=0)
    assert search_field.value.field == "top_k"
    with pytest.raises(ValidationError) as label:
        client.sessions.create(user, scope={"user_id": "someone-else"})
    assert label.value.code == "validation_failed" and label.value.field


def test_unauthenticated(server: Server) -> None:
    with contextiq.ContextIQ(base_url=server.url) as anonymous:
        with pytest.raises(AuthenticationError) as missing:
            anonymous.sessions.list()
        assert (missing.value.status, missing.value.code) == (401, "missing_credentials")
        # The service endpoints need no credentials.
        assert anonymous.health().status == "ok"
    with contextiq.ContextIQ(base_url=server.url, api_key="ck_not-a-key") as wrong:
        with pytest.raises(AuthenticationError) as invalid:
            wrong.memories.list({"user_id": "u1"})
        assert invalid.value.code == "invalid_credentials"


def test_scope_limited_key(client: contextiq.ContextIQ, server: Server) -> None:
    key = client.keys.create(unique("agent-u1"), ALL_DATA_PERMISSIONS, scope={"user_id": "u1"}, expires_in_seconds=3600)
    other = client.sessions.create("u2")
    with contextiq.ContextIQ(base_url=server.url, api_key=key.key) as u1:
        with pytest.raises(PermissionDeniedError) as forbidden:
            u1.sessions.create("u2")
        assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
        with pytest.raises(PermissionDeniedError):
            u1.memories.create({"user_id": "u2"}, "Not theirs to write")
        with pytest.raises(PermissionDeniedError) as no_admin:
            u1.keys.list()
        assert no_admin.value.code == "forbidden"
        # Reading outside the scope is 404, like a missing record; lists of it are empty.
        with pytest.raises(NotFoundError):
            u1.sessions.get(other.id)
        assert u1.sessions.list(user_id="u2").sessions == []
        mine = u1.sessions.create("u1")
        assert mine.scope == {"user_id": "u1"}
        assert u1.sessions.get(mine.id).id == mine.id


def test_revoked_key_is_refused(client: contextiq.ContextIQ, server: Server) -> None:
    key = client.keys.create(unique("short-lived"), ["SESSION_READ"])
    with contextiq.ContextIQ(base_url=server.url, api_key=key.key) as holder:
        holder.sessions.list()
        client.keys.revoke(key.id)
        with pytest.raises(AuthenticationError) as refused:
            holder.sessions.list()
        assert refused.value.code == "invalid_credentials"


def test_conflicting_credentials(server: Server) -> None:
    with contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key,
                             default_headers={"Authorization": "Bearer something-else"}) as confused:
        with pytest.raises(BadRequestError) as caught:
            confused.sessions.list()
    assert (caught.value.status, caught.value.code) == (400, "conflicting_credentials")


def test_error_without_problem_document() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad gateway</html>",
                                                                   headers={"content-type": "text/html"}))
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        with pytest.raises(ServerError) as caught:
            client.sessions.list()
    assert caught.value.status == 502 and caught.value.code == "http_502"
    assert "bad gateway" in caught.value.detail


def test_errors_pickle() -> None:
    error = ValidationError(422, "validation_failed", "must not be empty", "user_id", "Validation failed", None)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ValidationError
    assert (copy.status, copy.code, copy.detail, copy.field) == (422, "validation_failed", "must not be empty", "user_id")


async def test_async_errors(aclient: contextiq.AsyncContextIQ, server: Server) -> None:
    with pytest.raises(NotFoundError) as missing:
        await aclient.sessions.get(str(uuid.uuid4()))
    assert missing.value.code == "session_not_found"
    with pytest.raises(ValidationError) as invalid:
        await aclient.memories.create({"user_id": "u1"}, "x", confidence=2.0)
    assert invalid.value.field == "confidence"
    async with contextiq.AsyncContextIQ(base_url=server.url) as anonymous:
        with pytest.raises(AuthenticationError) as unauthenticated:
            await anonymous.keys.list()
    assert unauthenticated.value.code == "missing_credentials"
