"""Helpers of the MCP server's tests: connecting the official MCP Python SDK to `contextiq serve`
(Streamable HTTP at `/mcp`) and to `contextiq mcp` (stdio), and reading tool results.

(Named for this package alone: the integrations suite puts every package's tests directory on
`sys.path`, so a generic name such as `support` would collide with another package's.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncContextManager, AsyncIterator, Callable, Dict, List, Optional, Tuple

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, InitializeResult

import contextiq

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_PATH = REPO_ROOT / "models" / "all-MiniLM-L6-v2"
# remember and generate_memories wait up to 20 s for their job by default.
CALL_TIMEOUT = 60.0

Streams = Any  # the (read, write) pair a transport yields


def new_id(prefix: str) -> str:
    """An id no other test uses: the tests share one server (and one stdio process)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- transports ------------------------------------------------------------------------------


@asynccontextmanager
async def http_transport(url: str, headers: Dict[str, str],
                         responses: Optional[List[httpx2.Response]] = None) -> AsyncIterator[Streams]:
    """Streamable HTTP to `url` with `headers` on every request; every HTTP response is appended
    to `responses` (the SDK reports a refused POST as a JSON-RPC error only, without its status)."""

    async def record(response: httpx2.Response) -> None:
        if responses is not None:
            responses.append(response)

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(CALL_TIMEOUT),
                                  event_hooks={"response": [record]}) as client:
        async with streamable_http_client(url, http_client=client) as streams:
            yield streams


def stdio_environment(data_dir: Path, base: Dict[str, str]) -> Dict[str, str]:
    """`base` (the harness's `server_environment(data_dir)`) plus the embedding model, so the
    process needs no particular working directory."""
    return {**base, "EMBEDDING_MODEL_PATH": str(MODEL_PATH)}


def stdio_parameters(binary: Path, data_dir: Path, env: Dict[str, str], *args: str) -> StdioServerParameters:
    """`contextiq mcp --data-dir DATA_DIR ARGS...`, run in the data directory."""
    return StdioServerParameters(command=str(binary), args=["mcp", "--data-dir", str(data_dir), *args],
                                 env=env, cwd=str(data_dir))


@asynccontextmanager
async def stdio_transport(parameters: StdioServerParameters, stderr_path: Path) -> AsyncIterator[Streams]:
    """The process of `parameters` on stdio, its stderr (the logs) appended to `stderr_path`."""
    with open(stderr_path, "a") as errlog:
        async with stdio_client(parameters, errlog=errlog) as streams:
            yield streams


def error_log_lines(stderr_path: Path) -> List[str]:
    """The ERROR records a `contextiq` process logged (JSON lines)."""
    if not stderr_path.exists():
        return []
    return [line[:600] for line in stderr_path.read_text(errors="replace").splitlines()
            if '"level":"ERROR"' in line]


@asynccontextmanager
async def connect(transport: AsyncContextManager[Streams]) -> AsyncIterator[Tuple[ClientSession, InitializeResult]]:
    """An initialized `ClientSession` over `transport`, for the task that opens it."""
    async with transport as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session:
            init = await session.initialize()
            yield session, init


class HostedSession:
    """A `ClientSession` kept open by a task of its own, for a fixture that outlives one test.

    The transports and the session run anyio task groups, which one task must enter and exit;
    pytest-asyncio sets a fixture up and tears it down in two different tasks. So a host task
    opens the session, hands it over and waits for `close()`; tests only send requests on it.
    """

    def __init__(self, transport: Callable[[], AsyncContextManager[Streams]]) -> None:
        self._transport = transport
        self._stop = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self.session: Optional[ClientSession] = None
        self.init: Optional[InitializeResult] = None

    async def start(self) -> None:
        opened: asyncio.Future = asyncio.get_running_loop().create_future()

        async def host() -> None:
            try:
                async with connect(self._transport()) as (session, init):
                    opened.set_result((session, init))
                    await self._stop.wait()
            except BaseException as exc:
                if opened.done():
                    raise
                opened.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

        self._task = asyncio.create_task(host())
        self.session, self.init = await opened

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@dataclass
class Connection:
    """A connected MCP client and what its credential is: the transport (`http` or `stdio`),
    the scope it is limited to (its tools' default scope), and for HTTP a native SDK client
    (admin key) to check what the tools did."""

    transport: str
    session: ClientSession
    init: InitializeResult
    scope: Dict[str, str]
    native: Optional[contextiq.ContextIQ] = None
    stderr_path: Optional[Path] = None

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return await self.session.call_tool(tool, arguments)

    def narrowed(self) -> Dict[str, str]:
        """A scope of the test's own within the credential's: the credential's scope plus an
        `agent_id` no other test uses (a call may narrow its credential's scope)."""
        return {**self.scope, "agent_id": new_id("case")}


# --- results ---------------------------------------------------------------------------------


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    return result.content[0].text


def ok(result: CallToolResult) -> Dict[str, Any]:
    """The structured content of a successful tool result (also carried, as JSON, by its text)."""
    assert not result.is_error, f"the tool failed: {result.content}"
    data = result.structured_content
    assert isinstance(data, dict), result
    assert json.loads(text_of(result)) == data
    return data


def problem(result: CallToolResult, status: int, code: Optional[str] = None) -> Dict[str, Any]:
    """The problem document of a tool result that failed with `status` (and `code`)."""
    assert result.is_error, f"the tool succeeded: {result.structured_content}"
    assert isinstance(result.structured_content, dict), result
    assert json.loads(text_of(result)) == result.structured_content
    assert set(result.structured_content) == {"error"}
    error = result.structured_content["error"]
    assert error["status"] == status, error
    assert error["type"] == f"urn:contextiq:problem:{error['code']}" and error["title"] and error["detail"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def refused(result: CallToolResult) -> str:
    """The message of a call whose arguments the SDK (rmcp) refused before any tool ran: an
    error result with text only."""
    assert result.is_error, f"the tool ran: {result.structured_content}"
    assert result.structured_content is None, result.structured_content
    return text_of(result)


def leaf_exceptions(error: BaseException) -> List[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_exceptions(inner)]
    return [error]
