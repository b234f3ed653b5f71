"""`contextiq_adk.register()`: the `contextiq://` scheme in ADK's service registry, through the
code path `adk web` / `adk api_server` use (`services.py` in the agents directory, then
`create_*_service_from_options`)."""

from __future__ import annotations

import sys

import pytest
from google.adk.cli.service_registry import load_services_module
from google.adk.cli.utils.service_factory import (
    create_memory_service_from_options,
    create_session_service_from_options,
)

import contextiq_adk
from contextiq_adk import ContextIQMemoryBankService, ContextIQSessionService, parse_uri
from support import Server, unique


def test_parse_uri():
    assert parse_uri("contextiq://127.0.0.1:8080/my-agent") == ("http://127.0.0.1:8080/", "my-agent")
    assert parse_uri("contextiq://127.0.0.1:8080") == ("http://127.0.0.1:8080/", "default")
    assert parse_uri("contextiq://127.0.0.1:8080/") == ("http://127.0.0.1:8080/", "default")
    assert parse_uri("contextiq://host:1/ciq/api/agent-7") == ("http://host:1/ciq/api/", "agent-7")
    for bad in ["agentengine://1", "contextiq:///engine", "contextiq://h:1/e?key=ck_x"]:
        with pytest.raises(ValueError):
            parse_uri(bad)


def test_a_key_is_required(monkeypatch):
    monkeypatch.delenv("CONTEXTIQ_API_KEY", raising=False)
    with pytest.raises(ValueError, match="CONTEXTIQ_API_KEY"):
        ContextIQSessionService("http://127.0.0.1:1")
    monkeypatch.setenv("CONTEXTIQ_API_KEY", "ck_from_env")
    service = ContextIQMemoryBankService("http://127.0.0.1:1", engine="e1")
    assert service.engine == "e1"
    assert service._contextiq_api_key == "ck_from_env"


async def test_services_py_registers_the_scheme_for_the_cli(server: Server, tmp_path, monkeypatch, user):
    monkeypatch.setenv("CONTEXTIQ_API_KEY", server.admin_key)
    agents_dir = tmp_path / "agents"
    agents_dir.mkdir()
    (agents_dir / "services.py").write_text("from contextiq_adk import register\nregister()\n")
    monkeypatch.delitem(sys.modules, "services", raising=False)
    load_services_module(str(agents_dir))
    try:
        engine = unique("cli")
        uri = f"contextiq://127.0.0.1:{server.port}/{engine}"
        sessions = create_session_service_from_options(base_dir=agents_dir, session_service_uri=uri)
        memory = create_memory_service_from_options(base_dir=agents_dir, memory_service_uri=uri)
        assert isinstance(sessions, ContextIQSessionService) and sessions.engine == engine
        assert isinstance(memory, ContextIQMemoryBankService) and memory.engine == engine

        session = await sessions.create_session(app_name="cli_app", user_id=user, state={"via": "uri"})
        assert server.native("GET", f"/sessions/{session.id}", engine=engine).json()["state"] == {"via": "uri"}
        assert (await memory.search_memory(app_name="cli_app", user_id=user, query="anything")).memories == []
    finally:
        sys.modules.pop("services", None)
        if str(agents_dir) in sys.path:
            sys.path.remove(str(agents_dir))


def test_register_into_a_given_registry(monkeypatch):
    from google.adk.cli.service_registry import ServiceRegistry

    monkeypatch.setenv("CONTEXTIQ_API_KEY", "ck_test")
    registry = ServiceRegistry()
    contextiq_adk.register(registry)
    sessions = registry.create_session_service("contextiq://127.0.0.1:9/agent-1", agents_dir="x")
    memory = registry.create_memory_service("contextiq://127.0.0.1:9", agents_dir="x")
    assert isinstance(sessions, ContextIQSessionService) and sessions.engine == "agent-1"
    assert isinstance(memory, ContextIQMemoryBankService) and memory.engine == "default"
    assert sessions._contextiq_base_url == "http://127.0.0.1:9/"
    assert registry.create_session_service("memory://") is None  # only its own scheme
