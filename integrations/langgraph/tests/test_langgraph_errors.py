"""What a credential limited to one user's scope can and cannot do through the store, and how
the server's refusals reach the caller.

The key is the server's own (`server.scoped_key({"user_id": ...})`); the store maps the
namespace `(user_id, "memories")` to the scope `{"user_id": user_id, "ns1": "memories"}`, which
that key reaches only for its own user.
"""

from __future__ import annotations

from typing import Any, Callable

import contextiq
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict

from contextiq_langgraph import ContextIQStore, NamespaceForbiddenError


def test_a_scoped_key_cannot_write_another_users_namespace(server: Any, make_store: Callable[..., ContextIQStore],
                                                           native: contextiq.ContextIQ, user: str) -> None:
    other = f"{user}-other"
    admin = make_store(scope_keys=("user_id",))
    admin.put((other, "memories"), "secret", {"text": "the other user's secret"})
    scoped = make_store(scope_keys=("user_id",), api_key=server.scoped_key({"user_id": user}))

    scoped.put((user, "memories"), "mine", {"text": "my own note"})
    item = scoped.get((user, "memories"), "mine")
    assert item is not None and item.value == {"text": "my own note"}

    with pytest.raises(NamespaceForbiddenError) as raised:
        scoped.put((other, "memories"), "secret", {"text": "overwritten by someone else"})
    error = raised.value
    assert isinstance(error, contextiq.PermissionDeniedError) and isinstance(error, contextiq.ContextIQError)
    assert error.status == 403 and error.code == "forbidden"
    assert error.namespace == (other, "memories")
    assert error.scope == {"user_id": other, "ns1": "memories"}
    assert repr((other, "memories")) in str(error) and "outside the reach" in str(error)

    # A delete out of reach finds nothing to delete (reads there see an empty scope).
    scoped.delete((other, "memories"), "secret")
    # Namespaces whose scope lacks user_id altogether are out of reach too.
    with pytest.raises(NamespaceForbiddenError):
        make_store(api_key=server.scoped_key({"user_id": user})).put(("shared",), "k", {"text": "x"})

    # Reads out of reach find nothing (the server answers them as an empty scope): no leak.
    assert scoped.get((other, "memories"), "secret") is None
    assert scoped.search((other, "memories")) == []
    assert scoped.search((other, "memories"), query="secret") == []
    assert scoped.search(()) == [scoped.search((user,))[0]]
    assert scoped.list_namespaces() == [(user, "memories")]

    # The other user's memory is untouched.
    item = admin.get((other, "memories"), "secret")
    assert item is not None and item.value == {"text": "the other user's secret"}
    assert [m.fact for m in native.memories.list({"user_id": other, "ns1": "memories"}).memories] == \
        ["the other user's secret"]


async def test_the_async_store_raises_the_same(server: Any, make_store: Callable[..., ContextIQStore],
                                               user: str) -> None:
    async with make_store(scope_keys=("user_id",), api_key=server.scoped_key({"user_id": user})) as scoped:
        await scoped.aput((user, "memories"), "mine", {"text": "mine"})
        with pytest.raises(NamespaceForbiddenError) as raised:
            await scoped.aput((f"{user}-other", "memories"), "k", {"text": "not mine"})
        assert raised.value.namespace == (f"{user}-other", "memories")
        assert await scoped.aget((f"{user}-other", "memories"), "k") is None


def test_a_node_writing_another_users_namespace_fails_the_run(server: Any, make_store: Callable[..., ContextIQStore],
                                                              user: str) -> None:
    class State(TypedDict, total=False):
        target: str

    def write(state: State, *, store: BaseStore) -> State:
        store.put((state["target"], "memories"), "k", {"text": "from the graph"})
        return {}

    scoped = make_store(scope_keys=("user_id",), api_key=server.scoped_key({"user_id": user}))
    builder = StateGraph(State).add_node("write", write).add_edge(START, "write")
    graph = builder.compile(checkpointer=InMemorySaver(), store=scoped)
    graph.invoke({"target": user}, {"configurable": {"thread_id": f"{user}-ok"}})
    with pytest.raises(NamespaceForbiddenError):
        graph.invoke({"target": f"{user}-other"}, {"configurable": {"thread_id": f"{user}-no"}})
    assert [item.key for item in scoped.search((user, "memories"))] == ["k"]


def test_a_bad_key_and_a_read_only_key_raise_the_sdks_errors(server: Any, make_store: Callable[..., ContextIQStore],
                                                              user: str) -> None:
    with pytest.raises(contextiq.AuthenticationError):
        make_store(api_key="ck_not-a-key").get(("x",), "k")
    reader = make_store(scope_keys=("user_id",),
                        api_key=server.scoped_key({"user_id": user}, permissions=["MEMORY_READ"]))
    assert reader.get((user, "memories"), "k") is None
    with pytest.raises(contextiq.PermissionDeniedError) as raised:
        reader.put((user, "memories"), "k", {"text": "no write permission"})
    # A missing permission is a 403 too, but not about the namespace: the SDK's error, as is.
    assert not isinstance(raised.value, NamespaceForbiddenError)
    assert raised.value.status == 403 and "MEMORY_WRITE" in raised.value.detail


def test_a_value_over_the_metadata_limit_is_a_validation_error(store: ContextIQStore) -> None:
    with pytest.raises(contextiq.ValidationError) as raised:
        store.put(("big",), "k", {"text": "x" * 70_000})
    assert raised.value.field == "metadata"
    assert store.get(("big",), "k") is None
