"""The handshake and the tool list, over Streamable HTTP and stdio: what an assistant learns of
the server before it calls anything."""

from __future__ import annotations

import pytest

from mcp_support import Connection

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Each tool and the arguments it requires; the others are optional.
TOOLS = {
    "remember": ({"fact"}, {"fact", "topic", "scope", "wait_seconds"}),
    "recall": ({"query"}, {"query", "scope", "top_k", "topic", "said_after", "said_before", "recency_weight",
                           "recency_half_life_days"}),
    "forget": ({"memory_id"}, {"memory_id"}),
    "list_memories": (set(), {"scope", "topic", "limit", "cursor"}),
    "memory_history": ({"memory_id"}, {"memory_id"}),
    "record_turns": ({"turns"}, {"turns", "session_id", "scope", "agent_id"}),
    "generate_memories": ({"session_id"}, {"session_id", "wait_seconds"}),
    "get_job": ({"job_id"}, {"job_id"}),
}
READ_ONLY = {"recall", "list_memories", "memory_history", "get_job"}


async def test_initialize_names_the_server_and_tells_how_to_use_it(mcp: Connection) -> None:
    init = mcp.init
    assert init.server_info.name == "contextiq"
    assert init.server_info.title == "ContextIQ memory"
    assert init.server_info.version
    assert init.protocol_version
    assert init.capabilities.tools is not None
    instructions = init.instructions or ""
    for tool in ("recall", "remember", "forget"):
        assert tool in instructions, instructions
    # The session keeps what the handshake said.
    assert mcp.session.server_info == init.server_info and mcp.session.instructions == instructions
    await mcp.session.send_ping()


async def test_the_tools_are_listed_with_descriptions_and_input_schemas(mcp: Connection) -> None:
    listed = await mcp.session.list_tools()
    assert listed.next_cursor is None
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == set(TOOLS) and len(listed.tools) == len(TOOLS)
    for name, (required, properties) in TOOLS.items():
        tool = tools[name]
        assert tool.description and len(tool.description) > 30, name
        schema = tool.input_schema
        assert schema["type"] == "object", name
        assert set(schema.get("required", [])) == required, name
        assert set(schema["properties"]) == properties, name
        # Unknown arguments are refused (see test_mcp_errors), and the schema says so.
        assert schema.get("additionalProperties") is False, name
        for prop, spec in schema["properties"].items():
            assert spec.get("description"), f"{name}.{prop} has no description"
        assert tool.annotations is not None and tool.annotations.title, name
        assert bool(tool.annotations.read_only_hint) == (name in READ_ONLY), name
    assert tools["forget"].annotations.destructive_hint is True
    assert tools["remember"].annotations.destructive_hint is False
    # The argument types an assistant fills in.
    assert tools["remember"].input_schema["properties"]["fact"]["type"] == "string"
    assert tools["recall"].input_schema["properties"]["query"]["type"] == "string"
    assert "integer" in tools["recall"].input_schema["properties"]["top_k"]["type"]
    said_after = tools["recall"].input_schema["properties"]["said_after"]
    assert "string" in said_after["type"] and said_after["format"] == "date-time"
    assert "number" in tools["recall"].input_schema["properties"]["recency_weight"]["type"]
    scope = tools["recall"].input_schema["properties"]["scope"]
    assert "object" in scope["type"] and scope["additionalProperties"] == {"type": "string"}
    assert tools["record_turns"].input_schema["properties"]["turns"]["type"] == "array"
    for name in ("forget", "memory_history"):
        assert tools[name].input_schema["properties"]["memory_id"] == {
            **tools[name].input_schema["properties"]["memory_id"], "type": "string", "format": "uuid"}
