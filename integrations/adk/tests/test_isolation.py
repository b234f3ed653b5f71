"""Isolation: another org's key sees nothing of this org; another engine sees nothing of
this engine; a key limited to one user reaches only that user's sessions and memories."""

from __future__ import annotations

import pytest
from google.genai.errors import ClientError

from contextiq_adk import ContextIQMemoryBankService, ContextIQSessionService
from support import Server, engine_name, sdk_client, unique

APP = "app"


@pytest.fixture(scope="module")
def other_org_key(server: Server) -> str:
    return server.cli_key(unique("org"))


async def seed(server: Server, engine: str, user: str, key: str | None = None, tag: str = ""):
    """A session and a memory in `engine`, both with ids every seed uses."""
    key = key or server.admin_key
    secret = f"{engine}{tag}"
    sessions = ContextIQSessionService(server.base_url, key, engine)
    session = await sessions.create_session(app_name=APP, user_id=user, state={"secret": secret},
                                            session_id="shared-session-id")
    client = sdk_client(server, key=key)
    client.memory_banks.memories.create(name=engine_name(engine), fact=f"User's secret is {secret}",
                                        scope={"user_id": user}, config={"memory_id": "shared-memory-id"})
    return session


async def assert_sees_nothing(server: Server, key: str, engine: str, user: str):
    sessions = ContextIQSessionService(server.base_url, key, engine)
    assert await sessions.get_session(app_name=APP, user_id=user, session_id="shared-session-id") is None
    assert (await sessions.list_sessions(app_name=APP, user_id=user)).sessions == []
    client = sdk_client(server, key=key)
    memories = client.memory_banks.memories
    with pytest.raises(ClientError) as raised:
        memories.get(name=f"{engine_name(engine)}/memories/shared-memory-id")
    assert raised.value.code == 404
    assert list(memories.retrieve(name=engine_name(engine), scope={"user_id": user},
                                  similarity_search_params={"search_query": "secret"})) == []
    assert list(memories.list(name=engine_name(engine), config={"filter": f'scope.user_id="{user}"'})) == []
    memory = ContextIQMemoryBankService(server.base_url, key, engine)
    # ADK's scope has app_name too; nothing there either.
    assert (await memory.search_memory(app_name=APP, user_id=user, query="secret")).memories == []
    dry = memories.purge(name=engine_name(engine), filter=f'scope.user_id="{user}"', force=False)
    assert dry.response.purge_count == 0


async def test_another_org_sees_nothing(server: Server, other_org_key, user):
    engine = unique("org-iso")
    await seed(server, engine, user)
    await assert_sees_nothing(server, other_org_key, engine, user)
    await assert_sees_nothing(server, other_org_key, "default", user)

    # The other org has names of its own: the same ids are free there.
    theirs = await seed(server, engine, user, key=other_org_key, tag="-other")
    sessions = ContextIQSessionService(server.base_url, other_org_key, engine)
    got = await sessions.get_session(app_name=APP, user_id=user, session_id=theirs.id)
    assert got.state == {"secret": f"{engine}-other"}
    mine = ContextIQSessionService(server.base_url, server.admin_key, engine)
    got = await mine.get_session(app_name=APP, user_id=user, session_id=theirs.id)
    assert got.state == {"secret": engine}
    assert len((await mine.list_sessions(app_name=APP, user_id=user)).sessions) == 1
    memories = sdk_client(server).memory_banks.memories
    assert [m.fact for m in memories.list(name=engine_name(engine), config={"filter": f'scope.user_id="{user}"'})] == [
        f"User's secret is {engine}"]
    # The native API agrees, key by key.
    assert [m["fact"] for m in server.native_memories({"user_id": user}, engine=engine)] == [f"User's secret is {engine}"]
    assert [m["fact"] for m in server.native_memories({"user_id": user}, engine=engine, key=other_org_key)] == [
        f"User's secret is {engine}-other"]


