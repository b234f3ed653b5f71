"""ContextIQStore through LangGraph's BaseStore API, sync and async, against the real server.

Each test checks the store's answers and, where the mapping matters, the memories the native
API sees (scope, topic, fact, metadata).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import contextiq
import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, Item, ListNamespacesOp, PutOp, SearchItem, SearchOp

from contextiq_langgraph import METADATA_KEY, ContextIQStore


def scope_of(*labels: str) -> dict[str, str]:
    """The scope of a namespace under the default mapping."""
    return {f"ns{position}": label for position, label in enumerate(labels)}


def keys(items: Any) -> list[str]:
    return [item.key for item in items]


# get / put / delete


def test_a_missing_key_is_none_and_a_put_reads_back(store: ContextIQStore, native: contextiq.ContextIQ) -> None:
    namespace = ("users", "u1", "memories")
    assert store.get(namespace, "prefs") is None
    value = {"text": "Prefers window seats", "nested": {"n": 1, "list": [1, "two", None, True]}, "é": "ü"}
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    store.put(namespace, "prefs", value)

    item = store.get(namespace, "prefs")
    assert isinstance(item, Item)
    assert (item.namespace, item.key, item.value) == (namespace, "prefs", value)
    assert item.created_at == item.updated_at and item.created_at > before
    assert item.created_at.tzinfo is not None
    assert store.get(namespace, "other") is None
    assert store.get(("users", "u1"), "prefs") is None  # a namespace is exact: no prefix match

    [memory] = native.memories.list(scope_of(*namespace)).memories
    assert memory.topic == "prefs"
    assert memory.fact == "Prefers window seats\n1\n1\ntwo\nTrue\nü"
    assert memory.metadata[METADATA_KEY] == {"key": "prefs", "value": value, "indexed": True}


def test_an_overwrite_changes_the_one_memory_and_keeps_created_at(store: ContextIQStore,
                                                                  native: contextiq.ContextIQ) -> None:
    namespace = ("profiles", "u2")
    store.put(namespace, "city", {"text": "Lives in Porto"})
    first = store.get(namespace, "city")
    store.put(namespace, "city", {"text": "Lives in Lisbon", "since": 2024})

    second = store.get(namespace, "city")
    assert second is not None and first is not None
    assert second.value == {"text": "Lives in Lisbon", "since": 2024}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    memories = native.memories.list(scope_of(*namespace)).memories
    assert [m.fact for m in memories] == ["Lives in Lisbon\n2024"]
    revisions = native.memories.revisions(memories[0].id)
    assert [r.action for r in revisions] == ["created", "updated"]


def test_delete_removes_the_item_and_a_put_brings_it_back(store: ContextIQStore,
                                                          native: contextiq.ContextIQ) -> None:
    namespace = ("notes",)
    store.put(namespace, "a", {"text": "alpha"})
    store.put(namespace, "b", {"text": "beta"})
    store.delete(namespace, "a")
    store.delete(namespace, "never-written")  # deleting a missing key is no error

    assert store.get(namespace, "a") is None
    assert keys(store.search(namespace)) == ["b"]
    assert keys(store.search(namespace, query="alpha")) == ["b"]
    assert [m.fact for m in native.memories.list(scope_of("notes")).memories] == ["beta"]

    store.put(namespace, "a", {"text": "alpha again"})
    item = store.get(namespace, "a")
    assert item is not None and item.value == {"text": "alpha again"}


def test_purge_deletes_erases_the_history(make_store: Callable[..., ContextIQStore],
                                          native: contextiq.ContextIQ) -> None:
    keeping, purging = make_store(), make_store(purge_deletes=True)
    keeping.put(("k",), "x", {"text": "kept"})
    purging.put(("p",), "x", {"text": "purged"})
    kept_id = native.memories.list(scope_of("k")).memories[0].id
    purged_id = native.memories.list(scope_of("p")).memories[0].id
    keeping.delete(("k",), "x")
    purging.delete(("p",), "x")
    assert [r.action for r in native.memories.revisions(kept_id)] == ["created", "deleted"]
    with pytest.raises(contextiq.NotFoundError):
        native.memories.revisions(purged_id)


def test_keys_a_topic_cannot_hold_still_work(store: ContextIQStore, native: contextiq.ContextIQ) -> None:
    namespace = ("odd",)
    long_key, newline_key, spaced = "k" * 300, "line\nbreak", "  "
    for key in (long_key, newline_key, spaced, "plain"):
        store.put(namespace, key, {"text": f"value of {key!r}"})
    for key in (long_key, newline_key, spaced, "plain"):
        item = store.get(namespace, key)
        assert item is not None and item.key == key and item.value == {"text": f"value of {key!r}"}
    topics = {m.metadata[METADATA_KEY]["key"]: str(m.topic) for m in native.memories.list(scope_of("odd")).memories}
    assert topics["plain"] == "plain"
    for key in (long_key, newline_key, spaced):
        assert topics[key].startswith("langgraph-key-sha256:")
    # A key spelled like another's hashed topic finds that memory, but it is not its item.
    assert store.get(namespace, topics[long_key]) is None
    store.put(namespace, topics[long_key], {"text": "a literal key"})
    literal, hashed = store.get(namespace, topics[long_key]), store.get(namespace, long_key)
    assert literal is not None and literal.value == {"text": "a literal key"}
    assert hashed is not None and hashed.value == {"text": f"value of {long_key!r}"}


def test_memories_the_store_did_not_write_are_not_items(store: ContextIQStore,
                                                        native: contextiq.ContextIQ) -> None:
    native.memories.create(scope_of("mixed"), "Written natively", topic="k")
    store.put(("mixed",), "k", {"text": "Written by the store"})
    item = store.get(("mixed",), "k")
    assert item is not None and item.value == {"text": "Written by the store"}
    assert keys(store.search(("mixed",))) == ["k"]
    assert keys(store.search(("mixed",), query="written")) == ["k"]
    assert len(native.memories.list(scope_of("mixed")).memories) == 2


def test_a_value_must_be_json(store: ContextIQStore) -> None:
    with pytest.raises(TypeError, match="not JSON"):
        store.put(("bad",), "k", {"when": datetime.now()})
    assert store.get(("bad",), "k") is None


def test_namespaces_no_scope_can_hold_are_refused(store: ContextIQStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(("x" * 257,), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(tuple(f"l{i}" for i in range(33)), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph",), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("tab\there",), "k")])
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp((), "k", {"a": 1})])


# search


@pytest.fixture
def tree(store: ContextIQStore) -> ContextIQStore:
    """Items in ("docs",), ("docs", "a"), ("docs", "a", "b"), ("docs", "c") and ("other",), in that order."""
    store.put(("docs",), "root", {"text": "the root document", "kind": "root"})
    store.put(("docs", "a"), "a1", {"text": "pasta carbonara recipe", "kind": "recipe", "stars": 5})
    store.put(("docs", "a", "b"), "b1", {"text": "bicycle repair manual", "kind": "manual", "stars": 3})
    store.put(("docs", "c"), "c1", {"text": "pizza margherita recipe", "kind": "recipe", "stars": 4,
                                     "meta": {"lang": "it"}})
    store.put(("other",), "o1", {"text": "pizza outside docs", "kind": "recipe"})
    return store


def test_search_reads_a_namespace_prefix_newest_first(tree: ContextIQStore) -> None:
    found = tree.search(("docs",))
    assert keys(found) == ["c1", "b1", "a1", "root"]
    assert all(isinstance(item, SearchItem) and item.score is None for item in found)
    assert [item.namespace for item in found] == [("docs", "c"), ("docs", "a", "b"), ("docs", "a"), ("docs",)]
    assert keys(tree.search(("docs", "a"))) == ["b1", "a1"]
    assert keys(tree.search(("docs", "a", "b"))) == ["b1"]
    assert keys(tree.search(("doc",))) == []  # labels match whole, not as text prefixes
    assert keys(tree.search(())) == ["o1", "c1", "b1", "a1", "root"]


def test_search_subnamespaces_false_reads_exactly_the_namespace(make_store: Callable[..., ContextIQStore],
                                                                 tree: ContextIQStore) -> None:
    exact = make_store(search_subnamespaces=False)
    assert keys(exact.search(("docs",))) == ["root"]
    assert keys(exact.search(("docs", "a"))) == ["a1"]
    assert keys(exact.search(("docs", "a"), query="recipe")) == ["a1"]
    assert keys(exact.search(())) == ["o1", "c1", "b1", "a1", "root"]  # the whole store still scans


def test_a_query_ranks_a_namespace_with_the_hybrid_search(store: ContextIQStore) -> None:
    texts = ["fixing a flat bicycle tyre", "baking sourdough bread", "tomato pasta sauce for dinner",
             "the history of Rome", "learning to swim"]
    for number, text in enumerate(texts):
        store.put(("ranked",), f"k{number}", {"text": text})
    found = store.search(("ranked",), query="how do I repair my bike?")
    assert found[0].key == "k0"
    assert sorted(keys(found)) == ["k0", "k1", "k2", "k3", "k4"]
    scores = [item.score if item.score is not None else -1.0 for item in found]
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert store.search(("ranked",), query="what should I cook tonight?")[0].key == "k2"  # by meaning alone
    assert keys(store.search(("ranked",), query="sourdough", limit=1)) == ["k1"]


def test_a_query_over_several_namespaces_merges_their_rankings(tree: ContextIQStore) -> None:
    # Each namespace is ranked on its own (scores are normalised per scope): a lexical match
    # outscores the other namespaces' best, which only match by meaning.
    found = tree.search(("docs",), query="pizza")
    assert keys(found)[0] == "c1"
    assert sorted(keys(found)) == ["a1", "b1", "c1", "root"]
    scores = [item.score if item.score is not None else -1.0 for item in found]
    assert min(scores) >= 0.0 and scores == sorted(scores, reverse=True)
    assert keys(tree.search(("docs",), query="bicycle"))[0] == "b1"
    assert set(keys(tree.search(("docs", "a"), query="pizza"))) == {"a1", "b1"}
    assert keys(tree.search((), query="pizza"))[:2] in (["c1", "o1"], ["o1", "c1"])


def test_filter_matches_values_exactly_with_and_without_a_query(tree: ContextIQStore) -> None:
    assert keys(tree.search(("docs",), filter={"kind": "recipe"})) == ["c1", "a1"]
    assert keys(tree.search(("docs",), filter={"kind": "recipe", "stars": 5})) == ["a1"]
    assert keys(tree.search(("docs",), filter={"meta": {"lang": "it"}})) == ["c1"]
    assert keys(tree.search(("docs",), filter={"stars": {"$gte": 4}})) == ["c1", "a1"]
    assert keys(tree.search(("docs",), filter={"kind": {"$ne": "recipe"}})) == ["b1", "root"]
    assert keys(tree.search(("docs",), filter={"kind": "nothing"})) == []
    assert keys(tree.search(("docs",), query="pizza", filter={"kind": "recipe"}))[0] == "c1"
    assert set(keys(tree.search(("docs",), query="pizza", filter={"kind": "recipe"}))) == {"a1", "c1"}
    assert keys(tree.search(("docs",), query="pizza", filter={"kind": "manual"})) == ["b1"]


def test_limit_and_offset_page_the_results(store: ContextIQStore) -> None:
    for number in range(7):
        store.put(("pages",), f"k{number}", {"text": f"note number {number} about gardening", "n": number})
    newest_first = [f"k{number}" for number in reversed(range(7))]
    assert keys(store.search(("pages",), limit=3)) == newest_first[:3]
    assert keys(store.search(("pages",), limit=3, offset=3)) == newest_first[3:6]
    assert keys(store.search(("pages",), limit=3, offset=6)) == newest_first[6:]
    assert keys(store.search(("pages",), limit=3, offset=9)) == []
    assert keys(store.search(("pages",), limit=0)) == []
    assert keys(store.search(("pages",), filter={"n": {"$lt": 4}}, limit=2, offset=1)) == ["k2", "k1"]

    ranked = keys(store.search(("pages",), query="gardening note", limit=7))
    assert sorted(ranked) == sorted(newest_first)
    assert keys(store.search(("pages",), query="gardening note", limit=2, offset=2)) == ranked[2:4]
    assert len(store.search(("pages",), query="gardening note")) == 7  # default limit 10


def test_index_fields_choose_the_fact(make_store: Callable[..., ContextIQStore],
                                      native: contextiq.ContextIQ) -> None:
    store = make_store(index={"fields": ["summary", "tags[*]"]})
    store.put(("idx",), "both", {"summary": "A trip to Japan", "tags": ["travel", "food"], "body": "not indexed"})
    store.put(("idx",), "override", {"summary": "ignored", "body": "Quantum physics lecture"}, index=["body"])
    store.put(("idx",), "off", {"summary": "Quantum entanglement notes"}, index=False)
    store.put(("idx",), "empty", {"body": "no summary here"})
    facts = {m.metadata[METADATA_KEY]["key"]: (m.fact, m.metadata[METADATA_KEY]["indexed"])
             for m in native.memories.list(scope_of("idx")).memories}
    assert facts == {
        "both": ("A trip to Japan\ntravel\nfood", True),
        "override": ("Quantum physics lecture", True),
        "off": ("off", False),
        "empty": ("empty", False),
    }
    found = store.search(("idx",), query="quantum")
    assert found[0].key == "override" and found[0].score is not None
    unindexed = [item for item in found if item.key in ("off", "empty")]
    assert unindexed and all(item.score is None for item in unindexed)
    assert found[-len(unindexed):] == unindexed  # after every scored item


def test_ttl_sets_and_clears_the_memorys_expiry(store: ContextIQStore, native: contextiq.ContextIQ) -> None:
    store.put(("ttl",), "k", {"text": "short lived"}, ttl=2)
    [memory] = native.memories.list(scope_of("ttl")).memories
    assert memory.expires_at is not None
    remaining = memory.expires_at - datetime.now(timezone.utc)
    assert timedelta(seconds=100) < remaining <= timedelta(seconds=120)
    store.put(("ttl",), "k", {"text": "now forever"})
    [memory] = native.memories.list(scope_of("ttl")).memories
    assert memory.expires_at is None


# list_namespaces


def test_list_namespaces_with_prefix_suffix_depth_and_pages(tree: ContextIQStore) -> None:
    tree.put(("docs", "x", "b"), "k", {"text": "another b"})
    assert tree.list_namespaces() == [("docs",), ("docs", "a"), ("docs", "a", "b"), ("docs", "c"),
                                      ("docs", "x", "b"), ("other",)]
    assert tree.list_namespaces(prefix=("docs", "a")) == [("docs", "a"), ("docs", "a", "b")]
    assert tree.list_namespaces(prefix=("docs", "*", "b")) == [("docs", "a", "b"), ("docs", "x", "b")]
    assert tree.list_namespaces(suffix=("b",)) == [("docs", "a", "b"), ("docs", "x", "b")]
    assert tree.list_namespaces(prefix=("docs",), suffix=("c",)) == [("docs", "c")]
    assert tree.list_namespaces(max_depth=1) == [("docs",), ("other",)]
    assert tree.list_namespaces(prefix=("docs",), max_depth=2) == [("docs",), ("docs", "a"), ("docs", "c"),
                                                                    ("docs", "x")]
    assert tree.list_namespaces(limit=2) == [("docs",), ("docs", "a")]
    assert tree.list_namespaces(limit=2, offset=4) == [("docs", "x", "b"), ("other",)]
    assert tree.list_namespaces(prefix=("nothing",)) == []
    tree.delete(("other",), "o1")
    assert ("other",) not in tree.list_namespaces()


def test_scope_keys_name_the_positions_and_round_trip(make_store: Callable[..., ContextIQStore],
                                                      native: contextiq.ContextIQ) -> None:
    store = make_store(scope_keys=("user_id", "kind"))
    store.put(("u7", "memories"), "k", {"text": "named positions"})
    store.put(("u7", "memories", "deep"), "k", {"text": "a third label"})
    assert native.memories.list({"user_id": "u7", "kind": "memories"}).memories[0].fact == "named positions"
    assert native.memories.list({"user_id": "u7", "kind": "memories", "ns2": "deep"}).memories[0].fact == \
        "a third label"
    assert store.list_namespaces() == [("u7", "memories"), ("u7", "memories", "deep")]
    assert store.list_namespaces(prefix=("u7", "memories"), max_depth=2) == [("u7", "memories")]
    # A scope with a key the mapping does not produce is not a namespace of this store.
    native.memories.create({"user_id": "u7", "channel": "x"}, "foreign", metadata={
        METADATA_KEY: {"key": "f", "value": {}, "indexed": True}})
    assert store.list_namespaces() == [("u7", "memories"), ("u7", "memories", "deep")]
    # The default mapping reads the same memories under other names, or not at all.
    assert make_store().list_namespaces() == []
    with pytest.raises(ValueError):
        ContextIQStore(scope_keys=("ns1",))
    with pytest.raises(ValueError):
        ContextIQStore(scope_keys=("user.id",))


# batch


def test_a_batch_reads_before_it_writes_and_the_last_write_wins(store: ContextIQStore) -> None:
    store.put(("batch",), "k", {"v": "old"})
    results = store.batch([
        PutOp(("batch",), "k", {"v": "first"}),
        GetOp(("batch",), "k"),
        PutOp(("batch",), "k", {"v": "last"}),
        PutOp(("batch",), "new", {"v": 1}),
        SearchOp(("batch",)),
        ListNamespacesOp(),
        GetOp(("batch",), "missing"),
    ])
    assert results[0] is None and results[2] is None and results[3] is None
    assert isinstance(results[1], Item) and results[1].value == {"v": "old"}
    assert keys(results[4]) == ["k"]
    assert results[5] == [("batch",)]
    assert results[6] is None
    item = store.get(("batch",), "k")
    assert item is not None and item.value == {"v": "last"}
    assert keys(store.search(("batch",))) == ["new", "k"]


# async


async def test_the_async_api_does_the_same(make_store: Callable[..., ContextIQStore],
                                           native: contextiq.ContextIQ) -> None:
    async with make_store() as store:
        namespace = ("async", "u1")
        assert await store.aget(namespace, "k") is None
        await asyncio.gather(*(store.aput(namespace, f"k{n}", {"text": f"async note {n} about sailing", "n": n})
                               for n in range(4)))
        await store.aput(("async", "u1", "deep"), "d", {"text": "deeper sailing trip", "n": 9})
        item = await store.aget(namespace, "k2")
        assert item is not None and item.value == {"text": "async note 2 about sailing", "n": 2}

        await store.aput(namespace, "k2", {"text": "overwritten", "n": 2})
        again = await store.aget(namespace, "k2")
        assert again is not None and again.value["text"] == "overwritten" and again.created_at == item.created_at

        assert len(await store.asearch(("async",))) == 5
        assert keys(await store.asearch(("async",), filter={"n": {"$gt": 2}})) == ["d", "k3"]
        ranked = await store.asearch(namespace, query="overwritten")
        assert ranked[0].key == "k2" and len(ranked) == 5 and all(item.score is not None for item in ranked)
        page = await store.asearch(("async",), limit=2, offset=1)
        assert len(page) == 2
        assert await store.alist_namespaces(prefix=("async",)) == [("async", "u1"), ("async", "u1", "deep")]
        assert await store.alist_namespaces(max_depth=2) == [("async", "u1")]

        await store.adelete(namespace, "k0")
        assert await store.aget(namespace, "k0") is None
        results = await store.abatch([GetOp(namespace, "k1"), GetOp(namespace, "k0"), SearchOp(namespace, limit=1)])
        assert isinstance(results[0], Item) and results[1] is None and keys(results[2]) == ["d"]
    assert len(native.memories.list(scope_of(*namespace)).memories) == 3


async def test_async_methods_with_only_a_sync_client_run_it_in_a_thread(server: Any, engine: str) -> None:
    with server.client(engine=engine) as client:
        store = ContextIQStore(client=client)
        await store.aput(("thread",), "k", {"text": "via a thread"})
        item = await store.aget(("thread",), "k")
        assert item is not None and item.value == {"text": "via a thread"}


def test_sync_methods_with_only_an_async_client_raise(server: Any) -> None:
    store = ContextIQStore(async_client=contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key))
    with pytest.raises(RuntimeError, match="async methods"):
        store.get(("x",), "k")
