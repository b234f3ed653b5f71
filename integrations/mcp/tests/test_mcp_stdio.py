"""`contextiq mcp` itself: its `--scope` checked before it serves, and a process without
`--scope` (the local administrator of its store) in an `--engine` of its choice. (The shared
stdio process of the other tests is bound with `--scope`; test_mcp_errors.py covers a call
naming a scope outside it.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from mcp_support import (
    connect,
    error_log_lines,
    new_id,
    ok,
    problem,
    stdio_parameters,
    stdio_transport,
)


@pytest.mark.parametrize(("scope", "exit_code", "message"), [
    pytest.param('{"user_id": ', 2, "expected a JSON object of strings: EOF while parsing", id="truncated-json"),
    pytest.param("user_id=me", 2, "expected a JSON object of strings", id="not-json"),
    pytest.param('["me"]', 2, "expected a JSON object of strings", id="json-array"),
    pytest.param('{"user_id": 5}', 2, "expected a JSON object of strings: invalid type: integer `5`",
                 id="json-number-value"),
    pytest.param("{}", 2, "scope: must hold at least one key", id="empty-object"),
])
def test_a_bad_scope_stops_the_process_with_a_message(server: Any, tmp_path: Path,
                                                      mcp_environment: Callable[[Path], Dict[str, str]],
                                                      scope: str, exit_code: int, message: str) -> None:
    parameters = stdio_parameters(server.binary, tmp_path, mcp_environment(tmp_path), "--scope", scope)
    finished = subprocess.run([parameters.command, *parameters.args], cwd=tmp_path, env=parameters.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert finished.returncode == exit_code, finished.stderr
    assert message in finished.stderr, finished.stderr
    if exit_code == 2:  # refused by the argument parser, naming the option
        assert "--scope <SCOPE>" in finished.stderr and scope in finished.stderr
    # Nothing on stdout, the protocol's channel.
    assert finished.stdout == ""


async def test_without_scope_the_process_needs_one_per_call_and_keeps_to_its_engine(
        server: Any, tmp_path: Path, mcp_environment: Callable[[Path], Dict[str, str]]) -> None:
    scope = {"user_id": new_id("stdio-admin")}
    engine = new_id("stdio-engine")
    stderr_path = tmp_path / "stderr.log"

    def process(*args: str) -> Any:
        return connect(stdio_transport(stdio_parameters(server.binary, tmp_path, mcp_environment(tmp_path), *args),
                                       stderr_path))

    async with process("--engine", engine) as (session, init):
        assert init.server_info.name == "contextiq"
        # Not bound to a scope: each call names one.
        for tool, arguments in [("recall", {"query": "Finnish"}), ("remember", {"fact": "User speaks Finnish"}),
                                ("list_memories", {})]:
            error = problem(await session.call_tool(tool, arguments), 422, "validation_failed")
            assert error["field"] == "scope", error
        [memory] = ok(await session.call_tool("remember", {"fact": "User speaks Finnish", "scope": scope}))["memories"]
        assert memory["scope"] == scope
        # Any scope is within reach of the store's administrator.
        assert ok(await session.call_tool("list_memories", {"scope": {"user_id": "someone-else"}}))["memories"] == []

    # The default engine of the same store does not see it...
    async with process() as (session, _):
        assert ok(await session.call_tool("recall", {"query": "Finnish", "scope": scope}))["results"] == []
        assert ok(await session.call_tool("list_memories", {"scope": scope}))["memories"] == []
        problem(await session.call_tool("memory_history", {"memory_id": memory["id"]}), 404, "memory_not_found")

    # ...and the engine still holds it, in a new process.
    async with process("--engine", engine, "--scope", json.dumps(scope)) as (session, _):
        found = ok(await session.call_tool("recall", {"query": "Which languages does the user speak?"}))["results"]
        assert [r["memory"]["id"] for r in found] == [memory["id"]]
        history = ok(await session.call_tool("memory_history", {"memory_id": memory["id"]}))["revisions"]
        assert [r["action"] for r in history] == ["created"]

    assert not error_log_lines(stderr_path), error_log_lines(stderr_path)
