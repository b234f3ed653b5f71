"""Fixtures of the LangGraph store tests, on the shared server of integrations/conftest.py.

Each test gets an engine of its own (a partition of the org that exists on first use), so
`list_namespaces()` and prefix searches, which read every scope of the engine, see exactly
what the test wrote. Helpers are fixtures, not imports: the integrations suite runs several
packages' tests in one pytest session, where a bare `import conftest` is ambiguous.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import contextiq
import pytest

from contextiq_langgraph import ContextIQStore


@pytest.fixture
def new_id() -> Callable[[str], str]:
    """A function giving ids no other test uses (the tests share one server)."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def engine(new_id: Callable[[str], str]) -> str:
    return new_id("lg")


@pytest.fixture
def native(server: Any, engine: str) -> Iterator[contextiq.ContextIQ]:
    """The native SDK client (admin key) of the test's engine, to check what the store did."""
    with server.client(engine=engine) as client:
        yield client


@pytest.fixture
def make_store(server: Any, engine: str) -> Iterator[Callable[..., ContextIQStore]]:
    """Stores on the test's engine with the admin key, unless told otherwise; closed after."""
    made: list[ContextIQStore] = []

    def make(**options: Any) -> ContextIQStore:
        options.setdefault("api_key", server.admin_key)
        options.setdefault("engine", engine)
        store = ContextIQStore(server.url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., ContextIQStore]) -> ContextIQStore:
    """A store with the default mapping (positions `ns0`, `ns1`, ...)."""
    return make_store()
