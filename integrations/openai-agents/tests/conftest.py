"""Fixtures of the openai-agents adapter's tests (the server itself: integrations/conftest.py)."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator, List

import pytest
from agents import set_tracing_disabled

import contextiq
from contextiq_openai_agents import ContextIQSession

# The runner would export traces to OpenAI's platform: nothing to send them to in these tests.
set_tracing_disabled(True)

SessionFactory = Callable[..., ContextIQSession]


@pytest.fixture
async def make_session(server: Any) -> AsyncIterator[SessionFactory]:
    """`make_session(session_id, user_id=..., **options)`: a `ContextIQSession` on the server
    under test with the admin key (unless `api_key`/`client` is given), closed after the test."""
    made: List[ContextIQSession] = []

    def make(session_id: str, *, user_id: str, **options: Any) -> ContextIQSession:
        if "client" not in options:
            options.setdefault("base_url", server.url)
            options.setdefault("api_key", server.admin_key)
        session = ContextIQSession(session_id, user_id=user_id, **options)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.aclose()


@pytest.fixture
def native(server: Any) -> Iterator[contextiq.ContextIQ]:
    """The native SDK client (admin key, default engine): what the server holds."""
    with server.client() as client:
        yield client

