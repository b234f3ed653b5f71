"""Resources, over Streamable HTTP and stdio: the memories of the credential's own scope
(`contextiq://memories`) and of a user (`contextiq://users/{user_id}/memories`), bounded by the
credential as the tools are."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest
from mcp.shared.exceptions import MCPError

from mcp_support import Connection, new_id, ok

pytestmark = pytest.mark.asyncio(loop_scope="session")


def contents_of(result: Any) -> Dict[str, Any]:
    assert len(result.contents) == 1, result
    content = result.contents[0]
    assert content.mime_type == "application/json", content
    return json.loads(content.text)


async def test_the_credentials_scope_is_a_resource_and_a_users_a_template(mcp: Connection) -> None:
    listed = await mcp.session.list_resources()
    assert [(str(r.uri), r.name, r.mime_type) for r in listed.resources] == [
        ("contextiq://memories", "memories", "application/json")]
    assert json.dumps(mcp.scope, separators=(",", ":")) in (listed.resources[0].description or "")
    templates = await mcp.session.list_resource_templates()
    assert [t.uri_template for t in templates.resource_templates] == ["contextiq://users/{user_id}/memories"]


async def test_reading_the_resources_lists_the_newest_memories_of_the_scope(mcp: Connection) -> None:
    # Writes in the credential's own scope, as test_without_a_scope_the_tools_act_on_the_credentials_own does.
    fact = f"User collects {new_id('stamps')} stamps"
    remembered = ok(await mcp.call("remember", fact=fact))
    assert remembered["status"] == "completed", remembered
    for uri in ["contextiq://memories", f"contextiq://users/{mcp.scope['user_id']}/memories"]:
        body = contents_of(await mcp.session.read_resource(uri))
        assert body["scope"] == mcp.scope, body
        assert fact in [memory["fact"] for memory in body["memories"]], body
        assert all(memory["scope"] == mcp.scope for memory in body["memories"]), body


async def test_another_users_memories_and_unknown_resources_are_refused(mcp: Connection) -> None:
    with pytest.raises(MCPError) as refused:
        await mcp.session.read_resource(f"contextiq://users/{new_id('someone-else')}/memories")
    assert refused.value.data["status"] == 403, refused.value.data
    assert refused.value.data["code"] == "forbidden", refused.value.data
    for uri in ["contextiq://nothing", "contextiq://users//memories", "contextiq://users/a/b/memories"]:
        with pytest.raises(MCPError) as missing:
            await mcp.session.read_resource(uri)
        assert missing.value.code == -32002, (uri, missing.value)
