"""The client's own behaviour: credentials, headers, bodies, paths, lifetime."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any, List, Tuple

import httpx
import pytest

import contextiq
from support import SDK_ROOT, Server, jwt_for, unique


def _capture(answer: Any = None) -> Tuple[httpx.MockTransport, List[httpx.Request]]:
    requests: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=answer if answer is not None else {"sessions": [], "next_cursor": None})

    return httpx.MockTransport(handler), requests


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTIQ_API_KEY", "ck_from_env")
    monkeypatch.setenv("CONTEXTIQ_BASE_URL", "http://env.test:9999/")
    transport, requests = _capture()
    with contextiq.ContextIQ(transport=transport) as client:
        assert client.base_url == "http://env.test:9999"
        client.sessions.list()
    assert requests[0].headers["x-api-key"] == "ck_from_env"
    assert str(requests[0].url) == "http://env.test:9999/api/v1/sessions"
    assert requests[0].headers["user-agent"].startswith("contextiq-python/")
    # A token given explicitly wins over the environment's key: one credential only.
    transport, requests = _capture()
    with contextiq.ContextIQ(token="header.payload.sig", transport=transport) as client:
        client.sessions.list()
    assert requests[0].headers["authorization"] == "Bearer header.payload.sig"
    assert "x-api-key" not in requests[0].headers


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert contextiq.ContextIQ().base_url == "http://127.0.0.1:8000"


def test_one_credential_only() -> None:
    with pytest.raises(ValueError):
        contextiq.ContextIQ(api_key="ck_a", token="jwt")
    with pytest.raises(ValueError):
        contextiq.AsyncContextIQ(api_key="ck_a", token="jwt")
    with pytest.raises(ValueError):
        contextiq.ContextIQ(max_retries=-1)


def test_bodies_and_queries() -> None:
    transport, requests = _capture({"memories": [], "next_cursor": None})
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        client.memories.list({"user_id": "u1", "app": "ä"}, created_after=when, limit=5, cursor="abc")
    params = requests[0].url.params
    assert json.loads(params["scope"]) == {"user_id": "u1", "app": "ä"}
    assert params["created_after"] == "2026-01-02T03:04:05Z" and params["limit"] == "5" and params["cursor"] == "abc"
    assert "topic" not in params

    created = {"id": "0198c1a2-0000-7000-8000-000000000001", "user_id": "u1", "scope": {"user_id": "u1"},
               "state": {}, "metadata": {}, "created_at": "2026-01-01T00:00:00Z",
               "updated_at": "2026-01-01T00:00:00Z", "event_count": 0, "events": []}
    transport, requests = _capture(created)
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        client.sessions.create("u1", ttl_seconds=60)
        client.sessions.patch_state("0198c1a2-0000-7000-8000-000000000001", {"gone": None})
        client.sessions.get("0198c1a2-0000-7000-8000-000000000001", include_events=False)
        client.sessions.get("0198c1a2-0000-7000-8000-000000000001")
    assert json.loads(requests[0].content) == {"user_id": "u1", "ttl_seconds": 60}
    assert requests[0].headers["content-type"] == "application/json"
    assert json.loads(requests[1].content) == {"gone": None}
    assert requests[1].headers["content-type"] == "application/merge-patch+json"
    assert requests[2].url.params["include_events"] == "false"
    assert "include_events" not in requests[3].url.params


def test_update_sends_only_what_is_given() -> None:
    memory = {"id": "m1", "scope": {"user_id": "u1"}, "fact": "f", "confidence": 1.0, "source_event_ids": [],
              "metadata": {}, "said_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    transport, requests = _capture(memory)
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        client.memories.update("m1", topic=None)
        client.memories.update("m1", fact="g", confidence=0.5)
        client.memories.delete("m1")
        client.memories.delete("m1", purge=True)
    assert json.loads(requests[0].content) == {"topic": None}
    assert json.loads(requests[1].content) == {"fact": "g", "confidence": 0.5}
    assert "purge" not in requests[2].url.params and requests[3].url.params["purge"] == "true"


def test_ids_cannot_change_the_path() -> None:
    transport, requests = _capture({"keys": []})
    with contextiq.ContextIQ(base_url="http://sdk.test", transport=transport) as client:
        with pytest.raises(KeyError):  # the mock's answer is no session
            client.sessions.get("../keys")
        with pytest.raises(ValueError):
            client.sessions.get("")
    assert requests[0].url.raw_path.decode() == "/api/v1/sessions/..%2Fkeys"


def test_with_engine_shares_connections() -> None:
    transport, requests = _capture()
    client = contextiq.ContextIQ(base_url="http://sdk.test", engine="a", transport=transport)
    other = client.with_engine("b")
    assert other._http is client._http and other.engine == "b" and client.engine == "a"
    other.close()  # not its connections to close
    client.sessions.list()
    client.close()
    with pytest.raises(RuntimeError):
        client.sessions.list()


def test_token_against_the_server(server: Server, user: str) -> None:
    token = jwt_for(unique("jwt-user"), ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"])
    with contextiq.ContextIQ(base_url=server.url, token=token) as client:
        session = client.sessions.create(user)
        assert client.sessions.get(session.id).id == session.id
        memory = client.memories.create({"user_id": user}, "Signed in with a JWT")
        assert client.memories.revisions(memory.id)[0].actor.startswith("jwt:")
        with pytest.raises(contextiq.PermissionDeniedError):
            client.keys.list()
    scoped = jwt_for(unique("jwt-u1"), ["SESSION_READ", "SESSION_WRITE"], scope={"user_id": "u1"})
    with contextiq.ContextIQ(base_url=server.url, token=scoped) as client:
        with pytest.raises(contextiq.PermissionDeniedError):
            client.sessions.create("u2")
    with contextiq.ContextIQ(base_url=server.url, token="not.a.jwt") as client:
        with pytest.raises(contextiq.AuthenticationError) as caught:
            client.sessions.list()
    assert caught.value.code == "invalid_credentials"


async def test_async_token(server: Server, user: str) -> None:
    token = jwt_for(unique("jwt-async"), ["SESSION_READ", "SESSION_WRITE"])
    async with contextiq.AsyncContextIQ(base_url=server.url, token=token) as client:
        session = await client.sessions.create(user)
        assert (await client.sessions.get(session.id)).user_id == user


def test_sync_client_is_generated_from_the_async_one() -> None:
    result = subprocess.run([sys.executable, str(SDK_ROOT / "tools" / "unasync.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_installed_package_is_typed() -> None:
    from importlib import resources

    assert (resources.files("contextiq") / "py.typed").is_file()
    assert contextiq.__version__

