"""Errors as Google's clients see them: `{"error": {"code", "message", "status"}}` with Google's
statuses, raised as google-genai's `ClientError`. Bodies of our choosing go through the SDK's
own HTTP client (`raw_request`)."""

from __future__ import annotations

import datetime

import google.oauth2.credentials
import pytest
from google.genai.errors import ClientError

from contextiq_adk import ContextIQSessionService
from support import Server, collection_client, engine_name, express_client, raw_request, sdk_client, unique

ENGINE = engine_name()


def error_of(client, method: str, path: str, body: dict | None = None) -> ClientError:
    with pytest.raises(ClientError) as raised:
        raw_request(client, method, path, body)
    return raised.value


def assert_google_error(error: ClientError, code: int, status: str) -> None:
    assert (error.code, error.status) == (code, status), error
    body = error.details["error"]
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("body", [
    {"userId": 123},                                   # a string field given a number
    {"userId": "u", "sessionState": "not an object"},  # a Struct given a string
    {"userId": "u", "labels": {"a": 1}},               # a map of strings given a number
    {"userId": "u", "ttl": "7200"},                    # a Duration without its unit
    {"userId": "u", "expireTime": "tomorrow"},         # a Timestamp that is none
    {},                                                # userId is required
], ids=["user-id-number", "state-string", "label-number", "ttl-unitless", "expire-time-text", "no-user-id"])
def test_bad_session_bodies_are_invalid_argument(client, body):
    assert_google_error(error_of(client, "post", f"{ENGINE}/sessions", body), 400, "INVALID_ARGUMENT")


def test_unknown_fields_are_invalid_argument(client, user):
    error = error_of(client, "post", f"{ENGINE}/sessions", {"userId": user, "bogusField": 1})
    assert_google_error(error, 400, "INVALID_ARGUMENT")
    assert "bogusField" in error.message
    error = error_of(client, "post", f"{ENGINE}/memories", {"fact": "x", "scope": {"user_id": user}, "colour": "red"})
    assert_google_error(error, 400, "INVALID_ARGUMENT")
    error = error_of(client, "post", f"{ENGINE}/memories:retrieve", {
        "scope": {"user_id": user}, "similaritySearchParams": {"search_query": "x", "bogus": 1}})
    assert_google_error(error, 400, "INVALID_ARGUMENT")
    # An unknown query parameter too.
    assert_google_error(error_of(client, "get", f"{ENGINE}/sessions?bogus=1"), 400, "INVALID_ARGUMENT")


def test_both_spellings_of_a_field_are_accepted(client, user):
    """proto3 JSON: lowerCamelCase or the proto name, as the SDK mixes them."""
    created = raw_request(client, "post", f"{ENGINE}/sessions", {"user_id": user, "session_state": {"a": 1},
                                                                  "display_name": "snake"})
    assert created["response"]["sessionState"] == {"a": 1}
    assert created["response"]["displayName"] == "snake"