async def test_another_engine_sees_nothing(server: Server, user):
    engine_a, engine_b = unique("engine-a"), unique("engine-b")
    await seed(server, engine_a, user)
    await assert_sees_nothing(server, server.admin_key, engine_b, user)
    await assert_sees_nothing(server, server.admin_key, "default", user)

    # The native API reaches an engine with X-Engine-Id, and `default` without it.
    assert [m["fact"] for m in server.native_memories({"user_id": user}, engine=engine_a)] == [f"User's secret is {engine_a}"]
    assert server.native_memories({"user_id": user}, engine=engine_b) == []
    assert server.native_memories({"user_id": user}) == []
    assert len(server.native_sessions(user, engine=engine_a)) == 1
    assert server.native_sessions(user) == []

    # Both engines may use the same ids.
    await seed(server, engine_b, user)
    b = ContextIQSessionService(server.base_url, server.admin_key, engine_b)
    assert (await b.get_session(app_name=APP, user_id=user, session_id="shared-session-id")).state == {"secret": engine_b}
    a = ContextIQSessionService(server.base_url, server.admin_key, engine_a)
    assert (await a.get_session(app_name=APP, user_id=user, session_id="shared-session-id")).state == {"secret": engine_a}

    # A session of engine A is no source for a generation in engine B.
    client = sdk_client(server)
    with pytest.raises(ClientError) as raised:
        client.memory_banks.memories.generate(name=engine_name(engine_b), vertex_session_source={
            "session": f"projects/local/locations/local/reasoningEngines/{engine_a}/sessions/shared-session-id"})
    assert raised.value.code in (400, 404)


async def test_a_scope_limited_key_reaches_only_its_user(server: Server):
    engine = unique("scoped")
    u1, u2 = unique("u1"), unique("u2")
    scoped_key = server.create_key(unique("scoped"), ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"],
                                   scope={"user_id": u1})
    # The admin writes for both users.
    admin_sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    u2_session = await admin_sessions.create_session(app_name=APP, user_id=u2, state={"who": "u2"})
    u1_session = await admin_sessions.create_session(app_name=APP, user_id=u1, state={"who": "u1"})
    admin = sdk_client(server).memory_banks.memories
    u2_memory = admin.create(name=engine_name(engine), fact="User likes u2 things", scope={"user_id": u2}).response
    u1_memory = admin.create(name=engine_name(engine), fact="User likes u1 things", scope={"user_id": u1}).response

    sessions = ContextIQSessionService(server.base_url, scoped_key, engine)
    # Its own user: everything works.
    assert (await sessions.get_session(app_name=APP, user_id=u1, session_id=u1_session.id)).state == {"who": "u1"}
    mine = await sessions.create_session(app_name=APP, user_id=u1)
    listed = await sessions.list_sessions(app_name=APP)
    assert {session.id for session in listed.sessions} == {u1_session.id, mine.id}
    # Another user's: not found, and nothing can be created for them.
    assert await sessions.get_session(app_name=APP, user_id=u2, session_id=u2_session.id) is None
    assert (await sessions.list_sessions(app_name=APP, user_id=u2)).sessions == []
    with pytest.raises(ClientError) as raised:
        await sessions.create_session(app_name=APP, user_id=u2)
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")

    client = sdk_client(server, key=scoped_key)
    memories = client.memory_banks.memories
    assert memories.get(name=u1_memory.name).fact == "User likes u1 things"
    with pytest.raises(ClientError) as raised:
        memories.get(name=u2_memory.name)
    assert raised.value.code == 404
    with pytest.raises(ClientError) as raised:
        memories.delete(name=u2_memory.name)
    assert raised.value.code == 404
    with pytest.raises(ClientError) as raised:
        memories.create(name=engine_name(engine), fact="User is u2", scope={"user_id": u2})
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")
    with pytest.raises(ClientError) as raised:
        memories.generate(name=engine_name(engine), scope={"user_id": u2},
                          direct_memories_source={"direct_memories": [{"fact": "User is u2"}]})
    assert raised.value.code == 403
    assert {memory.fact for memory in memories.list(name=engine_name(engine))} == {"User likes u1 things"}
    try:
        other = list(memories.retrieve(name=engine_name(engine), scope={"user_id": u2},
                                       similarity_search_params={"search_query": "things"}))
    except ClientError as error:
        assert error.code in (403, 404)
    else:
        assert other == []
    # A purge with the scoped key erases only what it reaches.
    purged = memories.purge(name=engine_name(engine), filter='fact:"things"', force=True)
    assert purged.response.purge_count == 1
    assert admin.get(name=u2_memory.name).fact == "User likes u2 things"
