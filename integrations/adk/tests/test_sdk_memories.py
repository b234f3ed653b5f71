"""The `agentplatform` SDK's Memory Bank surface (`client.memory_banks.memories`,
`client.memory_banks.ingest_events`): every call, and the native API's view of the records."""

from __future__ import annotations

import datetime

import pytest
from google.genai.errors import ClientError

from support import Server, engine_name, unique, wait_for

ENGINE = engine_name()
UTC = datetime.timezone.utc
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def memories(client):
    return client.memory_banks.memories


def last(name: str) -> str:
    return name.split("/")[-1]


def text_event(text: str, role: str = "user", **extra) -> dict:
    return {"content": {"role": role, "parts": [{"text": text}]}, **extra}


def scope_of(user: str) -> dict[str, str]:
    return {"user_id": user}


def facts_of(memories, user: str) -> set[str]:
    return {memory.fact for memory in memories.list(name=ENGINE, config={"filter": f'scope.user_id="{user}"'})}


def generated(operation) -> list[tuple[str, str]]:
    """(action, memory id) of each generated memory."""
    assert operation.done is True, operation
    assert operation.error is None, operation.error
    return [(item.action.value, last(item.memory.name)) for item in operation.response.generated_memories or []]


# Create, get, list, update, delete.


def test_create_with_a_memory_id(server: Server, memories, user):
    memory_id = unique("coffee")
    operation = memories.create(
        name=ENGINE, fact="User likes espresso", scope=scope_of(user),
        config={
            "memory_id": memory_id,
            "display_name": "Coffee",
            "description": "How the user takes coffee",
            "topics": [{"managed_memory_topic": "USER_PREFERENCES"}, {"custom_memory_topic_label": "drinks"}],
            "metadata": {"source": {"string_value": "test"}, "rank": {"double_value": 2}, "ok": {"bool_value": True}},
        },
    )
    assert operation.done is True
    memory = operation.response
    assert memory.name == f"projects/local/locations/local/reasoningEngines/default/memories/{memory_id}"
    assert memory.fact == "User likes espresso"
    assert memory.scope == scope_of(user)
    assert memory.display_name == "Coffee"
    assert memory.description == "How the user takes coffee"
    assert [(topic.managed_memory_topic and topic.managed_memory_topic.value, topic.custom_memory_topic_label)
            for topic in memory.topics] == [("USER_PREFERENCES", None), (None, "drinks")]
    assert memory.metadata["source"].string_value == "test"
    assert memory.metadata["rank"].double_value == 2
    assert memory.metadata["ok"].bool_value is True
    assert memory.create_time is not None and memory.update_time is not None

    got = memories.get(name=memory.name)
    assert (got.name, got.fact, got.scope, got.display_name) == (memory.name, memory.fact, memory.scope, "Coffee")

    [native] = server.native_memories(scope_of(user))
    assert native["fact"] == "User likes espresso"
    assert native["topic"] == "USER_PREFERENCES"
    assert native["metadata"]["source"] == "test"
    assert native["metadata"]["rank"] == 2
    assert native["metadata"]["ok"] is True


