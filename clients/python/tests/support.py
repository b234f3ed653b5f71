"""Helpers of the suite: the running server, recording transports, JWTs, ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Set, Tuple

import httpx

from contextiq import OPERATIONS

REPO_ROOT = Path(__file__).resolve().parents[3]
SDK_ROOT = Path(__file__).resolve().parents[1]

# The HS256 secret of the main server's JWTs (at least 32 bytes).
JWT_SECRET = "python-sdk-test-secret-0123456789abcdef"

ALL_DATA_PERMISSIONS = ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"]


@dataclass
class Server:
    name: str
    url: str
    admin_key: str
    data_dir: Path
    process: subprocess.Popen
    log_file: IO[bytes]

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def unique(prefix: str) -> str:
    """An id no other test uses: the tests share one server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_jwt(claims: Dict[str, Any], secret: str = JWT_SECRET) -> str:
    """An HS256 JWT, signed with the standard library."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def jwt_for(sub: str, permissions: Sequence[str], org_id: str = "default", ttl: int = 600,
            scope: Optional[Dict[str, str]] = None) -> str:
    claims: Dict[str, Any] = {"sub": sub, "org_id": org_id, "permissions": list(permissions), "iss": "contextiq",
                              "exp": int(time.time()) + ttl}
    if scope is not None:
        claims["scope"] = scope
    return make_jwt(claims)


def _template_patterns() -> List[Tuple[str, str, "re.Pattern[str]"]]:
    patterns = []
    # Literal templates first, so /api/v1/memories/search is not taken for /api/v1/memories/{id}.
    for method, template in sorted(OPERATIONS, key=lambda op: (op[1].count("{"), op[1])):
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        patterns.append((method, template, re.compile(regex)))
    return patterns


_PATTERNS = _template_patterns()


def operation_of(method: str, path: str) -> Optional[Tuple[str, str]]:
    for op_method, template, regex in _PATTERNS:
        if op_method == method and regex.match(path):
            return (op_method, template)
    return None


@dataclass
class Exchange:
    method: str
    path: str
    operation: Optional[Tuple[str, str]]
    status: int
    headers: Dict[str, str] = field(default_factory=dict)


class _Recorder:
    def __init__(self) -> None:
        self.exchanges: List[Exchange] = []

    def _record(self, request: httpx.Request, response: httpx.Response) -> None:
        self.exchanges.append(Exchange(
            method=request.method,
            path=request.url.path,
            operation=operation_of(request.method, request.url.path),
            status=response.status_code,
            headers={k.lower(): v for k, v in request.headers.items()},
        ))

    @property
    def operations(self) -> Set[Tuple[str, str]]:
        return {e.operation for e in self.exchanges if e.operation is not None and e.status < 400}

    def statuses(self) -> List[int]:
        return [e.status for e in self.exchanges]

    def count(self, method: str, template: str) -> int:
        return sum(1 for e in self.exchanges if e.operation == (method, template))


def _is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


class RecordingTransport(httpx.BaseTransport, _Recorder):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        _Recorder.__init__(self)
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not _is_stream(response):  # a live stream has no end to read up to
            response.read()
        self._record(request, response)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport, _Recorder):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        _Recorder.__init__(self)
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not _is_stream(response):
            await response.aread()
        self._record(request, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def problem(status: int, code: str, detail: str = "", field: Optional[str] = None,
            headers: Optional[Dict[str, str]] = None) -> httpx.Response:
    """A problem+json answer, for mock transports."""
    document: Dict[str, Any] = {"type": f"urn:contextiq:problem:{code}", "title": code.replace("_", " ").capitalize(),
                                "status": status, "detail": detail or code, "code": code}
    if field is not None:
        document["field"] = field
    return httpx.Response(status, content=json.dumps(document).encode(),
                          headers={"content-type": "application/problem+json", **(headers or {})})
