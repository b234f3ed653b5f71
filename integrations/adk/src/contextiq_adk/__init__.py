"""Google ADK session and memory services backed by a ContextIQ server.

ContextIQ serves Google's Vertex AI Agent Engine Sessions and Memory Bank API
(``/v1beta1/.../reasoningEngines/{engine}/...``), so ADK's own
``VertexAiSessionService`` and ``VertexAiMemoryBankService`` talk to it
unchanged once their API client points at the server and authenticates with a
ContextIQ API key. The two classes here do only that: they override
``_build_api_client()``, the hook ADK documents for a custom endpoint or
credentials.

``register()`` adds the URI scheme ``contextiq`` to ADK's service registry, so
``adk web --session_service_uri=contextiq://HOST:PORT/ENGINE
--memory_service_uri=contextiq://HOST:PORT/ENGINE`` uses them.
"""

from __future__ import annotations

import os
from typing import Any
from typing import Optional
from urllib.parse import urlsplit

from google.adk.memory.vertex_ai_memory_bank_service import VertexAiMemoryBankService
from google.adk.sessions.vertex_ai_session_service import VertexAiSessionService

__all__ = [
    "ContextIQMemoryBankService",
    "ContextIQSessionService",
    "DEFAULT_BASE_URL",
    "DEFAULT_ENGINE",
    "SCHEME",
    "make_client",
    "parse_uri",
    "register",
]

__version__ = "0.1.0"

#: The URI scheme `register()` adds to ADK's service registry.
SCHEME = "contextiq"
#: Where `contextiq serve` listens by default.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
#: The engine ContextIQ's native API (`/api/v1`) acts on.
DEFAULT_ENGINE = "default"
#: Placeholders: Google's clients put them into every path; ContextIQ ignores them.
DEFAULT_PROJECT = "local"
DEFAULT_LOCATION = "local"

API_KEY_ENV = "CONTEXTIQ_API_KEY"
BASE_URL_ENV = "CONTEXTIQ_BASE_URL"


def _base_url(base_url: Optional[str]) -> str:
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if "://" not in url:
        raise ValueError(f"base_url must be an http(s) URL, got {url!r}")
    # The client appends `v1beta1/...` to the base URL; keep any path prefix.
    return url if url.endswith("/") else url + "/"


def _api_key(api_key: Optional[str]) -> str:
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ValueError(
            f"no ContextIQ API key: pass api_key= or set {API_KEY_ENV}"
        )
    return key


def make_client(
    base_url: Optional[str] = None,
    api_key: Optional[str] = None,
    *,
    project: str = DEFAULT_PROJECT,
    location: str = DEFAULT_LOCATION,
) -> Any:
    """An `agentplatform.Client` that talks to a ContextIQ server.

    The key travels as `Authorization: Bearer <key>`: a static OAuth token that
    google-auth never tries to refresh. `project` and `location` only shape the
    request paths (`/v1beta1/projects/{project}/locations/{location}/...`).
    Use `.aio` for the async client ADK's services use, or the client itself for
    the synchronous SDK (`client.sessions`, `client.memory_banks.memories`, ...).
    """
    import agentplatform
    import google.oauth2.credentials

    return agentplatform.Client(
        project=project,
        location=location,
        credentials=google.oauth2.credentials.Credentials(token=_api_key(api_key)),
        http_options={"base_url": _base_url(base_url)},
    )


class _ContextIQService:
    """What both services add to ADK's: the ContextIQ server, its key, and a client of it.

    Mixed in before ADK's class, so its `_build_api_client()` (the hook ADK documents for a
    custom endpoint or credentials) is the one that runs.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        engine: str = DEFAULT_ENGINE,
        *,
        project: str = DEFAULT_PROJECT,
        location: str = DEFAULT_LOCATION,
    ):
        super().__init__(project=project, location=location, agent_engine_id=engine)
        self._contextiq_base_url = _base_url(base_url)
        self._contextiq_api_key = _api_key(api_key)

    @classmethod
    def from_uri(cls, uri: str) -> Any:
        """A service for `contextiq://HOST:PORT[/PREFIX...]/ENGINE`."""
        base_url, engine = parse_uri(uri)
        return cls(base_url=base_url, engine=engine)

    @property
    def engine(self) -> str:
        return self._agent_engine_id

    def _build_api_client(self) -> Any:
        return make_client(
            self._contextiq_base_url,
            self._contextiq_api_key,
            project=self._project,
            location=self._location,
        ).aio


class ContextIQSessionService(_ContextIQService, VertexAiSessionService):
    """ADK's `VertexAiSessionService`, talking to ContextIQ.

    Args:
        base_url: The server, e.g. `http://127.0.0.1:8000` (default: env
            `CONTEXTIQ_BASE_URL`, else `http://127.0.0.1:8000/`).
        api_key: A ContextIQ API key (`ck_...`) or JWT (default: env
            `CONTEXTIQ_API_KEY`).
        engine: The reasoning engine: a partition of the key's org; any id of
            1-63 characters of `[A-Za-z0-9_-]` exists on first use.
        project, location: Placeholders that only appear in request paths.
    """


class ContextIQMemoryBankService(_ContextIQService, VertexAiMemoryBankService):
    """ADK's `VertexAiMemoryBankService`, talking to ContextIQ.

    Takes the same arguments as `ContextIQSessionService`.
    """


def parse_uri(uri: str) -> tuple[str, str]:
    """`contextiq://HOST:PORT[/PREFIX...][/ENGINE]` as (base URL, engine).

    The server is reached over plain http; the last path segment is the engine
    (default `default`), any segments before it a path prefix of the server
    (e.g. behind a reverse proxy).
    """
    parts = urlsplit(uri)
    if parts.scheme != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URI: {uri!r}")
    if not parts.netloc:
        raise ValueError(f"{SCHEME}:// URI without a host: {uri!r}")
    if parts.query or parts.fragment:
        raise ValueError(
            f"{SCHEME}:// URIs take no query or fragment (the API key comes from"
            f" {API_KEY_ENV}): {uri!r}"
        )
    segments = [segment for segment in parts.path.split("/") if segment]
    engine = segments.pop() if segments else DEFAULT_ENGINE
    prefix = "".join(segment + "/" for segment in segments)
    return f"http://{parts.netloc}/{prefix}", engine


def _session_factory(uri: str, **_: Any) -> ContextIQSessionService:
    return ContextIQSessionService.from_uri(uri)


def _memory_factory(uri: str, **_: Any) -> ContextIQMemoryBankService:
    return ContextIQMemoryBankService.from_uri(uri)


def register(registry: Any = None) -> None:
    """Registers `contextiq://` for ADK's session and memory service URIs.

    Call it from `<agents_dir>/services.py`; `adk web` and `adk api_server` load
    that file before they resolve `--session_service_uri` and
    `--memory_service_uri`. The API key is read from `CONTEXTIQ_API_KEY`.
    """
    if registry is None:
        from google.adk.cli.service_registry import get_service_registry

        registry = get_service_registry()
    registry.register_session_service(SCHEME, _session_factory)
    registry.register_memory_service(SCHEME, _memory_factory)
