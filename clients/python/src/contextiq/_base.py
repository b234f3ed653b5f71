"""What the two clients share and that does no I/O: settings, request encoding, retry policy."""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

import httpx

from ._errors import parse_retry_after
from ._operations import is_idempotent, takes_engine
from ._version import __version__

__all__ = ["NOT_GIVEN", "NotGiven", "ClientConfig", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENGINE_HEADER = "X-Engine-Id"
_ENGINE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")

# Exponential backoff when the server names no delay: 0.5 s, 1 s, 2 s, ... up to 8 s, each
# with up to 25 % of jitter so that clients throttled together do not come back together.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
# A Retry-After longer than this is not waited out: the error is raised with `retry_after`.
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = (429, 503)


class NotGiven:
    """The default of an argument that is left out of the request (unlike `None`, sent as null)."""

    _instance: Optional["NotGiven"] = None

    def __new__(cls) -> "NotGiven":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


def validate_engine(engine: Optional[str]) -> Optional[str]:
    if engine is None:
        return None
    if not isinstance(engine, str) or not _ENGINE.match(engine):
        raise ValueError(f"an engine id is 1 to 63 characters of A-Z, a-z, 0-9, '_' and '-': {engine!r}")
    return engine


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: Optional[str]
    token: Optional[str]
    engine: Optional[str]
    timeout: Optional[float]
    max_retries: int
    headers: Tuple[Tuple[str, str], ...]

    @classmethod
    def create(
        cls,
        base_url: Optional[str],
        api_key: Optional[str],
        token: Optional[str],
        engine: Optional[str],
        timeout: Optional[float],
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
    ) -> "ClientConfig":
        if api_key is not None and token is not None:
            raise ValueError("give api_key or token, not both: the server refuses two credentials (400)")
        if api_key is None and token is None:
            api_key = os.environ.get("CONTEXTIQ_API_KEY") or None
        if base_url is None:
            base_url = os.environ.get("CONTEXTIQ_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries is a count of 0 or more: {max_retries!r}")
        headers: Dict[str, str] = {"User-Agent": f"contextiq-python/{__version__}", "Accept": "application/json"}
        headers.update(default_headers or {})
        return cls(
            base_url=base_url.rstrip("/"),
            api_key=api_key,
            token=token,
            engine=validate_engine(engine),
            timeout=timeout,
            max_retries=max_retries,
            headers=tuple(headers.items()),
        )

    def with_engine(self, engine: Optional[str]) -> "ClientConfig":
        return ClientConfig(
            base_url=self.base_url,
            api_key=self.api_key,
            token=self.token,
            engine=validate_engine(engine),
            timeout=self.timeout,
            max_retries=self.max_retries,
            headers=self.headers,
        )

    def client_headers(self) -> Dict[str, str]:
        headers = dict(self.headers)
        if self.api_key is not None:
            headers["X-API-Key"] = self.api_key
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request_headers(self, template: str, content_type: Optional[str]) -> Dict[str, str]:
        """The headers of one request beyond the client's: the engine and the body's type."""
        headers: Dict[str, str] = {}
        if self.engine is not None and takes_engine(template):
            headers[ENGINE_HEADER] = self.engine
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers


def expand(template: str, ids: Mapping[str, str]) -> str:
    """The path of an operation: `{id}` filled in, percent-encoded (an id never adds a segment)."""
    path = template
    for name, value in ids.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def format_time(value: Union[datetime, date, str]) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date):
        return value.isoformat()
    return value


def jsonable(value: Any) -> Any:
    """A request value as JSON: times as RFC 3339, mappings and sequences converted within."""
    if isinstance(value, (datetime, date)):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def body(**fields: Any) -> Dict[str, Any]:
    """A request body of the given fields, leaving out those that are None or NOT_GIVEN."""
    return {name: value for name, value in fields.items() if value is not None and value is not NOT_GIVEN}


def patch_body(**fields: Any) -> Dict[str, Any]:
    """A PATCH body: NOT_GIVEN fields left out, `None` sent as null (it clears the field)."""
    return {name: value for name, value in fields.items() if value is not NOT_GIVEN}


def encode(payload: Any) -> bytes:
    return json.dumps(jsonable(payload), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def query(**params: Any) -> Dict[str, str]:
    """Query parameters, leaving out None; booleans as true/false, times as RFC 3339."""
    out: Dict[str, str] = {}
    for name, value in params.items():
        if value is None or value is NOT_GIVEN:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, (datetime, date)):
            out[name] = format_time(value)
        elif isinstance(value, Mapping):
            out[name] = json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False)
        else:
            out[name] = str(value)
    return out


def backoff(attempt: int) -> float:
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** attempt)
    return delay * (1 + random.random() * 0.25)


def retry_delay(response: httpx.Response, method: str, template: str, attempt: int, max_retries: int) -> Optional[float]:
    """How long to wait before sending a failed request again, or None to raise its error.

    429 and 503 are retried, after `Retry-After` when the server sends it (jitter of up to a
    quarter second added), else after the exponential backoff. Not retried: a 503 `timeout` of
    a request that is not idempotent (it ran on the server and may have taken effect), and a
    `Retry-After` over a minute.
    """
    if attempt >= max_retries or response.status_code not in RETRY_STATUSES:
        return None
    if response.status_code == 503 and not is_idempotent(method, template) and _problem_code(response) == "timeout":
        return None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None:
        return backoff(attempt)
    if retry_after > MAX_RETRY_AFTER:
        return None
    return retry_after + random.random() * 0.25


def transport_retry_delay(error: httpx.TransportError, method: str, template: str, attempt: int,
                          max_retries: int) -> Optional[float]:
    """Connection failures: retried for idempotent operations; for the others only when the
    request cannot have reached the server (the connection was never made)."""
    if attempt >= max_retries:
        return None
    never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    if never_sent or is_idempotent(method, template):
        return backoff(attempt)
    return None


def _problem_code(response: httpx.Response) -> Optional[str]:
    try:
        data = response.json()
    except ValueError:
        return None
    return data.get("code") if isinstance(data, dict) else None


def decode_json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


class ServerSentEvents:
    """Reads Server-Sent Events line by line: `feed` returns `(event, data)` at the end of each
    event that carries data (its JSON decoded); comments and keep-alives give nothing."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: List[str] = []

    def feed(self, line: str) -> Optional[Tuple[str, Any]]:
        line = line.rstrip("\r")
        if line == "":
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return (event, json.loads(data)) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