def test_create_without_a_memory_id(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User owns a bicycle", scope=scope_of(user)).response
    memory_id = last(memory.name)
    native = server.native("GET", f"/memories/{memory_id}").json()  # a server-chosen id is the record's
    assert native["fact"] == "User owns a bicycle"
    assert native["scope"] == scope_of(user)


def test_create_twice_with_one_id_is_already_exists(memories, user):
    memory_id = unique("dup")
    memories.create(name=ENGINE, fact="User likes tea", scope=scope_of(user), config={"memory_id": memory_id})
    with pytest.raises(ClientError) as raised:
        memories.create(name=ENGINE, fact="User likes tea", scope=scope_of(user), config={"memory_id": memory_id})
    assert (raised.value.code, raised.value.status) == (409, "ALREADY_EXISTS")


def test_create_with_a_ttl(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User is in Rome this week", scope=scope_of(user),
                             config={"ttl": "86400s"}).response
    expected = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    assert abs(memory.expire_time - expected) < datetime.timedelta(minutes=1)
    native = server.native("GET", f"/memories/{last(memory.name)}").json()
    assert native["expires_at"] is not None


def test_an_expired_memory_is_gone(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User is at the airport", scope=scope_of(user),
                             config={"ttl": "1s"}).response

    def gone():
        try:
            memories.get(name=memory.name)
        except ClientError as error:
            return error.code == 404
        return False

    wait_for(gone, timeout=15, what="the memory to expire")
    assert facts_of(memories, user) == set()
    assert list(memories.retrieve(name=ENGINE, scope=scope_of(user),
                                  similarity_search_params={"search_query": "airport"})) == []


def test_get_a_missing_memory_is_not_found(memories):
    with pytest.raises(ClientError) as raised:
        memories.get(name=f"{ENGINE}/memories/{unique('missing')}")
    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")


def test_list_with_filters_and_order(memories, user):
    other = unique("user")
    created = [memories.create(name=ENGINE, fact=fact, scope=scope_of(user)).response
               for fact in ["User likes coffee", "User drinks coffee black", "User plays chess"]]
    memories.create(name=ENGINE, fact="User likes coffee", scope=scope_of(other))

    mine = list(memories.list(name=ENGINE, config={"filter": f'scope.user_id="{user}"', "page_size": 2}))
    assert {memory.name for memory in mine} == {memory.name for memory in created}

    coffee = list(memories.list(name=ENGINE, config={"filter": f'scope.user_id="{user}" AND fact:"coffee"'}))
    assert {memory.fact for memory in coffee} == {"User likes coffee", "User drinks coffee black"}

    newest_first = list(memories.list(name=ENGINE, config={
        "filter": f'scope.user_id="{user}"', "order_by": "create_time desc"}))
    assert [memory.name for memory in newest_first] == [memory.name for memory in reversed(created)]

    with pytest.raises(ClientError) as raised:
        list(memories.list(name=ENGINE, config={"order_by": "fact"}))
    assert raised.value.code == 400
    with pytest.raises(ClientError) as raised:
        list(memories.list(name=ENGINE, config={"filter": 'scope.user_id="unterminated'}))
    assert raised.value.code == 400


def test_update_fact_and_fields(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User lives in Paris", scope=scope_of(user),
                             config={"display_name": "Home"}).response
    operation = memories._update(name=memory.name, fact="User lives in Berlin",
                                 config={"update_mask": "fact"})
    assert operation.done is True
    assert operation.response.fact == "User lives in Berlin"
    got = memories.get(name=memory.name)
    assert got.fact == "User lives in Berlin"
    assert got.display_name == "Home"

    memories._update(name=memory.name, config={
        "display_name": "Residence", "description": "where", "topics": [{"managed_memory_topic": "USER_PERSONAL_INFO"}],
        "metadata": {"verified": {"bool_value": True}},
        "update_mask": "display_name,description,topics,metadata",
    })
    got = memories.get(name=memory.name)
    assert (got.fact, got.display_name, got.description) == ("User lives in Berlin", "Residence", "where")
    assert [topic.managed_memory_topic.value for topic in got.topics] == ["USER_PERSONAL_INFO"]
    assert got.metadata["verified"].bool_value is True

    memories._update(name=memory.name, config={"ttl": "3600s", "update_mask": "ttl"})
    got = memories.get(name=memory.name)
    assert abs(got.expire_time - (datetime.datetime.now(UTC) + datetime.timedelta(hours=1))) < datetime.timedelta(minutes=1)

    native = server.native("GET", f"/memories/{last(memory.name)}").json()
    assert native["fact"] == "User lives in Berlin"
    assert native["topic"] == "USER_PERSONAL_INFO"
    assert native["metadata"]["verified"] is True

    with pytest.raises(ClientError) as raised:
        memories._update(name=memory.name, fact="x", config={"update_mask": "create_time"})
    assert raised.value.code == 400


def test_delete(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User collects stamps", scope=scope_of(user)).response
    operation = memories.delete(name=memory.name)
    assert operation.done is True
    with pytest.raises(ClientError) as raised:
        memories.get(name=memory.name)
    assert raised.value.code == 404
    server.native("GET", f"/memories/{last(memory.name)}", expect=404)
    assert facts_of(memories, user) == set()
    with pytest.raises(ClientError) as raised:
        memories.delete(name=memory.name)
    assert raised.value.code == 404


# Revisions and rollback.


def test_revisions_and_rollback(server: Server, memories, user):
    memory = memories.create(name=ENGINE, fact="User's favourite colour is blue", scope=scope_of(user),
                             config={"memory_id": unique("colour")}).response
    memories._update(name=memory.name, fact="User's favourite colour is green", config={"update_mask": "fact"})

    revisions = list(memories.revisions.list(name=memory.name))
    assert [revision.fact for revision in revisions] == [
        "User's favourite colour is green", "User's favourite colour is blue"]  # newest first
    assert all(revision.name.startswith(memory.name + "/revisions/") for revision in revisions)
    assert all(revision.create_time is not None for revision in revisions)
    paged = list(memories.revisions.list(name=memory.name, config={"page_size": 1}))
    assert [revision.name for revision in paged] == [revision.name for revision in revisions]

    first = revisions[-1]
    got = memories.revisions.get(name=first.name)
    assert (got.name, got.fact) == (first.name, "User's favourite colour is blue")

    memory_uuid = server.native_memories(scope_of(user))[0]["id"]
    assert len(server.native("GET", f"/memories/{memory_uuid}/revisions").json()["revisions"]) == 2

    operation = memories.rollback(name=memory.name, target_revision_id=last(first.name))
    assert operation.done is True
    assert memories.get(name=memory.name).fact == "User's favourite colour is blue"
    assert len(list(memories.revisions.list(name=memory.name))) == 3
    native = server.native("GET", f"/memories/{memory_uuid}").json()
    assert native["fact"] == "User's favourite colour is blue"
    assert len(server.native("GET", f"/memories/{memory_uuid}/revisions").json()["revisions"]) == 3

    with pytest.raises(ClientError) as raised:
        memories.revisions.get(name=f"{memory.name}/revisions/{unique('missing')}")
    assert raised.value.code == 404
    with pytest.raises(ClientError) as raised:
        memories.rollback(name=memory.name, target_revision_id="not-a-revision")
    assert raised.value.code in (400, 404)


# Generation.


def test_generate_from_direct_contents_creates_updates_and_deletes(server: Server, memories, user):
    def generate(*texts: str):
        return memories.generate(name=ENGINE, scope=scope_of(user), direct_contents_source={
            "events": [text_event(text) for text in texts]})

    operation = generate("I live in Lisbon.", "My favourite colour is green.")
    assert "/operations/generate-" in operation.name
    actions = generated(operation)
    assert [action for action, _ in actions] == ["CREATED", "CREATED"]
    facts = {memories.get(name=f"{ENGINE}/memories/{memory_id}").fact for _, memory_id in actions}
    assert facts == {"User lives in Lisbon", "User's favourite colour is green"}
    assert {memory["fact"] for memory in server.native_memories(scope_of(user))} == facts
    colour_id = next(memory_id for _, memory_id in actions
                     if "colour" in memories.get(name=f"{ENGINE}/memories/{memory_id}").fact)

    # Polling the finished operation answers the same.
    polled = memories._get_generate_memories_operation(operation_name=operation.name)
    assert generated(polled) == actions

    # The same attribute with a new value updates the memory in place.
    assert generated(generate("My favourite colour is blue.")) == [("UPDATED", colour_id)]
    assert memories.get(name=f"{ENGINE}/memories/{colour_id}").fact == "User's favourite colour is blue"

    # A forget request deletes it.
    assert generated(generate("Please forget my favourite colour.")) == [("DELETED", colour_id)]
    assert facts_of(memories, user) == {"User lives in Lisbon"}

    # Only the user's turns say something about the user.
    assert generated(memories.generate(name=ENGINE, scope=scope_of(user), direct_contents_source={
        "events": [text_event("I live in the cloud.", role="model")]})) == []


def test_generate_from_a_session(server: Server, client, memories, user):
    session = client.sessions.create(name=ENGINE, user_id=user).response
    start = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    for minutes, text in [(0, "I am allergic to peanuts."), (10, "Remember that I prefer window seats.")]:
        client.sessions.events.append(
            name=session.name, author="user", invocation_id=unique("inv"),
            timestamp=start + datetime.timedelta(minutes=minutes),
            config={"content": {"role": "user", "parts": [{"text": text}]}},
        )

    # A time range picks events: only the first is in [start, start + 5 min).
    ranged = memories.generate(name=ENGINE, vertex_session_source={
        "session": session.name, "start_time": start, "end_time": start + datetime.timedelta(minutes=5)})
    assert [action for action, _ in generated(ranged)] == ["CREATED"]
    assert facts_of(memories, user) == {"User is allergic to peanuts"}

    # No scope given: the session's, {"user_id": <its user>}.
    whole = memories.generate(name=ENGINE, vertex_session_source={"session": session.name})
    assert "CREATED" in [action for action, _ in generated(whole)]
    assert facts_of(memories, user) == {"User is allergic to peanuts", "User prefers window seats"}
    for memory in memories.list(name=ENGINE, config={"filter": f'scope.user_id="{user}"'}):
        assert memory.scope == scope_of(user)

    # Nothing said in the range: nothing generated.
    empty = memories.generate(name=ENGINE, vertex_session_source={
        "session": session.name, "start_time": start - datetime.timedelta(days=2),
        "end_time": start - datetime.timedelta(days=1)})
    assert generated(empty) == []

    with pytest.raises(ClientError) as raised:
        memories.generate(name=ENGINE, vertex_session_source={"session": f"{ENGINE}/sessions/{unique('missing')}"})
    assert raised.value.code == 404


def test_generate_from_direct_memories(server: Server, memories, user):
    operation = memories.generate(name=ENGINE, scope=scope_of(user), direct_memories_source={
        "direct_memories": [{"fact": "User prefers aisle seats"}, {"fact": "User speaks Portuguese"}]})
    actions = generated(operation)
    assert [action for action, _ in actions] == ["CREATED", "CREATED"]
    assert facts_of(memories, user) == {"User prefers aisle seats", "User speaks Portuguese"}

    # The same fact again is consolidated away; with consolidation disabled it is added.
    assert generated(memories.generate(name=ENGINE, scope=scope_of(user), direct_memories_source={
        "direct_memories": [{"fact": "User speaks Portuguese"}]})) == []
    again = memories.generate(name=ENGINE, scope=scope_of(user), direct_memories_source={
        "direct_memories": [{"fact": "User speaks Portuguese"}]}, config={"disable_consolidation": True})
    assert [action for action, _ in generated(again)] == ["CREATED"]
    native = [memory["fact"] for memory in server.native_memories(scope_of(user))]
    assert sorted(native) == ["User prefers aisle seats", "User speaks Portuguese", "User speaks Portuguese"]


def test_generate_with_allowed_topics_keeps_only_those(memories, user):
    operation = memories.generate(
        name=ENGINE, scope=scope_of(user),
        direct_contents_source={"events": [text_event("I live in Lisbon. I like jazz.")]},
        config={"allowed_topics": [{"managed_memory_topic": "USER_PREFERENCES"}]},
    )
    actions = generated(operation)
    assert len(actions) == 1
    memory = memories.get(name=f"{ENGINE}/memories/{actions[0][1]}")
    assert memory.fact == "User likes jazz"
    assert [topic.managed_memory_topic.value for topic in memory.topics] == ["USER_PREFERENCES"]


def test_generate_without_waiting_then_poll(memories, user):
    operation = memories.generate(name=ENGINE, scope=scope_of(user), direct_contents_source={
        "events": [text_event("I work as a nurse.")]}, config={"wait_for_completion": False})
    assert "/operations/generate-" in operation.name
    done = wait_for(lambda: (op := memories._get_generate_memories_operation(operation_name=operation.name)).done and op,
                    timeout=30, what="the generation operation")
    assert [action for action, _ in generated(done)] == ["CREATED"]


def test_generate_with_metadata(server: Server, memories, user):
    operation = memories.generate(
        name=ENGINE, scope=scope_of(user),
        direct_memories_source={"direct_memories": [{"fact": "User likes tea"}]},
        config={"metadata": {"source": {"string_value": "import"}, "weight": {"double_value": 0.5}}},
    )
    [(action, memory_id)] = generated(operation)
    assert action == "CREATED"
    memory = memories.get(name=f"{ENGINE}/memories/{memory_id}")
    assert memory.metadata["source"].string_value == "import"
    assert memory.metadata["weight"].double_value == 0.5
    [native] = server.native_memories(scope_of(user))
    assert (native["metadata"]["source"], native["metadata"]["weight"]) == ("import", 0.5)


def test_generate_refuses_bad_sources(memories, user):
    with pytest.raises(ClientError) as raised:
        memories.generate(name=ENGINE, scope=scope_of(user))  # no source
    assert raised.value.code == 400
    with pytest.raises(ClientError) as raised:
        memories.generate(name=ENGINE, scope=scope_of(user),
                          direct_memories_source={"direct_memories": [{"fact": "a"}]},
                          direct_contents_source={"events": [text_event("I like tea.")]})
    assert raised.value.code == 400
    with pytest.raises(ClientError) as raised:  # direct sources need a scope
        memories.generate(name=ENGINE, direct_memories_source={"direct_memories": [{"fact": "User likes tea"}]})
    assert raised.value.code == 400


# Retrieval.


@pytest.fixture
def drinks(memories, user):
    facts = {
        "User drinks espresso every morning": 1.0,
        "User likes green tea": 2.0,
        "User enjoys hot chocolate in winter": 3.0,
        "User plays the violin": 4.0,
        "User has a dog named Rex": 5.0,
    }
    for fact, rank in facts.items():
        memories.create(name=ENGINE, fact=fact, scope=scope_of(user), config={"metadata": {
            "rank": {"double_value": rank}, "kind": {"string_value": "drink" if rank <= 3 else "other"}}})
    return facts


def test_retrieve_by_similarity(memories, user, drinks):
    results = list(memories.retrieve(name=ENGINE, scope=scope_of(user), similarity_search_params={
        "search_query": "coffee espresso", "top_k": 2}))
    assert len(results) == 2
    assert results[0].memory.fact == "User drinks espresso every morning"
    assert all(result.distance is not None for result in results)
    assert results[0].distance <= results[1].distance

    default_k = list(memories.retrieve(name=ENGINE, scope=scope_of(user),
                                       similarity_search_params={"search_query": "what does the user drink"}))
    assert len(default_k) == 3  # Google's default top_k

    # Another scope sees none of them.
    assert list(memories.retrieve(name=ENGINE, scope=scope_of(unique("user")),
                                  similarity_search_params={"search_query": "espresso"})) == []

    # "The maximum value is 100; values above 100 will be coerced to 100."
    assert len(list(memories.retrieve(name=ENGINE, scope=scope_of(user),
                                      similarity_search_params={"search_query": "user", "top_k": 1000}))) == len(drinks)


def test_retrieve_simple(memories, user, drinks):
    everything = list(memories.retrieve(name=ENGINE, scope=scope_of(user), simple_retrieval_params={"page_size": 100}))
    assert {result.memory.fact for result in everything} == set(drinks)
    assert all(result.distance is None for result in everything)
    two = list(memories.retrieve(name=ENGINE, scope=scope_of(user), simple_retrieval_params={"page_size": 2}))
    assert len(two) == 2  # and no nextPageToken to follow
    # Google's default page size is 3.
    assert len(list(memories.retrieve(name=ENGINE, scope=scope_of(user), simple_retrieval_params={}))) == 3


def test_retrieve_with_filters(memories, user, drinks):
    def facts(**config):
        return {result.memory.fact for result in memories.retrieve(
            name=ENGINE, scope=scope_of(user), simple_retrieval_params={"page_size": 100}, config=config)}

    assert facts(filter_groups=[{"filters": [{"key": "rank", "op": "GREATER_THAN", "value": {"double_value": 3.5}}]}]) == {
        "User plays the violin", "User has a dog named Rex"}
    assert facts(filter_groups=[
        {"filters": [{"key": "kind", "op": "EQUAL", "value": {"string_value": "drink"}},
                     {"key": "rank", "op": "LESS_THAN", "value": {"double_value": 2.5}}]},
        {"filters": [{"key": "rank", "op": "EQUAL", "value": {"double_value": 5}}]},
    ]) == {"User drinks espresso every morning", "User likes green tea", "User has a dog named Rex"}
    assert facts(filter_groups=[{"filters": [
        {"key": "kind", "op": "EQUAL", "value": {"string_value": "drink"}, "negate": True}]}]) == {
        "User plays the violin", "User has a dog named Rex"}
    assert facts(filter='fact:"tea"') == {"User likes green tea"}
    assert facts(memory_types=["NATURAL_LANGUAGE_COLLECTION"]) == set(drinks)
    assert facts(memory_types=["STRUCTURED_PROFILE"]) == set()

    similar = list(memories.retrieve(
        name=ENGINE, scope=scope_of(user),
        similarity_search_params={"search_query": "espresso coffee", "top_k": 1},
        config={"filter_groups": [{"filters": [{"key": "kind", "op": "EQUAL", "value": {"string_value": "other"}}]}]},
    ))
    assert len(similar) == 1 and similar[0].memory.fact in {"User plays the violin", "User has a dog named Rex"}


# Purge.


def test_purge_dry_run_then_force(server: Server, memories, user, drinks):
    bystander = unique("user")
    memories.create(name=ENGINE, fact="User likes tea", scope=scope_of(bystander))

    dry = memories.purge(name=ENGINE, filter=f'scope.user_id="{user}"', force=False)
    assert dry.done is True
    assert dry.response.purge_count == len(drinks)
    assert len(facts_of(memories, user)) == len(drinks)

    by_metadata = memories.purge(name=ENGINE, filter_groups=[
        {"filters": [{"key": "kind", "op": "EQUAL", "value": {"string_value": "other"}}]}], force=True)
    # Metadata groups match across the engine: only this test's memories carry `kind: other`
    # ... and this user is the only one with them.
    assert by_metadata.response.purge_count >= 2
    assert facts_of(memories, user) == {fact for fact, rank in drinks.items() if rank <= 3}

    forced = memories.purge(name=ENGINE, filter=f'scope.user_id="{user}"', force=True)
    assert forced.response.purge_count == 3
    assert facts_of(memories, user) == set()
    assert server.native_memories(scope_of(user)) == []
    assert facts_of(memories, bystander) == {"User likes tea"}

    with pytest.raises(ClientError) as raised:
        memories.purge(name=ENGINE, force=True)  # a purge must say what it erases
    assert raised.value.code == 400


# Ingestion.


def test_ingest_events_with_force_flush(server: Server, client, memories, user):
    operation = client.memory_banks.ingest_events(
        name=ENGINE, scope=scope_of(user), stream_id="chat",
        direct_contents_source={"events": [text_event("I live in Oslo.", event_id="e1")]},
        config={"force_flush": True, "wait_for_completion": True},
    )
    assert operation.done is True and operation.error is None
    assert facts_of(memories, user) == {"User lives in Oslo"}
    assert [memory["fact"] for memory in server.native_memories(scope_of(user))] == ["User lives in Oslo"]
    # The buffering stream is no session of the user's.
    assert list(client.sessions.list(name=ENGINE, config={"filter": f'user_id="{user}"'})) == []


def test_ingest_events_with_an_event_count(memories, client, user):
    trigger = {"generation_rule": {"event_count": 2}}
    first = client.memory_banks.ingest_events(
        name=ENGINE, scope=scope_of(user),
        direct_contents_source={"events": [text_event("I have two cats.", event_id="c1")]},
        generation_trigger_config=trigger,
    )
    assert first.done is True  # one event waiting: nothing queued
    assert facts_of(memories, user) == set()

    second = client.memory_banks.ingest_events(
        name=ENGINE, scope=scope_of(user),
        direct_contents_source={"events": [text_event("I play the piano.", event_id="c2")]},
        generation_trigger_config=trigger,
    )
    assert "/operations/generate-" in second.name
    wait_for(lambda: facts_of(memories, user) == {"User has two cats", "User plays the piano"},
             timeout=30, what="memories of both events")


def test_ingest_events_with_an_idle_duration(memories, client, user):
    operation = client.memory_banks.ingest_events(
        name=ENGINE, scope=scope_of(user),
        direct_contents_source={"events": [text_event("I speak Italian.")]},
        generation_trigger_config={"generation_rule": {"idle_duration": "1s"}},
    )
    assert operation.done is False
    assert "/operations/generate-" in operation.name
    wait_for(lambda: facts_of(memories, user) == {"User speaks Italian"}, timeout=30, what="the idle trigger")
    done = wait_for(lambda: (op := client.memory_banks._get_memory_bank_operation(operation_name=operation.name)).done and op,
                    timeout=30, what="the ingest operation")
    assert done.error is None


def test_ingest_events_without_a_trigger_flushes_at_once(memories, client, user):
    """Without a generation rule "the stream will be force flushed immediately" (Google's
    reference), which ADK's `add_session_to_memory` relies on."""
    operation = client.memory_banks.ingest_events(
        name=ENGINE, scope=scope_of(user),
        direct_contents_source={"events": [text_event("I run marathons.")]},
    )
    assert "/operations/generate-" in operation.name
    wait_for(lambda: facts_of(memories, user) == {"User runs marathons"}, timeout=30, what="the flushed stream")


def test_ingest_events_deduplicates_event_ids(server: Server, memories, client, user):
    def ingest(*events):
        return client.memory_banks.ingest_events(
            name=ENGINE, scope=scope_of(user), stream_id="s1",
            direct_contents_source={"events": list(events)},
            config={"force_flush": True, "wait_for_completion": True},
        )

    ingest(text_event("I like chess.", event_id="d1"))
    assert facts_of(memories, user) == {"User likes chess"}
    # The same event again (ADK sends every event of a session each time): nothing new.
    again = ingest(text_event("I like chess.", event_id="d1"))
    assert again.done is True
    ingest(text_event("I like chess.", event_id="d1"), text_event("I like go.", event_id="d2"))
    assert facts_of(memories, user) == {"User likes chess", "User likes go"}
    assert sorted(memory["fact"] for memory in server.native_memories(scope_of(user))) == [
        "User likes chess", "User likes go"]


def test_ingest_events_without_events(memories, client, user):
    """No events is a valid request (a trigger update); with nothing waiting nothing is queued."""
    operation = client.memory_banks.ingest_events(name=ENGINE, scope=scope_of(user))
    assert operation.done is True
    flushed = client.memory_banks.ingest_events(name=ENGINE, scope=scope_of(user), config={"force_flush": True})
    assert flushed.done is True
    assert facts_of(memories, user) == set()


def test_retrieve_profiles(memories, user):
    """One profile per scope, under ContextIQ's schema id: each attribute its live memories set."""
    assert memories.retrieve_profiles(name=ENGINE, scope=scope_of(user)).profiles in (None, {})
    for fact in ["User's name is Ada", "User lives in Leeds", "User is 36 years old", "User lives in York"]:
        memories.create(name=ENGINE, fact=fact, scope=scope_of(user))
    memories.create(name=ENGINE, fact="User lives in Bath", scope={"user_id": user, "app_name": "other"})
    profiles = memories.retrieve_profiles(name=ENGINE, scope=scope_of(user)).profiles
    assert list(profiles) == ["contextiq-profile"]
    profile = profiles["contextiq-profile"]
    assert profile.schema_id == "contextiq-profile"
    assert profile.profile == {"name": "Ada", "residence": "York", "age": "36 years old"}
    with pytest.raises(ClientError) as raised:
        memories.retrieve_profiles(name=ENGINE, scope={})
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
