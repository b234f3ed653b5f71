"""Fixtures: the real `contextiq serve`, started for the run, and SDK clients of it.

The server is the built binary (env `CONTEXTIQ_BIN`, default `target/debug/contextiq` relative
to the repository root), started from the repository root (where it finds `models/`) on a
free loopback port (`CONTEXTIQ_BIND=127.0.0.1:0`; the port is read from its "listening" log
line, so no other process can take it in between) with a fresh data directory and
authentication on. The admin key is the one it writes to `admin-key.txt` on first start.
A second server, rate limited to 1 request per second with a burst of 1, is started only for
the retry tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import httpx
import pytest

from support import (
    JWT_SECRET,
    REPO_ROOT,
    AsyncRecordingTransport,
    RecordingTransport,
    Server,
    unique,
)

import contextiq

# Server settings the caller's environment must not leak into the servers under test (an LLM
# provider or a database URL there would change what is tested).
_SERVER_ENV_PREFIXES = (
    "AUTH_", "CONTEXTIQ_", "DATABASE_", "EMBEDDING_", "LLM_", "QDRANT_", "RABBITMQ_", "REDIS_",
    "WORKER_", "RATE_LIMIT_", "SESSION_", "MEMORY_", "SESSIONS_", "JOB_", "CONSOLIDATION_",
    "SEARCH_", "MAX_", "OTEL_", "LOG_", "CORS_", "REQUEST_", "SHUTDOWN_",
)
_SERVER_ENV_NAMES = ("ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "SERVICE_NAME")

# The SDK reads these; the tests set them where they mean to.
for _name in ("CONTEXTIQ_API_KEY", "CONTEXTIQ_BASE_URL"):
    os.environ.pop(_name, None)

_SUMMARY: list = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARY:
        terminalreporter.section("contextiq servers")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


def _binary() -> Path:
    binary = Path(os.environ.get("CONTEXTIQ_BIN", "target/debug/contextiq"))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.exists():
        pytest.exit(f"no server binary at {binary}: build it first (cargo build)", returncode=2)
    return binary


def _listening_address(log_path: Path) -> Optional[str]:
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "listening" and record.get("address"):
            return str(record["address"])
    return None


def start_server(name: str, extra_env: Dict[str, str]) -> Server:
    binary = _binary()
    data_dir = Path(tempfile.mkdtemp(prefix=f"contextiq-sdk-{name}-"))
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(_SERVER_ENV_PREFIXES) and key not in _SERVER_ENV_NAMES
    }
    env.update({
        "CONTEXTIQ_BIND": "127.0.0.1:0",
        "CONTEXTIQ_DATA_DIR": str(data_dir),
        "AUTH_REQUIRE_AUTH": "true",
        "RATE_LIMIT_PER_SECOND": "0",
        "LOG_FORMAT": "json",
    })
    env.update(extra_env)
    log_path = data_dir / "server.log"
    log = open(log_path, "wb")
    process = subprocess.Popen([str(binary), "serve"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    key_file = data_dir / "admin-key.txt"
    while True:
        if process.poll() is not None:
            log.close()
            sys.stderr.write(log_path.read_text(errors="replace"))
            pytest.exit(f"the {name} server exited with {process.returncode} before it was ready", returncode=2)
        address = _listening_address(log_path)
        if address and key_file.exists() and key_file.read_text().strip():
            try:
                if httpx.get(f"http://{address}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.exit(f"the {name} server did not become ready within 120 s", returncode=2)
        time.sleep(0.1)
    return Server(name=name, url=f"http://{address}", admin_key=key_file.read_text().strip(), data_dir=data_dir,
                  process=process, log_file=log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    server.log_file.close()
    errors = [line for line in server.log().splitlines() if '"level":"ERROR"' in line]
    if errors:
        _SUMMARY.append(f"the {server.name} server logged {len(errors)} error(s):")
        _SUMMARY.extend(line[:600] for line in errors[:20])
    if os.environ.get("CONTEXTIQ_KEEP_DATA"):
        _SUMMARY.append(f"{server.name} server data and log kept in {server.data_dir}")
    else:
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The server of the suite: authentication on, no rate limit, JWTs accepted."""
    running = start_server("main", {"AUTH_JWT_SECRET_KEY": JWT_SECRET})
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def limited_server() -> Iterator[Server]:
    """A server that allows each credential 1 request per second, with a burst of 1."""
    running = start_server("limited", {"RATE_LIMIT_PER_SECOND": "1", "RATE_LIMIT_BURST": "1"})
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[contextiq.ContextIQ]:
    """The synchronous client with the admin key, default engine."""
    with contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: Server) -> Any:
    """The asynchronous client with the admin key (one per test: each test has its own loop)."""
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key) as sdk:
        yield sdk


@pytest.fixture
def recorded(server: Server) -> Iterator[tuple]:
    """A synchronous admin client whose transport records every (method, path template, status)."""
    transport = RecordingTransport(httpx.HTTPTransport())
    with contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key, transport=transport) as sdk:
        yield sdk, transport


@pytest.fixture
async def arecorded(server: Server) -> Any:
    transport = AsyncRecordingTransport(httpx.AsyncHTTPTransport())
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key, transport=transport) as sdk:
        yield sdk, transport


@pytest.fixture
def user() -> str:
    """A user id of this test alone (the tests share one server)."""
    return unique("user")
