"""The `agentplatform` SDK's sessions surface (`client.sessions`, `.events`): what ADK never
calls (PATCH, paging, display names, labels) and the wire details ADK relies on."""

from __future__ import annotations

import datetime

import pytest
from google.genai.errors import ClientError

from support import Server, engine_name, unique

ENGINE = engine_name()
UTC = datetime.timezone.utc


def create(client, user, **config):
    return client.sessions.create(name=ENGINE, user_id=user, config=config or None)


def test_create_answers_a_done_operation_and_the_session(server: Server, client, user):
    session_id = unique("sdk")
    operation = create(client, user, session_id=session_id, display_name="Trip planning",
                       labels={"team": "travel"}, session_state={"step": 1}, ttl="3600s")
    assert operation.done is True
    assert operation.name.startswith(f"projects/local/locations/local/reasoningEngines/default/sessions/{session_id}/operations/")
    session = operation.response
    assert session.name == f"projects/local/locations/local/reasoningEngines/default/sessions/{session_id}"
    assert session.user_id == user
    assert session.display_name == "Trip planning"
    assert session.labels == {"team": "travel"}
    assert session.session_state == {"step": 1}
    now = datetime.datetime.now(UTC)
    assert session.create_time <= session.update_time
    assert abs(session.update_time - now) < datetime.timedelta(minutes=1)
    assert abs(session.expire_time - (now + datetime.timedelta(hours=1))) < datetime.timedelta(minutes=1)

    # Polling the operation anyway answers it done.
    polled = client.sessions._get_session_operation(operation_name=operation.name)
    assert polled.done is True

    got = client.sessions.get(name=session.name)
    assert (got.name, got.display_name, got.labels, got.session_state) == (
        session.name, "Trip planning", {"team": "travel"}, {"step": 1})


def test_update_session_state_display_name_and_labels(server: Server, client, user):
    session = create(client, user, display_name="before", labels={"a": "1"}, session_state={"old": True, "keep": 1}).response

    updated = client.sessions.update(name=session.name, config={
        "session_state": {"keep": 2, "new": [1, 2]},
        "display_name": "after",
        "update_mask": "session_state,display_name",
    })
    assert updated.session_state == {"keep": 2, "new": [1, 2]}  # replaced, not merged
    assert updated.display_name == "after"
    assert updated.labels == {"a": "1"}  # not in the mask
    assert updated.update_time >= session.update_time

    relabelled = client.sessions.update(name=session.name, config={"labels": {"b": "2"}, "update_mask": "labels"})
    assert relabelled.labels == {"b": "2"}
    assert relabelled.display_name == "after"

    native = server.native("GET", f"/sessions/{session.name.split('/')[-1]}").json()
    assert native["state"] == {"keep": 2, "new": [1, 2]}

    with pytest.raises(ClientError) as raised:
        client.sessions.update(name=session.name, config={"user_id": unique("other"), "update_mask": "user_id"})
    assert raised.value.code == 400


def test_update_a_missing_session_is_not_found(client):
    with pytest.raises(ClientError) as raised:
        client.sessions.update(name=f"{ENGINE}/sessions/{unique('missing')}",
                               config={"display_name": "x", "update_mask": "display_name"})
    assert raised.value.code == 404
    assert raised.value.status == "NOT_FOUND"


def test_list_sessions_pages_and_filters(client, user):
    names = {create(client, user).response.name for _ in range(5)}
    listed = list(client.sessions.list(name=ENGINE, config={"filter": f'user_id="{user}"', "page_size": 2}))
    assert {session.name for session in listed} == names
    assert all(session.user_id == user for session in listed)


def test_list_sessions_by_labels_and_display_name(client, user):
    """Filters other than user_id (Google: `display_name`, `user_id`, `labels`) over several
    pages; a page the filter empties must not end the listing, nor crash the SDK's pager."""
    label = unique("label")
    wanted = create(client, user, labels={"team": label}, display_name=label).response
    for _ in range(3):  # newer sessions, which the filter leaves out
        create(client, unique("user"))
    for filter in [f'labels.team="{label}"', f'display_name="{label}"']:
        listed = list(client.sessions.list(name=ENGINE, config={"filter": filter, "page_size": 1}))
        assert [session.name for session in listed] == [wanted.name], filter


def test_events_append_and_list(client, user):
    session = create(client, user).response
    start = datetime.datetime.now(UTC) - datetime.timedelta(minutes=10)
    for n in range(5):
        client.sessions.events.append(
            name=session.name,
            author="user" if n % 2 == 0 else "agent",
            invocation_id=f"inv-{n}",
            timestamp=start + datetime.timedelta(minutes=n),
            config={
                "content": {"role": "user" if n % 2 == 0 else "model", "parts": [{"text": f"message {n}"}]},
                "actions": {"state_delta": {f"k{n}": n}},
                "event_metadata": {"turn_complete": True, "custom_metadata": {"n": n}},
                "raw_event": {"id": f"event-{n}", "author": "x", "someField": {"nested": [n]}},
            },
        )
    events = list(client.sessions.events.list(name=session.name, config={"page_size": 2}))
    assert [event.invocation_id for event in events] == [f"inv-{n}" for n in range(5)]
    assert [event.content.parts[0].text for event in events] == [f"message {n}" for n in range(5)]
    assert [event.author for event in events] == ["user", "agent", "user", "agent", "user"]
    assert events[3].raw_event == {"id": "event-3", "author": "x", "someField": {"nested": [3]}}
    assert events[1].event_metadata.custom_metadata == {"n": 1}
    assert events[2].actions.state_delta == {"k2": 2}
    assert all(event.name.startswith(session.name + "/events/") for event in events)
    assert [event.timestamp for event in events] == [start + datetime.timedelta(minutes=n) for n in range(5)]

    since = (start + datetime.timedelta(minutes=3)).isoformat()
    later = list(client.sessions.events.list(name=session.name, config={"filter": f'timestamp>="{since}"'}))
    assert [event.invocation_id for event in later] == ["inv-3", "inv-4"]

    assert client.sessions.get(name=session.name).session_state == {f"k{n}": n for n in range(5)}


def test_delete_answers_a_done_operation(server: Server, client, user):
    session = create(client, user).response
    operation = client.sessions.delete(name=session.name)
    assert operation.done is True
    with pytest.raises(ClientError) as raised:
        client.sessions.get(name=session.name)
    assert raised.value.code == 404
    with pytest.raises(ClientError) as raised:
        client.sessions.delete(name=session.name)
    assert raised.value.code == 404
    with pytest.raises(ClientError) as raised:
        list(client.sessions.events.list(name=session.name))
    assert raised.value.code == 404


def test_append_to_a_missing_session_is_not_found(client):
    with pytest.raises(ClientError) as raised:
        client.sessions.events.append(name=f"{ENGINE}/sessions/{unique('missing')}", author="user",
                                      invocation_id="i", timestamp=datetime.datetime.now(UTC))
    assert raised.value.code == 404
