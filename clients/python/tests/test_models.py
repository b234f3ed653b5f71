"""The response models: parsing, times, unknown fields, sequences."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from contextiq import CreatedKey, Event, EventList, ForkOrigin, Job, Memory, Rewind, SearchResponse, Session, StateAt
from contextiq._models import parse_datetime

MEMORY = {
    "id": "0198c1a2-0000-7000-8000-000000000001", "scope": {"user_id": "u1"}, "fact": "Likes tea",
    "topic": None, "confidence": 0.9, "source_session_id": None, "source_event_ids": [], "metadata": {"a": 1},
    "said_at": "2026-12-01T09:00:00Z", "created_at": "2026-12-05T13:14:19.307431Z", "updated_at": "2026-12-05T13:14:19.307431Z", "expires_at": None,
}


@pytest.mark.parametrize("text, expected", [
    ("2026-12-05T13:14:19Z", datetime(2026, 12, 5, 13, 14, 19, tzinfo=timezone.utc)),
    ("2026-12-05T13:14:19.5Z", datetime(2026, 12, 5, 13, 14, 19, 500000, tzinfo=timezone.utc)),
    ("2026-12-05T13:14:19.123456789Z", datetime(2026, 12, 5, 13, 14, 19, 123456, tzinfo=timezone.utc)),
    ("2026-12-05T13:14:19.010743+00:00", datetime(2026, 12, 5, 13, 14, 19, 10743, tzinfo=timezone.utc)),
    ("2026-12-05T15:14:19+0200", datetime(2026, 12, 5, 13, 14, 19, tzinfo=timezone.utc)),
    ("2026-12-05 13:14:19", datetime(2026, 12, 5, 13, 14, 19, tzinfo=timezone.utc)),
])
def test_parse_datetime(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected and parsed is not None and parsed.utcoffset() is not None


def test_parse_datetime_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        parse_datetime("yesterday")
    assert parse_datetime(None) is None


def test_unknown_fields_are_kept_in_raw() -> None:
    memory = Memory.from_json({**MEMORY, "embedding_model": "minilm"})
    assert memory.raw["embedding_model"] == "minilm" and not hasattr(memory, "embedding_model")
    assert memory.created_at.tzinfo == timezone.utc and memory.expires_at is None
    assert memory == Memory.from_json(MEMORY)  # raw is not compared
    assert "raw" not in repr(memory)
    with pytest.raises(AttributeError):
        memory.fact = "changed"  # type: ignore[misc]


def test_list_answers_are_sequences() -> None:
    event = {"id": "e1", "session_id": "s1", "seq": 1, "author": "user", "role": "user", "content": "hi",
             "metadata": {}, "timestamp": "2026-01-01T00:00:00Z", "invocation_id": None}
    page = EventList.from_json({"events": [event, {**event, "id": "e2", "seq": 2}], "next_cursor": "c"})
    assert len(page) == 2 and page[1].seq == 2 and [e.id for e in page] == ["e1", "e2"] and page[:1][0].id == "e1"
    assert isinstance(page[0], Event) and page.next_cursor == "c" and bool(page)
    empty = SearchResponse.from_json({"results": []})
    assert not empty and list(empty) == [] and empty.memories == []
    found = SearchResponse.from_json({"results": [{"memory": MEMORY, "score": 0.5}]})
    assert found.memories[0].fact == "Likes tea" and found[0].score == 0.5


def test_created_key_hides_the_key() -> None:
    created = CreatedKey.from_json({
        "key": "ck_secret", "id": "k1", "org_id": "default", "name": "n", "prefix": "ck_secre",
        "permissions": ["SESSION_READ"], "scope": {"user_id": "u1"}, "rate_limit_per_second": None,
        "created_at": "2026-01-01T00:00:00Z", "expires_at": None, "revoked_at": None, "last_used_at": None,
        "parent_id": "p1"})
    assert created.key == "ck_secret" and "ck_secret" not in repr(created) and "ck_secret" not in str(created.raw)
    assert created.scope == {"user_id": "u1"} and created.parent_id == "p1"


def test_job_is_done_when_final() -> None:
    base = {"id": "j1", "source_type": "events", "scope": {"user_id": "u"}, "extractor": "rules", "attempts": 1,
            "max_attempts": 3, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
            "events_processed": 1, "more_events_pending": False, "facts_extracted": 1, "memories_added": ["m"],
            "memories_updated": [], "memories_deleted": [], "llm_usage": {"calls": 0},
            "counts": {"added": 1, "updated": 0, "deleted": 0, "unchanged": 0}}
    assert not Job.from_json({**base, "status": "running"}).done
    done = Job.from_json({**base, "status": "completed", "finished_at": "2026-01-01T00:00:02Z"})
    assert done.done and done.counts.added == 1 and done.finished_at - done.created_at == timedelta(seconds=2)
    assert Job.from_json({**base, "status": "failed", "error": "boom"}).error == "boom"


def test_lineage_fields() -> None:
    session = {"id": "s2", "user_id": "u1", "scope": {"user_id": "u1"}, "state": {"step": 1}, "metadata": {},
               "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "event_count": 2,
               "parent_session_id": "p1", "forked_from": {"session_id": "s1", "seq": 2}}
    fork = Session.from_json(session)
    assert fork.parent_session_id == "p1" and fork.forked_from == ForkOrigin(session_id="s1", seq=2)
    plain = Session.from_json({**session, "parent_session_id": None, "forked_from": None})
    assert plain.parent_session_id is None and plain.forked_from is None
    assert Session.from_json({k: v for k, v in session.items() if k not in ("parent_session_id", "forked_from")}) == plain
    rewind = Event.from_json({"id": "e5", "session_id": "s1", "seq": 5, "author": "system:rewind", "role": "system",
                              "content": "Rewound to after event 1.", "metadata": {},
                              "timestamp": "2026-01-01T00:00:00Z", "kind": "rewind",
                              "rewind": {"to_seq": 1, "before_invocation_id": None},
                              "actions": {"state_delta": {"step": 1, "city": None}}})
    assert rewind.kind == "rewind" and rewind.rewind == Rewind(to_seq=1) and rewind.compaction is None
    assert rewind.actions.state_delta == {"step": 1, "city": None}
    at = StateAt.from_json({"session_id": "s1", "at_seq": 0, "state": {"step": 0}})
    assert (at.session_id, at.at_seq, at.state) == ("s1", 0, {"step": 0})
