"""The README's MCP configurations work as written, read by the official MCP Python SDK.

The blocks after `<!-- README test: python mcp stdio -->` (Claude Desktop / Cursor JSON),
`<!-- README test: python mcp claude-code -->` (`claude mcp add` lines) and
`<!-- README test: python mcp http -->` (a URL client's JSON) are parsed as an assistant would
read them, with this machine's paths for the README's placeholders: the binary under test for
`/path/to/contextiq/target/release/contextiq`, a temporary directory for the data directory,
the repository for `/path/to/contextiq` (the model), the shared server for
`http://127.0.0.1:8000` and a real key for `ck_...`. The stdio servers run in a directory of
their own, so the configuration alone must be enough. Each then remembers and recalls a fact.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from mcp import StdioServerParameters

from mcp_support import REPO_ROOT, connect, error_log_lines, http_transport, new_id, ok, stdio_transport

README = REPO_ROOT / "README.md"
PLACEHOLDER_BINARY = "/path/to/contextiq/target/release/contextiq"
PLACEHOLDER_DATA = "/path/to/contextiq/data-mcp"
PLACEHOLDER_REPO = "/path/to/contextiq"
PLACEHOLDER_URL = "http://127.0.0.1:8000"
PLACEHOLDER_KEY = "ck_..."
README_SCOPE = {"user_id": "me"}


def marked_block(marker: str, language: str) -> str:
    text = README.read_text()
    tag = f"<!-- README test: {marker} -->"
    assert tag in text, f"README.md has no block marked {tag}"
    match = re.match(rf"\s*```{language}\n(.*?)^```", text.split(tag, 1)[1], re.DOTALL | re.MULTILINE)
    assert match, f"no ```{language} block right after {tag}"
    return match.group(1)


def localized(value: str, data_dir: Path, server: Any) -> str:
    value = value.replace(PLACEHOLDER_BINARY, str(server.binary)).replace(PLACEHOLDER_DATA, str(data_dir))
    return value.replace(PLACEHOLDER_REPO, str(REPO_ROOT))


def parse_claude_mcp_add(line: str) -> Dict[str, Any]:
    """`claude mcp add [options] NAME COMMAND_OR_URL [ARGS...]`, `--` ending the options (as
    Claude Code reads it): name, transport, env (`-e K=V`), headers (`--header "K: V"`), and the
    command line or URL."""
    tokens = shlex.split(line)
    assert tokens[:3] == ["claude", "mcp", "add"], line
    parsed: Dict[str, Any] = {"transport": "stdio", "env": {}, "headers": {}}
    positional: List[str] = []
    rest = tokens[3:]
    while rest:
        token = rest.pop(0)
        if token == "--":
            positional += rest
            break
        if token in ("-e", "--env"):
            key, value = rest.pop(0).split("=", 1)
            parsed["env"][key] = value
        elif token in ("-H", "--header"):
            key, value = rest.pop(0).split(":", 1)
            parsed["headers"][key.strip()] = value.strip()
        elif token in ("-t", "--transport"):
            parsed["transport"] = rest.pop(0)
        elif token in ("-s", "--scope"):
            rest.pop(0)
        else:
            assert not token.startswith("-"), f"an option this test does not know: {token} in {line}"
            positional.append(token)
    parsed["name"], parsed["target"] = positional[0], positional[1:]
    return parsed


def stdio_server(command: str, args: List[str], env: Dict[str, str], tmp_path: Path, server: Any,
                 environment: Callable[[Path], Dict[str, str]]) -> Tuple[StdioServerParameters, Path]:
    """The parameters an assistant would start the README's server with, localized, and the
    data directory they name."""
    data_dir = tmp_path / "data-mcp"
    assert PLACEHOLDER_BINARY == command, command
    assert PLACEHOLDER_DATA in args, args
    command = localized(command, data_dir, server)
    args = [localized(arg, data_dir, server) for arg in args]
    env = {key: localized(value, data_dir, server) for key, value in env.items()}
    assert not any("/path/to" in value for value in [command, *args, *env.values()])
    assert Path(env["EMBEDDING_MODEL_PATH"]).is_dir(), env
    # Run elsewhere than the repository, with the harness's environment (no server settings of
    # the caller, and thus no model path): what the configuration says must be enough.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    base = environment(tmp_path)
    base.pop("EMBEDDING_MODEL_PATH")
    return StdioServerParameters(command=command, args=args, env={**base, **env}, cwd=str(cwd)), data_dir


async def remember_and_recall(session: Any, scope: Dict[str, str], named: bool) -> str:
    """Remembers a fact (naming `scope`, or in the credential's own), recalls it; its id."""
    fact = f"User's favourite tea is {new_id('oolong')}"
    arguments = {"scope": scope} if named else {}
    [memory] = ok(await session.call_tool("remember", {"fact": fact, **arguments}))["memories"]
    assert memory["scope"] == scope and memory["fact"] == fact
    found = ok(await session.call_tool("recall", {"query": fact, **arguments}))["results"]
    assert found and found[0]["memory"]["id"] == memory["id"]
    return memory["id"]


async def run_stdio(parameters: StdioServerParameters, data_dir: Path) -> None:
    stderr_path = data_dir.parent / "stderr.log"
    async with connect(stdio_transport(parameters, stderr_path)) as (session, init):
        assert init.server_info.name == "contextiq"
        assert len((await session.list_tools()).tools) == 8
        # Bound to the README's --scope: recall and remember need no scope.
        await remember_and_recall(session, README_SCOPE, named=False)
    assert (data_dir / "admin-key.txt").exists(), "the process did not use the data directory it was given"
    assert not error_log_lines(stderr_path), error_log_lines(stderr_path)


async def run_http(url: str, headers: Dict[str, str], server: Any, scope: Dict[str, str], named: bool) -> None:
    assert url.startswith(PLACEHOLDER_URL + "/"), url
    url = url.replace(PLACEHOLDER_URL, server.url)
    async with connect(http_transport(url, headers)) as (session, init):
        assert init.server_info.name == "contextiq"
        memory_id = await remember_and_recall(session, scope, named=named)
    with server.client() as native:
        assert native.memories.get(memory_id).scope == scope


def real_key(headers: Dict[str, str], key: str) -> Dict[str, str]:
    assert list(headers.values()) == [PLACEHOLDER_KEY], headers
    return {name: key for name in headers}


async def test_the_stdio_json_config_runs(server: Any, tmp_path: Path, mcp_environment: Callable) -> None:
    config = json.loads(marked_block("python mcp stdio", "json"))
    [(name, entry)] = config["mcpServers"].items()
    assert name == "contextiq" and set(entry) == {"command", "args", "env"}
    parameters, data_dir = stdio_server(entry["command"], entry["args"], entry["env"], tmp_path, server,
                                        mcp_environment)
    assert parameters.args[:1] == ["mcp"] and json.loads(parameters.args[-1]) == README_SCOPE
    await run_stdio(parameters, data_dir)


async def test_the_claude_code_commands_run(server: Any, tmp_path: Path, mcp_environment: Callable,
                                            user: str) -> None:
    lines = [line for line in marked_block("python mcp claude-code", "bash").splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("claude mcp add ") for line in lines), lines
    stdio, http = (parse_claude_mcp_add(line) for line in lines)

    assert stdio["name"] == "contextiq" and stdio["transport"] == "stdio" and not stdio["headers"]
    command, *args = stdio["target"]
    parameters, data_dir = stdio_server(command, args, stdio["env"], tmp_path, server, mcp_environment)
    await run_stdio(parameters, data_dir)

    assert http["name"] == "contextiq" and http["transport"] == "http" and not http["env"]
    [url] = http["target"]
    # A key limited to one user: the tools act in that user's scope without naming it.
    scope = {"user_id": user}
    await run_http(url, real_key(http["headers"], server.scoped_key(scope)), server, scope, named=False)


async def test_the_http_json_config_runs(server: Any, user: str) -> None:
    config = json.loads(marked_block("python mcp http", "json"))
    [(name, entry)] = config["mcpServers"].items()
    assert name == "contextiq" and set(entry) == {"url", "headers"}
    # The admin key (data/admin-key.txt): each call names its scope.
    await run_http(entry["url"], real_key(entry["headers"], server.admin_key), server, {"user_id": user}, named=True)
