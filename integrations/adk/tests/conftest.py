"""Fixtures: one real `contextiq serve` for the whole run, and clients of it.

The server is the built binary (env `CONTEXTIQ_BIN`, default `target/debug/contextiq`
relative to the repository root), started on a free loopback port with a fresh data
directory and authentication on, as scripts/schemathesis.sh starts it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from support import REPO_ROOT, Server, sdk_client, unique
from support import _SERVER_ENV_NAMES, _SERVER_ENV_PREFIXES


# Lines for the end of the run: a session fixture's teardown output is otherwise captured.
_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("contextiq server")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    binary = Path(os.environ.get("CONTEXTIQ_BIN", "target/debug/contextiq"))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.exists():
        pytest.exit(f"no server binary at {binary}: build it first (cargo build)", returncode=2)
    data_dir = Path(tempfile.mkdtemp(prefix="contextiq-adk-"))
    port = _free_port()
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(_SERVER_ENV_PREFIXES) and name not in _SERVER_ENV_NAMES
    }
    env.update({
        "CONTEXTIQ_BIND": f"127.0.0.1:{port}",
        "CONTEXTIQ_DATA_DIR": str(data_dir),
        "AUTH_REQUIRE_AUTH": "true",
        "RATE_LIMIT_PER_SECOND": "0",
    })
    log = open(data_dir / "server.log", "wb")
    # From the repository root, where the server finds its embedding model (models/).
    process = subprocess.Popen([str(binary), "serve"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            log.flush()
            sys.stderr.write((data_dir / "server.log").read_text(errors="replace"))
            pytest.exit(f"the server exited with {process.returncode} before it was ready", returncode=2)
        key_file = data_dir / "admin-key.txt"
        if key_file.exists() and key_file.read_text().strip():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.exit("the server did not become ready within 120 s", returncode=2)
        time.sleep(0.2)
    running = Server(binary, data_dir, port, process, env)
    probe = running.http.get("/v1beta1/reasoningEngines/default/sessions",
                             headers={"Authorization": f"Bearer {running.admin_key}"})
    if probe.status_code == 404:
        process.kill()
        pytest.exit(f"this build serves no Agent Engine API (/v1beta1/...): {probe.text}", returncode=2)
    yield running
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    errors = [line for line in running.log().splitlines() if '"level":"ERROR"' in line or " ERROR " in line]
    if errors:
        _SUMMARY.append(f"the server logged {len(errors)} error(s) (a 501 of retrieveProfiles is expected):")
        _SUMMARY.extend(line[:600] for line in errors[:20])
    if os.environ.get("CONTEXTIQ_KEEP_DATA"):
        _SUMMARY.append(f"server data and log kept in {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server: Server) -> Any:
    """The synchronous `agentplatform.Client` with the admin key (project/location form)."""
    return sdk_client(server)


@pytest.fixture
def user() -> str:
    """A user id of this test alone (tests share one server)."""
    return unique("user")
