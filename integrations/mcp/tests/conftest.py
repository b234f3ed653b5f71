"""Fixtures of the MCP server's tests (the server itself: integrations/conftest.py).

`mcp` is a connected MCP client, once per transport for the whole run:

- `http`: the SDK's Streamable HTTP client on `/mcp` of the shared server, authenticated with
  `Authorization: Bearer` and an API key limited to `{"user_id": <a user of its own>}`;
- `stdio`: the SDK's stdio client running `contextiq mcp --scope '{"user_id": <a user>}'` on a
  data directory of its own (one process for the run: each opens a store and loads the
  embedding model).

Both credentials are limited to one user's scope, so every tool behaves the same over both;
tests keep apart by narrowing that scope (`mcp.narrowed()`). Tests that use `mcp` run on the
session's event loop (`pytestmark = pytest.mark.asyncio(loop_scope="session")`), where the
sessions live.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator, Callable, Dict

import pytest
import pytest_asyncio

from mcp_support import (
    Connection,
    HostedSession,
    error_log_lines,
    http_transport,
    new_id,
    stdio_environment,
    stdio_parameters,
    stdio_transport,
)

_HARNESS = Path(__file__).resolve().parents[2] / "conftest.py"


@pytest.fixture(scope="session")
def harness(pytestconfig: pytest.Config) -> ModuleType:
    """The suite's conftest module (integrations/conftest.py) as pytest loaded it: its helper
    functions are not fixtures, and `import conftest` would reach whichever conftest was
    loaded last."""
    for plugin in pytestconfig.pluginmanager.get_plugins():
        if isinstance(plugin, ModuleType) and Path(getattr(plugin, "__file__", "") or "").resolve() == _HARNESS:
            return plugin
    raise AssertionError(f"{_HARNESS} is not loaded")


@pytest.fixture(scope="session")
def mcp_environment(harness: ModuleType) -> Callable[[Path], Dict[str, str]]:
    """`env(data_dir)`: the environment of a `contextiq mcp` process on `data_dir`: the
    harness's `server_environment` (no server settings of the caller) plus the embedding model."""
    return lambda data_dir: stdio_environment(data_dir, harness.server_environment(data_dir))


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=["http", "stdio"])
async def mcp(request: pytest.FixtureRequest, server: Any, tmp_path_factory: pytest.TempPathFactory,
              mcp_environment: Callable[[Path], Dict[str, str]]) -> AsyncIterator[Connection]:
    native = None
    stderr_path = None
    if request.param == "http":
        scope = {"user_id": new_id("mcp-http-user")}
        headers = {"Authorization": f"Bearer {server.scoped_key(scope)}"}
        hosted = HostedSession(lambda: http_transport(f"{server.url}/mcp", headers))
        native = server.client()
    else:
        scope = {"user_id": new_id("mcp-stdio-user")}
        data_dir = tmp_path_factory.mktemp("mcp-stdio")
        stderr_path = data_dir / "stderr.log"
        parameters = stdio_parameters(server.binary, data_dir, mcp_environment(data_dir), "--scope", json.dumps(scope))
        hosted = HostedSession(lambda: stdio_transport(parameters, stderr_path))
    try:
        await hosted.start()
    except Exception:
        if stderr_path is not None and stderr_path.exists():
            print(stderr_path.read_text(errors="replace")[-4000:])
        raise
    assert hosted.session is not None and hosted.init is not None
    yield Connection(request.param, hosted.session, hosted.init, scope, native=native, stderr_path=stderr_path)
    await hosted.close()
    if native is not None:
        native.close()
    if stderr_path is not None:
        errors = error_log_lines(stderr_path)
        assert not errors, "the stdio process logged errors:\n" + "\n".join(errors[:20])
