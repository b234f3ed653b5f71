"""The server under test of the integrations suite (MCP, OpenAI Agents, LangGraph, LlamaIndex).

The real `contextiq serve` (env `CONTEXTIQ_BIN`, default `target/debug/contextiq` under the
repository root), started from the repository root (where it finds `models/`) on a free loopback
port (the port is read from its "listening" log line) with a fresh data directory and
authentication on; the admin key is the one it writes to `admin-key.txt` on first start. One
server for the whole run: tests keep apart by using ids of their own (`unique`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, Iterator, Optional

import httpx
import pytest

import contextiq

REPO_ROOT = Path(__file__).resolve().parents[1]

# Server settings the caller's environment must not leak into the server under test (an LLM
# provider or a database URL there would change what is tested).
_SERVER_ENV_PREFIXES = (
    "AUTH_", "CONTEXTIQ_", "DATABASE_", "EMBEDDING_", "LLM_", "QDRANT_", "RABBITMQ_", "REDIS_",
    "WORKER_", "RATE_LIMIT_", "SESSION_", "MEMORY_", "SESSIONS_", "JOB_", "CONSOLIDATION_",
    "SEARCH_", "MAX_", "OTEL_", "LOG_", "CORS_", "REQUEST_", "SHUTDOWN_", "MCP_",
)
_SERVER_ENV_NAMES = ("ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "SERVICE_NAME")

for _name in ("CONTEXTIQ_API_KEY", "CONTEXTIQ_BASE_URL", "CONTEXTIQ_ENGINE"):
    os.environ.pop(_name, None)


@dataclass
class Server:
    url: str
    admin_key: str
    data_dir: Path
    binary: Path
    process: subprocess.Popen
    log_file: IO[bytes]

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, api_key: Optional[str] = None, engine: Optional[str] = None) -> contextiq.ContextIQ:
        """A native SDK client (the admin key unless another is given), to check what a tool did."""
        return contextiq.ContextIQ(base_url=self.url, api_key=api_key or self.admin_key, engine=engine)

    def scoped_key(self, scope: Dict[str, str], permissions: Optional[list] = None) -> str:
        """A new API key of the default org limited to `scope`."""
        with self.client() as admin:
            created = admin.keys.create(
                name=unique("key"),
                permissions=permissions or ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"],
                scope=scope,
            )
        return created.key


def unique(prefix: str) -> str:
    """An id no other test uses: the tests share one server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def server_environment(data_dir: Path) -> Dict[str, str]:
    """The environment of a `contextiq` process under test: the caller's, minus server settings."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(_SERVER_ENV_PREFIXES) and key not in _SERVER_ENV_NAMES
    }
    env.update({
        "CONTEXTIQ_DATA_DIR": str(data_dir),
        "AUTH_REQUIRE_AUTH": "true",
        "RATE_LIMIT_PER_SECOND": "0",
        "LOG_FORMAT": "json",
    })
    return env


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


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    binary = _binary()
    data_dir = Path(tempfile.mkdtemp(prefix="contextiq-integrations-"))
    env = server_environment(data_dir)
    env["CONTEXTIQ_BIND"] = "127.0.0.1:0"
    log_path = data_dir / "server.log"
    log = open(log_path, "wb")
    process = subprocess.Popen([str(binary), "serve"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    key_file = data_dir / "admin-key.txt"
    while True:
        if process.poll() is not None:
            log.close()
            sys.stderr.write(log_path.read_text(errors="replace"))
            pytest.exit(f"the server exited with {process.returncode} before it was ready", returncode=2)
        address = _listening_address(log_path)
        if address and key_file.exists() and key_file.read_text().strip():
            try:
                if httpx.get(f"http://{address}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.exit("the server did not become ready within 120 s", returncode=2)
        time.sleep(0.1)
    running = Server(url=f"http://{address}", admin_key=key_file.read_text().strip(), data_dir=data_dir,
                     binary=binary, process=process, log_file=log)
    yield running
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    errors = [line for line in running.log().splitlines() if '"level":"ERROR"' in line]
    if os.environ.get("CONTEXTIQ_KEEP_DATA"):
        print(f"server data and log kept in {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert not errors, "the server logged errors:\n" + "\n".join(line[:600] for line in errors[:20])


@pytest.fixture
def user() -> str:
    """A user id of this test alone."""
    return unique("user")
