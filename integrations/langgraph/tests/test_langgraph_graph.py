"""ContextIQStore as the long-term memory of a real LangGraph graph.

A `StateGraph` compiled with `store=ContextIQStore(...)` and an `InMemorySaver` checkpointer:
nodes write memories through the injected `store` parameter, `get_store()` and `Runtime`, and
a second invocation on another thread (so no shared checkpoint state) finds what the first
stored. The native API sees the same memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypedDict

import contextiq
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from contextiq_langgraph import METADATA_KEY, ContextIQStore


class State(TypedDict, total=False):
    message: str
    recalled: list[str]
    remembered: list[str]


@dataclass
class Context:
    user_id: str


def namespace_of(user_id: str) -> tuple[str, str]:
    return (user_id, "memories")


def recall(state: State, runtime: Runtime[Context], *, store: BaseStore) -> State:
    """Reads long-term memory through the injected `store` parameter."""
    assert store is runtime.store
    found = store.search(namespace_of(runtime.context.user_id), query=state["message"], limit=3)
    return {"recalled": [item.value["text"] for item in found]}


def remember(state: State, runtime: Runtime[Context]) -> State:
    """Writes long-term memory through `get_store()`, only for "remember ..." messages."""
    message = state["message"]
    if not message.lower().startswith("remember"):
        return {"remembered": []}
    text = message.split(":", 1)[1].strip()
    key = text.split()[-1].lower()  # "peanuts", "ana"
    get_store().put(namespace_of(runtime.context.user_id), key, {"text": text, "source": "chat"})
    return {"remembered": [key]}


async def arecall(state: State, runtime: Runtime[Context], *, store: BaseStore) -> State:
    found = await store.asearch(namespace_of(runtime.context.user_id), query=state["message"], limit=3)
    return {"recalled": [item.value["text"] for item in found]}


async def aremember(state: State, runtime: Runtime[Context]) -> State:
    message = state["message"]
    if not message.lower().startswith("remember"):
        return {"remembered": []}
    text = message.split(":", 1)[1].strip()
    assert runtime.store is not None
    await runtime.store.aput(namespace_of(runtime.context.user_id), "fact", {"text": text, "source": "chat"})
    return {"remembered": ["fact"]}


def build(store: ContextIQStore, recall_node: Callable[..., Any], remember_node: Callable[..., Any]) -> Any:
    graph = StateGraph(State, context_schema=Context)
    graph.add_node("recall", recall_node)
    graph.add_node("remember", remember_node)
    graph.add_edge(START, "recall")
    graph.add_edge("recall", "remember")
    graph.add_edge("remember", END)
    return graph.compile(checkpointer=InMemorySaver(), store=store)


def test_a_second_thread_recalls_what_the_first_remembered(make_store: Callable[..., ContextIQStore],
                                                           native: contextiq.ContextIQ, user: str) -> None:
    store = make_store(scope_keys=("user_id",), index={"fields": ["text"]})
    graph = build(store, recall, remember)
    context = Context(user_id=user)

    first = graph.invoke({"message": "Remember: I am allergic to peanuts"},
                         {"configurable": {"thread_id": f"{user}-1"}}, context=context)
    assert first["recalled"] == []
    assert first["remembered"] == ["peanuts"]
    graph.invoke({"message": "Remember: my daughter is called Ana"},
                 {"configurable": {"thread_id": f"{user}-1"}}, context=context)

    second = graph.invoke({"message": "Which food allergy do I have?"},
                          {"configurable": {"thread_id": f"{user}-2"}}, context=context)
    assert second["recalled"][0] == "I am allergic to peanuts"
    assert set(second["recalled"]) == {"I am allergic to peanuts", "my daughter is called Ana"}
    assert second["remembered"] == []
    # The second thread started from nothing: its state is its own message only.
    assert graph.get_state({"configurable": {"thread_id": f"{user}-2"}}).values["message"] == \
        "Which food allergy do I have?"

    # Another user's run sees none of it.
    other = graph.invoke({"message": "Which food allergy do I have?"},
                         {"configurable": {"thread_id": f"{user}-3"}}, context=Context(user_id=f"{user}-other"))
    assert other["recalled"] == []

    # The native API sees the memories in the user's scope, and its search finds them.
    scope = {"user_id": user, "ns1": "memories"}
    memories = native.memories.list(scope).memories
    assert sorted(m.fact for m in memories) == ["I am allergic to peanuts", "my daughter is called Ana"]
    assert {m.metadata[METADATA_KEY]["key"] for m in memories} == {"peanuts", "ana"}
    results = native.memories.search(scope, "peanut allergy", top_k=1)
    assert results[0].memory.fact == "I am allergic to peanuts"
    assert results[0].memory.metadata[METADATA_KEY]["value"] == {"text": "I am allergic to peanuts", "source": "chat"}


async def test_an_async_graph_recalls_across_threads(make_store: Callable[..., ContextIQStore],
                                                     native: contextiq.ContextIQ, user: str) -> None:
    async with make_store(scope_keys=("user_id",), index={"fields": ["text"]}) as store:
        graph = build(store, arecall, aremember)
        context = Context(user_id=user)
        first = await graph.ainvoke({"message": "Remember: I moved to Porto in 2024"},
                                    {"configurable": {"thread_id": f"{user}-a"}}, context=context)
        assert first["recalled"] == [] and first["remembered"] == ["fact"]
        second = await graph.ainvoke({"message": "Where do I live now?"},
                                     {"configurable": {"thread_id": f"{user}-b"}}, context=context)
        assert second["recalled"] == ["I moved to Porto in 2024"]
        # A sync node in an async graph runs in a thread with the store's sync client.
        mixed = build(store, recall, aremember)
        third = await mixed.ainvoke({"message": "Porto"}, {"configurable": {"thread_id": f"{user}-c"}},
                                    context=context)
        assert third["recalled"] == ["I moved to Porto in 2024"]
    [memory] = native.memories.list({"user_id": user, "ns1": "memories"}).memories
    assert memory.fact == "I moved to Porto in 2024" and memory.topic == "fact"
