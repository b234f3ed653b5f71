"""Fixtures of the LlamaIndex adapter's tests; the server is the suite's (integrations/conftest.py).

Helpers are fixtures, not importable functions: every adapter's tests directory has a
conftest.py, so `import conftest` would reach whichever was loaded last.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional

import contextiq
import pytest

from contextiq_llamaindex import SESSION_METADATA_KEY, ContextIQMemoryBlock


@pytest.fixture
def native(server: Any) -> Iterator[contextiq.ContextIQ]:
    """The native SDK client with the admin key: what the adapter did, seen from outside."""
    with server.client() as client:
        yield client


@pytest.fixture
def make_block(server: Any) -> Callable[..., ContextIQMemoryBlock]:
    """A block on the server under test (admin key unless `api_key` is given)."""

    def make(**fields: Any) -> ContextIQMemoryBlock:
        fields.setdefault("base_url", server.url)
        fields.setdefault("api_key", server.admin_key)
        return ContextIQMemoryBlock(**fields)

    return make


@pytest.fixture
def sessions_of(native: contextiq.ContextIQ) -> Callable[[str], Dict[Optional[str], contextiq.Session]]:
    """The ContextIQ sessions of a user, by the LlamaIndex session id in their metadata."""

    def find(user_id: str) -> Dict[Optional[str], contextiq.Session]:
        return {session.metadata.get(SESSION_METADATA_KEY): session
                for session in native.sessions.iter(user_id=user_id)}

    return find


@pytest.fixture
def contents(native: contextiq.ContextIQ) -> Callable[[str], List[Any]]:
    """The (author, role, content) of every event of a ContextIQ session, in order."""

    def read(session_id: str) -> List[Any]:
        return [(event.author, event.role, event.content) for event in native.sessions.iter_events(session_id)]

    return read