@pytest.mark.parametrize("body", [
    {"fact": 5},
    {"fact": "x", "scope": {"user_id": 5}},
    {"fact": "x", "scope": "user"},
    {"fact": "x", "scope": {"user_id": "u"}, "topics": [{"managed_memory_topic": "NOT_A_TOPIC", "custom_memory_topic_label": "x"}]},
    {"fact": "x", "scope": {"user_id": "u"}, "metadata": {"k": "plain"}},
    {"fact": "x", "scope": {"user_id": "u"}, "metadata": {"k": {"string_value": "a", "double_value": 1}}},
    {"scope": {"user_id": "u"}},
], ids=["fact-number", "scope-value-number", "scope-string", "topic-both", "metadata-untyped", "metadata-two-values", "no-fact"])
def test_bad_memory_bodies_are_invalid_argument(client, body):
    assert_google_error(error_of(client, "post", f"{ENGINE}/memories", body), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("path,body", [
    ("memories:retrieve", {"scope": {"user_id": "u"}, "similaritySearchParams": {"search_query": "x", "top_k": "many"}}),
    ("memories:retrieve", {"similaritySearchParams": {"search_query": "x"}}),
    ("memories:retrieve", {"scope": {"user_id": "u"}, "filterGroups": [{"filters": [{"key": "k", "op": "SOMETIMES",
                                                                                      "value": {"string_value": "v"}}]}]}),
    ("memories:retrieve", {"scope": {"user_id": "u"}, "filter": "fact = "}),
    ("memories:ingestEvents", {"scope": {"user_id": "u"}, "generationTriggerConfig": {"generation_rule": {"idle_duration": "soon"}}}),
    ("memories:ingestEvents", {"scope": {"user_id": "u"}, "directContentsSource": {"events": [{"event_id": "no-content"}]}}),
    ("memories:generate", {"scope": {"user_id": "u"}, "directMemoriesSource": {"direct_memories": [{"fact": ""}]}}),
    ("memories:purge", {"filter": 'scope.user_id="u"', "force": "yes"}),
], ids=["top-k-text", "no-scope", "bad-op", "bad-filter", "bad-duration", "event-without-content", "empty-fact", "force-text"])
def test_bad_memory_method_bodies_are_invalid_argument(client, path, body):
    assert_google_error(error_of(client, "post", f"{ENGINE}/{path}", body), 400, "INVALID_ARGUMENT")


def test_bad_event_bodies_are_invalid_argument(client, user):
    session = client.sessions.create(name=ENGINE, user_id=user).response
    path = "/".join(session.name.split("/")[4:]) + ":appendEvent"
    for body in [
        {"author": "user", "invocationId": "i", "timestamp": "not a time"},
        {"author": "user", "invocationId": "i", "timestamp": "2026-01-01T00:00:00Z", "actions": {"state_delta": [1]}},
        {"author": "user", "invocationId": "i", "timestamp": "2026-01-01T00:00:00Z", "rawEvent": "text"},
    ]:
        assert_google_error(error_of(client, "post", path, body), 400, "INVALID_ARGUMENT")
    assert client.sessions.get(name=session.name).session_state == {}
    assert list(client.sessions.events.list(name=session.name)) == []


def test_bad_ids_are_invalid_argument(client, user):
    for config in [{"session_id": "has.dot"}, {"session_id": "x" * 129}, {"session_id": "spa ce"}]:
        with pytest.raises(ClientError) as raised:
            client.sessions.create(name=ENGINE, user_id=user, config=config)
        assert_google_error(raised.value, 400, "INVALID_ARGUMENT")
    with pytest.raises(ClientError) as raised:
        client.memory_banks.memories.create(name=ENGINE, fact="x", scope={"user_id": user},
                                            config={"memory_id": "m" * 129})
    assert_google_error(raised.value, 400, "INVALID_ARGUMENT")
    assert_google_error(error_of(client, "get", f"{ENGINE}/sessions/a.b"), 400, "INVALID_ARGUMENT")
    assert_google_error(error_of(client, "get", f"reasoningEngines/{'e' * 64}/sessions"), 400, "INVALID_ARGUMENT")
    # The longest ids are fine.
    longest = "s" * 128
    assert client.sessions.create(name=ENGINE, user_id=user, config={"session_id": longest}).response.name.endswith(longest)
    engine = "e" * 63
    assert list(client.sessions.list(name=f"reasoningEngines/{engine}")) == []


def test_missing_things_are_not_found(client):
    missing = unique("missing")
    for path in [f"{ENGINE}/sessions/{missing}", f"{ENGINE}/sessions/{missing}/events",
                 f"{ENGINE}/memories/{missing}", f"{ENGINE}/memories/{missing}/revisions",
                 f"{ENGINE}/operations/generate-00000000-0000-0000-0000-000000000000",
                 f"{ENGINE}/operations/{missing}"]:
        assert_google_error(error_of(client, "get", path), 404, "NOT_FOUND")
    assert_google_error(error_of(client, "post", f"{ENGINE}/memories/{missing}:rollback",
                                 {"targetRevisionId": "00000000-0000-0000-0000-000000000000"}), 404, "NOT_FOUND")


def test_unknown_routes_are_not_found(client):
    for method, path in [("get", f"{ENGINE}/widgets"), ("post", f"{ENGINE}/memories:explode"),
                         ("post", f"{ENGINE}/sessions/s1:explode")]:
        assert error_of(client, method, path).code == 404


async def test_adk_sees_a_missing_session_as_none(server: Server, user):
    sessions = ContextIQSessionService(server.base_url, server.admin_key)
    assert await sessions.get_session(app_name="app", user_id=user, session_id=unique("missing")) is None
    with pytest.raises(ValueError):  # ADK checks ids before any request
        await sessions.get_session(app_name="app", user_id=user, session_id="../escape")


def test_bad_credentials_are_unauthenticated(server: Server):
    import agentplatform

    bogus = "ck_" + "0" * 40
    clients = [
        sdk_client(server, key=bogus),
        express_client(server, key=bogus),
        collection_client(server, key=bogus),
        # No credentials at all.
        agentplatform.Client(http_options={"base_url": server.base_url + "v1beta1",
                                           "base_url_resource_scope": "COLLECTION"}),
    ]
    for client in clients:
        with pytest.raises(ClientError) as raised:
            list(client.sessions.list(name=ENGINE))
        assert_google_error(raised.value, 401, "UNAUTHENTICATED")


async def test_adk_with_a_bad_key_is_unauthenticated(server: Server, user):
    sessions = ContextIQSessionService(server.base_url, "ck_" + "1" * 40)
    with pytest.raises(ClientError) as raised:
        await sessions.create_session(app_name="app", user_id=user)
    assert raised.value.code == 401


def test_missing_permissions_are_permission_denied(server: Server, user):
    reader = sdk_client(server, key=server.create_key(unique("reader"), ["SESSION_READ", "MEMORY_READ"]))
    with pytest.raises(ClientError) as raised:
        reader.sessions.create(name=ENGINE, user_id=user)
    assert_google_error(raised.value, 403, "PERMISSION_DENIED")
    with pytest.raises(ClientError) as raised:
        reader.memory_banks.memories.create(name=ENGINE, fact="User likes tea", scope={"user_id": user})
    assert_google_error(raised.value, 403, "PERMISSION_DENIED")
    with pytest.raises(ClientError) as raised:
        reader.memory_banks.memories.purge(name=ENGINE, filter=f'scope.user_id="{user}"', force=True)
    assert_google_error(raised.value, 403, "PERMISSION_DENIED")
    assert list(reader.sessions.list(name=ENGINE, config={"filter": f'user_id="{user}"'})) == []

    sessions_only = sdk_client(server, key=server.create_key(unique("sessions"), ["SESSION_READ", "SESSION_WRITE"]))
    sessions_only.sessions.create(name=ENGINE, user_id=user)
    with pytest.raises(ClientError) as raised:
        list(sessions_only.memory_banks.memories.retrieve(name=ENGINE, scope={"user_id": user},
                                                          similarity_search_params={"search_query": "x"}))
    assert_google_error(raised.value, 403, "PERMISSION_DENIED")


def test_a_jwt_less_bearer_that_is_no_key_is_unauthenticated(server: Server):
    creds = google.oauth2.credentials.Credentials(token="not-a-key-nor-a-jwt")
    import agentplatform

    client = agentplatform.Client(project="p", location="l", credentials=creds,
                                  http_options={"base_url": server.base_url})
    with pytest.raises(ClientError) as raised:
        client.memory_banks.memories.get(name=f"{ENGINE}/memories/x")
    assert_google_error(raised.value, 401, "UNAUTHENTICATED")


def test_timestamps_with_offsets_are_accepted(client, user):
    session = client.sessions.create(name=ENGINE, user_id=user).response
    at = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    client.sessions.events.append(name=session.name, author="user", invocation_id="i", timestamp=at)
    [event] = list(client.sessions.events.list(name=session.name))
    assert event.timestamp == at
