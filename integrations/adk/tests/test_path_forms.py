"""Both path forms: `/v1beta1/projects/{p}/locations/{l}/reasoningEngines/{e}/...` (project
and location set) and `/v1beta1/reasoningEngines/{e}/...` (express mode with an API key, and
COLLECTION scope). Both name the same records."""

from __future__ import annotations

import pytest
from google.genai import types
from google.genai.errors import ClientError

from support import Server, collection_client, engine_name, express_client, sdk_client, unique

ENGINE = engine_name()


@pytest.fixture(params=["express", "collection"])
def short_form(request, server: Server):
    return express_client(server) if request.param == "express" else collection_client(server)


def test_sessions_in_both_forms(server: Server, client, short_form, user):
    session_id = unique("short")
    created = short_form.sessions.create(name=ENGINE, user_id=user, config={"session_id": session_id,
                                                                          "session_state": {"a": 1}})
    assert created.response.name == f"reasoningEngines/default/sessions/{session_id}"
    assert created.name.startswith(f"reasoningEngines/default/sessions/{session_id}/operations/")

    # The project form reads the same session, and names it with its prefix.
    long = client.sessions.get(name=f"{ENGINE}/sessions/{session_id}")
    assert long.name == f"projects/local/locations/local/reasoningEngines/default/sessions/{session_id}"
    assert (long.user_id, long.session_state) == (user, {"a": 1})

    # Any project and location name the same engine.
    elsewhere = sdk_client(server, project="my-project", location="us-central1")
    other = elsewhere.sessions.get(name=f"{ENGINE}/sessions/{session_id}")
    assert other.name == f"projects/my-project/locations/us-central1/reasoningEngines/default/sessions/{session_id}"

    client.sessions.events.append(name=long.name, author="user", invocation_id="i1",
                                  timestamp=long.update_time, config={"content": {"role": "user", "parts": [{"text": "hi"}]}})
    events = list(short_form.sessions.events.list(name=created.response.name))
    assert [event.content.parts[0].text for event in events] == ["hi"]
    assert events[0].name.startswith(f"reasoningEngines/default/sessions/{session_id}/events/")

    listed = list(short_form.sessions.list(name=ENGINE, config={"filter": f'user_id="{user}"'}))
    assert [session.name for session in listed] == [created.response.name]

    short_form.sessions.delete(name=created.response.name)
    with pytest.raises(ClientError) as raised:
        client.sessions.get(name=long.name)
    assert raised.value.code == 404


def test_memories_in_both_forms(server: Server, client, short_form, user):
    memories = short_form.memory_banks.memories
    memory_id = unique("short")
    created = memories.create(name=ENGINE, fact="User likes sailing", scope={"user_id": user},
                              config={"memory_id": memory_id}).response
    assert created.name == f"reasoningEngines/default/memories/{memory_id}"
    assert client.memory_banks.memories.get(name=f"{ENGINE}/memories/{memory_id}").fact == "User likes sailing"

    operation = memories.generate(name=ENGINE, scope={"user_id": user}, direct_contents_source={
        "events": [{"content": {"role": "user", "parts": [{"text": "I live in Madrid."}]}}]})
    assert operation.name.startswith("reasoningEngines/default/operations/generate-")
    assert operation.done is True
    [generated] = operation.response.generated_memories
    assert generated.memory.name.startswith("reasoningEngines/default/memories/")

    found = list(memories.retrieve(name=ENGINE, scope={"user_id": user},
                                   similarity_search_params={"search_query": "sailing", "top_k": 1}))
    assert [result.memory.name for result in found] == [created.name]

    purged = memories.purge(name=ENGINE, filter=f'scope.user_id="{user}"', force=True)
    assert purged.response.purge_count == 2
    assert server.native_memories({"user_id": user}) == []


async def test_adk_in_express_mode(server: Server, monkeypatch, user):
    """Google's own classes in express mode (`GOOGLE_GENAI_USE_ENTERPRISE=true` and
    `express_mode_api_key`): the key travels as `x-goog-api-key`."""
    import agentplatform
    from google.adk.memory.vertex_ai_memory_bank_service import VertexAiMemoryBankService
    from google.adk.sessions.vertex_ai_session_service import VertexAiSessionService

    monkeypatch.setenv("GOOGLE_GENAI_USE_ENTERPRISE", "true")

    class ExpressSessions(VertexAiSessionService):
        def _api_client_http_options_override(self):  # ADK's documented hook
            return types.HttpOptions(base_url=server.base_url)

    class ExpressMemory(VertexAiMemoryBankService):
        def _build_api_client(self):
            return agentplatform.Client(api_key=self._express_mode_api_key,
                                        http_options={"base_url": server.base_url}).aio

    engine = unique("express")
    sessions = ExpressSessions(agent_engine_id=engine, express_mode_api_key=server.admin_key)
    memory = ExpressMemory(agent_engine_id=engine, express_mode_api_key=server.admin_key)

    session = await sessions.create_session(app_name="app", user_id=user, state={"k": "v"})
    fetched = await sessions.get_session(app_name="app", user_id=user, session_id=session.id)
    assert fetched.state == {"k": "v"}
    assert [s.id for s in (await sessions.list_sessions(app_name="app", user_id=user)).sessions] == [session.id]
    native = server.native("GET", f"/sessions/{session.id}", engine=engine).json()
    assert native["state"] == {"k": "v"}

    from google.adk.memory.memory_entry import MemoryEntry

    await memory.add_memory(app_name="app", user_id=user, memories=[
        MemoryEntry(content=types.Content(role="user", parts=[types.Part(text="User likes opera")]))])
    found = await memory.search_memory(app_name="app", user_id=user, query="opera")
    assert [entry.content.parts[0].text for entry in found.memories] == ["User likes opera"]
