"""What the server refuses, and how the refusal reaches an MCP client: a tool result with
`isError: true` (the problem document the HTTP API would answer, as structured content, or
rmcp's message for arguments that do not fit the tool's schema); over HTTP, a request without a
valid credential is refused before MCP (401).

The first tests run over both transports (a credential limited to one user: an API key over
HTTP, `--scope` over stdio); the rest need credentials of their own, which only HTTP takes per
request (stdio's: test_mcp_stdio.py).
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import contextiq
import httpx2
import pytest
from mcp import MCPError

from mcp_support import Connection, connect, http_transport, leaf_exceptions, new_id, ok, problem, refused

pytestmark = pytest.mark.asyncio(loop_scope="session")

TURN = [{"role": "user", "content": "I live in Porto"}]


# --- both transports -------------------------------------------------------------------------

@pytest.mark.parametrize(("tool", "arguments", "message"), [
    pytest.param("recall", {"query": 5}, "invalid type: integer `5`, expected a string", id="recall-query-number"),
    pytest.param("recall", {"query": "tea", "bogus": 1}, "unknown field `bogus`", id="recall-unknown-field"),
    pytest.param("recall", {}, "missing field `query`", id="recall-no-query"),
    pytest.param("recall", {"query": "tea", "top_k": -1}, "invalid value: integer `-1`", id="recall-top_k-negative"),
    pytest.param("recall", {"query": "tea", "said_after": "last week"}, "input contains invalid characters",
                 id="recall-said_after-not-a-time"),
    pytest.param("recall", {"query": "tea", "recency_weight": "high"}, "invalid type: string \"high\"",
                 id="recall-recency_weight-string"),
    pytest.param("remember", {"fact": "User likes tea", "wait_seconds": "soon"}, "invalid type: string \"soon\"",
                 id="remember-wait_seconds-string"),
    pytest.param("remember", {"fact": "User likes tea", "scope": "me"}, "expected a map", id="remember-scope-string"),
    pytest.param("remember", {"fact": "User likes tea", "scope": {"user_id": 5}}, "invalid type: integer `5`",
                 id="remember-scope-value-number"),
    pytest.param("remember", {"topic": "USER_PREFERENCES"}, "missing field `fact`", id="remember-no-fact"),
    pytest.param("forget", {"memory_id": "not-a-uuid"}, "UUID", id="forget-memory_id-not-uuid"),
    pytest.param("memory_history", {}, "missing field `memory_id`", id="memory_history-no-memory_id"),
    pytest.param("record_turns", {"turns": "hello"}, "expected a sequence", id="record_turns-turns-string"),
    pytest.param("record_turns", {"turns": [{"role": "user"}]}, "missing field `content`",
                 id="record_turns-turn-no-content"),
    pytest.param("record_turns", {"turns": [{"role": "user", "content": "hi", "mood": "happy"}]},
                 "unknown field `mood`", id="record_turns-turn-unknown-field"),
    pytest.param("generate_memories", {"session_id": 42}, "invalid type: integer `42`",
                 id="generate_memories-session_id-number"),
    pytest.param("get_job", {}, "missing field `job_id`", id="get_job-no-job_id"),
])
async def test_arguments_that_do_not_fit_the_schema_are_refused(mcp: Connection, tool: str,
                                                                arguments: Dict[str, Any], message: str) -> None:
    text = refused(await mcp.call(tool, **arguments))
    assert "failed to deserialize parameters" in text and message in text, text


async def test_a_refused_call_changes_nothing(mcp: Connection) -> None:
    scope = mcp.narrowed()
    refused(await mcp.call("remember", fact="User likes tea", scope=scope, confidence=1.0))
    refused(await mcp.call("record_turns", scope=scope, turns=[{"role": "user", "content": "I live in Porto", "x": 1}]))
    assert ok(await mcp.call("list_memories", scope=scope))["memories"] == []
    if mcp.native is not None:
        assert mcp.native.memories.list(scope).memories == []
        assert mcp.native.sessions.list(user_id=scope["user_id"], agent_id=scope["agent_id"]).sessions == []


@pytest.mark.parametrize(("tool", "arguments", "field"), [
    pytest.param("recall", {"query": "tea", "top_k": 0}, "top_k", id="recall-top_k-0"),
    pytest.param("recall", {"query": "tea", "top_k": 101}, "top_k", id="recall-top_k-101"),
    pytest.param("recall", {"query": ""}, "search_query", id="recall-empty-query"),
    pytest.param("recall", {"query": "tea", "recency_weight": 1.5}, "recency_weight", id="recall-recency_weight-1.5"),
    pytest.param("recall", {"query": "tea", "recency_half_life_days": 0}, "recency_half_life_days",
                 id="recall-recency_half_life_days-0"),
    pytest.param("list_memories", {"limit": 0}, "limit", id="list_memories-limit-0"),
    pytest.param("list_memories", {"cursor": "not-a-cursor"}, "cursor", id="list_memories-bad-cursor"),
    pytest.param("remember", {"fact": ""}, "memories[0].fact", id="remember-empty-fact"),
    pytest.param("record_turns", {"turns": []}, "events", id="record_turns-no-turns"),
    pytest.param("record_turns", {"turns": [{"role": "robot", "content": "beep"}]}, "turns[0].role",
                 id="record_turns-unknown-role"),
    pytest.param("record_turns", {"turns": TURN, "session_id": str(uuid.uuid4()), "scope": {"user_id": "anyone"}},
                 "scope", id="record_turns-session_id-with-scope"),
])
async def test_invalid_values_are_a_validation_problem(mcp: Connection, tool: str, arguments: Dict[str, Any],
                                                       field: str) -> None:
    error = problem(await mcp.call(tool, **arguments), 422, "validation_failed")
    assert error["field"] == field, error


@pytest.mark.parametrize(("tool", "argument", "code"), [
    ("forget", "memory_id", "memory_not_found"),
    ("memory_history", "memory_id", "memory_not_found"),
    ("get_job", "job_id", "job_not_found"),
    ("generate_memories", "session_id", "session_not_found"),
    ("record_turns", "session_id", "session_not_found"),
])
async def test_an_id_that_does_not_exist_is_404(mcp: Connection, tool: str, argument: str, code: str) -> None:
    arguments: Dict[str, Any] = {argument: str(uuid.uuid4())}
    if tool == "record_turns":
        arguments["turns"] = TURN
    error = problem(await mcp.call(tool, **arguments), 404, code)
    assert "not found" in error["detail"]


@pytest.mark.parametrize("tool", ["remember", "recall", "list_memories", "record_turns"])
async def test_a_scope_outside_the_credentials_is_403(mcp: Connection, tool: str) -> None:
    other = new_id("other-user")
    arguments = {
        "remember": {"fact": "User is allergic to peanuts"},
        "recall": {"query": "peanuts"},
        "list_memories": {},
        "record_turns": {"turns": TURN},
    }[tool]
    # Another user's scope, a wider one (without the user), and the other user within the
    # credential's keys: none is within the credential's scope.
    for scope in ({"user_id": other}, {"agent_id": "shared"}, {**mcp.narrowed(), "user_id": other}):
        error = problem(await mcp.call(tool, scope=scope, **arguments), 403, "forbidden")
        assert "scope" in error["detail"] and mcp.scope["user_id"] in error["detail"], error
    if mcp.native is not None:
        # Nothing was written for the other user.
        assert mcp.native.memories.list({"user_id": other}).memories == []
        assert mcp.native.sessions.list(user_id=other).sessions == []


# --- HTTP: credentials per request -----------------------------------------------------------

async def test_an_unscoped_credential_must_name_the_scope(server: Any) -> None:
    scope = {"user_id": new_id("admin-named")}
    async with connect(http_transport(f"{server.url}/mcp", {"X-API-Key": server.admin_key})) as (session, _):
        for tool, arguments in [("remember", {"fact": "User likes tea"}), ("recall", {"query": "tea"}),
                                ("list_memories", {}), ("record_turns", {"turns": TURN})]:
            error = problem(await session.call_tool(tool, arguments), 422, "validation_failed")
            assert error["field"] == "scope" and "is required" in error["detail"], error
        # Named, it may be any.
        [memory] = ok(await session.call_tool("remember", {"fact": "User likes tea", "scope": scope}))["memories"]
        found = ok(await session.call_tool("recall", {"query": "tea", "scope": scope}))["results"]
        assert [r["memory"]["id"] for r in found] == [memory["id"]]
        # A new session's scope needs a user.
        error = problem(await session.call_tool("record_turns", {"turns": TURN, "scope": {"agent_id": "a"}}), 422)
        assert error["field"] == "scope" and "user_id" in error["detail"]


async def test_a_key_without_memory_write_cannot_remember(server: Any, user: str) -> None:
    scope = {"user_id": user}
    with server.client() as native:
        kept = native.memories.create(scope, "User plays the cello")
        key = server.scoped_key(scope, permissions=["MEMORY_READ"])
        async with connect(http_transport(f"{server.url}/mcp", {"X-API-Key": key})) as (session, _):
            for tool, arguments, permission in [
                ("remember", {"fact": "User likes tea"}, "MEMORY_WRITE"),
                ("forget", {"memory_id": kept.id}, "MEMORY_WRITE"),
                ("record_turns", {"turns": TURN}, "SESSION_WRITE"),
                ("generate_memories", {"session_id": str(uuid.uuid4())}, "MEMORY_WRITE"),
            ]:
                error = problem(await session.call_tool(tool, arguments), 403, "forbidden")
                assert permission in error["detail"], error
            # What the key may do, it does.
            found = ok(await session.call_tool("recall", {"query": "cello"}))["results"]
            assert [r["memory"]["id"] for r in found] == [kept.id]
        assert [m.id for m in native.memories.list(scope).memories] == [kept.id]
        assert native.sessions.list(user_id=user).sessions == []


async def test_a_scoped_key_cannot_reach_another_users_records_by_id(server: Any, user: str) -> None:
    other = f"{user}-other"
    with server.client() as native:
        session = native.sessions.create(other)
        native.sessions.append(session.id, author="user", content="I live in Oslo")
        job = native.jobs.wait(native.memories.generate(source_type="session", source_reference=session.id).id)
        [memory_id] = job.memories_added
        key = server.scoped_key({"user_id": user})
        async with connect(http_transport(f"{server.url}/mcp", {"X-API-Key": key})) as (client, _):
            # Not found, as if they did not exist: what is out of reach is not disclosed.
            for tool, arguments, code in [
                ("forget", {"memory_id": memory_id}, "memory_not_found"),
                ("memory_history", {"memory_id": memory_id}, "memory_not_found"),
                ("get_job", {"job_id": job.id}, "job_not_found"),
                ("generate_memories", {"session_id": session.id}, "session_not_found"),
                ("record_turns", {"session_id": session.id, "turns": [{"role": "user", "content": "I live in Rome"}]},
                 "session_not_found"),
            ]:
                problem(await client.call_tool(tool, arguments), 404, code)
        assert native.memories.get(memory_id).fact == "User lives in Oslo"
        assert [e.content for e in native.sessions.iter_events(session.id)] == ["I live in Oslo"]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "ck_not-a-key"}, {"Authorization": "Bearer ck_not-a-key"}],
                         ids=["none", "unknown-api-key", "unknown-bearer"])
async def test_without_a_valid_credential_the_connection_fails(server: Any, headers: Dict[str, str]) -> None:
    responses: List[httpx2.Response] = []
    with pytest.raises(BaseException) as raised:
        async with connect(http_transport(f"{server.url}/mcp", headers, responses)):
            pass
    assert any(isinstance(leaf, MCPError) for leaf in leaf_exceptions(raised.value)), raised.value
    # The initialize request itself was refused, before any MCP: 401 with a challenge.
    assert [response.status_code for response in responses] == [401]
    assert responses[0].headers["www-authenticate"].startswith("Bearer")
    assert responses[0].headers["content-type"] == "application/problem+json"


async def test_engines_do_not_see_each_others_memories(server: Any, user: str) -> None:
    scope = {"user_id": user}
    engine_a, engine_b = new_id("mcp-engine-a"), new_id("mcp-engine-b")

    def headers(engine: str) -> Dict[str, str]:
        return {"X-API-Key": server.admin_key, "X-Engine-Id": engine}

    async with connect(http_transport(f"{server.url}/mcp", headers(engine_a))) as (session, _):
        [memory] = ok(await session.call_tool("remember", {"fact": "User speaks Finnish", "scope": scope}))["memories"]
        found = ok(await session.call_tool("recall", {"query": "Finnish", "scope": scope}))["results"]
        assert [r["memory"]["id"] for r in found] == [memory["id"]]
    async with connect(http_transport(f"{server.url}/mcp", headers(engine_b))) as (session, _):
        assert ok(await session.call_tool("recall", {"query": "Finnish", "scope": scope}))["results"] == []
        assert ok(await session.call_tool("list_memories", {"scope": scope}))["memories"] == []
        problem(await session.call_tool("memory_history", {"memory_id": memory["id"]}), 404, "memory_not_found")
        # Engine B's own memory, in the same scope, stays in engine B.
        [own] = ok(await session.call_tool("remember", {"fact": "User speaks Finnish", "scope": scope}))["memories"]
        assert own["id"] != memory["id"]
    with server.client(engine=engine_a) as native_a, server.client() as native_default:
        assert [m.id for m in native_a.memories.list(scope).memories] == [memory["id"]]
        assert native_default.memories.list(scope).memories == []
        with pytest.raises(contextiq.NotFoundError):
            native_default.memories.get(memory["id"])
