"""Helpers of the suite: the running server, Google's clients of it, polling.

The server is the built binary (env `CONTEXTIQ_BIN`, default `target/debug/contextiq`
relative to the repository root), started on a free loopback port with a fresh data
directory and authentication on, as scripts/schemathesis.sh starts it. Every test reaches
it through Google's own libraries (ADK's services, the `agentplatform` SDK); `httpx` is
used only for ContextIQ's native API (`/api/v1`), to check that it sees the same records,
and to mint keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

# Server settings the caller's environment must not leak into the server under test (an
# LLM provider or a database URL there would change what is being tested).
_SERVER_ENV_PREFIXES = (
    "AUTH_", "CONTEXTIQ_", "DATABASE_", "EMBEDDING_", "LLM_", "QDRANT_", "RABBITMQ_",
    "REDIS_", "WORKER_", "RATE_LIMIT_", "SESSION_", "MEMORY_", "SESSIONS_", "JOB_",
    "CONSOLIDATION_", "SEARCH_", "MAX_", "OTEL_", "LOG_", "CORS_", "REQUEST_", "SHUTDOWN_",
)
_SERVER_ENV_NAMES = (
    "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY",
    "SERVICE_NAME",
)
# Google client settings that would send the clients elsewhere or change their auth.
_GOOGLE_ENV_NAMES = (
    "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_AGENT_ENGINE_ID", "CONTEXTIQ_API_KEY",
    "CONTEXTIQ_BASE_URL",
)
for _name in _GOOGLE_ENV_NAMES:
    os.environ.pop(_name, None)
# google-auth must never probe a metadata server.
os.environ["NO_GCE_CHECK"] = "true"

ALL_PERMISSIONS = ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"]


def unique(prefix: str) -> str:
    """An id no other test uses: tests share one server and data directory."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


class Server:
    """A running `contextiq serve` and helpers for its native API."""

    def __init__(self, binary: Path, data_dir: Path, port: int, process: subprocess.Popen, env: dict[str, str]):
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.process = process
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = self.url + "/"
        self.admin_key = (data_dir / "admin-key.txt").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=30)

    # Native API (/api/v1).

    def native(self, method: str, path: str, *, key: Optional[str] = None, engine: Optional[str] = None,
               expect: Optional[int] = 200, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": key or self.admin_key}
        if engine is not None:
            headers["X-Engine-Id"] = engine
        headers.update(kwargs.pop("headers", {}))
        response = self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} /api/v1{path}: expected {expect}, got {response.status_code}: {response.text}"
            )
        return response

    def native_memories(self, scope: dict[str, str], *, engine: Optional[str] = None, key: Optional[str] = None) -> list[dict]:
        """Every live memory of exactly `scope`, as the native API lists it."""
        memories: list[dict] = []
        cursor = None
        while True:
            params = {"scope": json.dumps(scope), "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.native("GET", "/memories", params=params, engine=engine, key=key).json()
            memories.extend(page["memories"])
            cursor = page.get("next_cursor")
            if not cursor:
                return memories

    def native_sessions(self, user_id: str, *, engine: Optional[str] = None) -> list[dict]:
        sessions: list[dict] = []
        cursor = None
        while True:
            params = {"user_id": user_id, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.native("GET", "/sessions", params=params, engine=engine).json()
            sessions.extend(page["sessions"])
            cursor = page.get("next_cursor")
            if not cursor:
                return sessions

    def native_session_by_name(self, user_id: str, session_id: str, *, engine: Optional[str] = None) -> dict:
        """The native record of the Agent Engine session `session_id` (a client-chosen id or
        the record's UUID)."""
        for session in self.native_sessions(user_id, engine=engine):
            chosen = (session.get("metadata") or {}).get("agent_engine", {}).get("session_id")
            if session_id in (chosen, session["id"]):
                return self.native("GET", f"/sessions/{session['id']}", engine=engine).json()
        raise AssertionError(f"the native API lists no session {session_id!r} of user {user_id!r}")

    def create_key(self, name: str, permissions: list[str], scope: Optional[dict[str, str]] = None) -> str:
        """A key of the default org, minted by the admin key through `POST /api/v1/keys`."""
        body: dict[str, Any] = {"name": name, "permissions": permissions}
        if scope is not None:
            body["scope"] = scope
        response = self.native("POST", "/keys", json=body, expect=201)
        return response.json()["key"]

    def cli_key(self, org: str, permissions: list[str] = ALL_PERMISSIONS) -> str:
        """A key of another org, made with `contextiq keys create` against the same data."""
        result = subprocess.run(
            [str(self.binary), "keys", "create", "--org", org, "--name", unique("test"),
             "--permissions", ",".join(permissions)],
            env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, f"keys create failed: {result.stderr}"
        key = result.stdout.strip().splitlines()[-1].strip()
        assert key.startswith("ck_"), result.stdout
        return key

    def log(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")


# Google's clients.


def sdk_client(server: Server, key: Optional[str] = None, **kwargs: Any) -> Any:
    """The synchronous `agentplatform.Client`, project/location form (`Authorization: Bearer`)."""
    from contextiq_adk import make_client

    return make_client(server.base_url, key or server.admin_key, **kwargs)


def express_client(server: Server, key: Optional[str] = None) -> Any:
    """`agentplatform.Client` in express mode: an API key as `x-goog-api-key`, paths without
    `projects/{p}/locations/{l}/`."""
    import agentplatform

    return agentplatform.Client(api_key=key or server.admin_key, http_options={"base_url": server.base_url})


def collection_client(server: Server, key: Optional[str] = None) -> Any:
    """`agentplatform.Client` in COLLECTION scope: no project, no location, no auth of its own
    (the header is ours); paths without `projects/{p}/locations/{l}/`."""
    import agentplatform

    return agentplatform.Client(http_options={
        "base_url": server.base_url + "v1beta1",
        "base_url_resource_scope": "COLLECTION",
        "headers": {"Authorization": f"Bearer {key or server.admin_key}"},
    })


def engine_name(engine: str = "default") -> str:
    return f"reasoningEngines/{engine}"


def raw_request(client: Any, method: str, path: str, body: Optional[dict] = None) -> dict:
    """A request with a body of our choosing, sent by the SDK's own HTTP client (so its errors
    are Google's `ClientError`s). `path` is relative to `v1beta1/projects/p/locations/l/`."""
    response = client._api_client.request(method, path, body or {}, None)
    return json.loads(response.body) if response.body else {}
