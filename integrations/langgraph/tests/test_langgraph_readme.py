"""The README snippets run as written against the real server.

Every ```python block of this package's README runs in order (one namespace), then the block
after `<!-- README test: python langgraph -->` in the repository's README.md (missing marker:
failure), each with the server's address for `http://127.0.0.1:8000` and the admin key in
`CONTEXTIQ_API_KEY`. What the snippets stored must be there, natively.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from contextiq_langgraph import METADATA_KEY, ContextIQStore

PACKAGE_README = Path(__file__).resolve().parents[1] / "README.md"
REPO_README = Path(__file__).resolve().parents[3] / "README.md"
MARKER = "<!-- README test: python langgraph -->"
ADDRESS = "http://127.0.0.1:8000"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def block_after_marker(text: str) -> str:
    assert MARKER in text, f"README.md has no {MARKER} marker"
    match = re.match(r"\s*```python\n(.*?)^```", text.split(MARKER, 1)[1], re.DOTALL | re.MULTILINE)
    assert match, f"no ```python block right after {MARKER}"
    return match.group(1)


def run(code: str, server: Any, name: str, namespace: dict[str, Any]) -> None:
    assert ADDRESS in code, f"the snippet of {name} names no server at {ADDRESS}"
    exec(compile(code.replace(ADDRESS, server.url), name, "exec"), namespace)


def stores_in(namespace: dict[str, Any]) -> list[ContextIQStore]:
    return [value for value in namespace.values() if isinstance(value, ContextIQStore)]


def assert_native_api_sees(server: Any, store: ContextIQStore) -> None:
    """Every item the store lists is a memory of its namespace's scope, natively."""
    items = store.search(())
    assert items, "the snippet stored nothing"
    with server.client() as native:
        for item in items:
            memories = native.memories.list(store.scope(item.namespace), limit=100).memories
            entries = [m.metadata.get(METADATA_KEY) for m in memories]
            assert {"key": item.key, "value": item.value} in [
                {"key": entry["key"], "value": entry["value"]} for entry in entries if entry]


@pytest.fixture
def api_key_in_env(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTIQ_API_KEY", server.admin_key)


def test_the_package_readme_runs(server: Any, api_key_in_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(PACKAGE_README.read_text())
    assert blocks, "the package README has no python block"
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in blocks:
        run(block, server, str(PACKAGE_README), namespace)
    printed = capsys.readouterr().out
    assert "{'text': 'Vegetarian, allergic to peanuts'}" in printed
    assert "{'text': 'I live in Lisbon'}" in printed
    [store] = stores_in(namespace)
    city = store.get(("u1", "memories"), "city")
    assert city is not None and city.value == {"text": "I live in Lisbon"}
    assert store.scope(("u1", "memories")) == {"user_id": "u1", "ns1": "memories"}
    assert_native_api_sees(server, store)
    store.close()


def test_the_repository_readme_langgraph_block_runs(server: Any, api_key_in_env: None) -> None:
    code = block_after_marker(REPO_README.read_text())
    namespace: dict[str, Any] = {"__name__": "readme"}
    run(code, server, str(REPO_README), namespace)
    stores = stores_in(namespace)
    assert stores, "the README block makes no ContextIQStore"
    for store in stores:
        assert_native_api_sees(server, store)
        store.close()


def test_the_marker_check_fails_without_the_marker() -> None:
    """The repository README test cannot pass vacuously: no marker, no block, is a failure."""
    with pytest.raises(AssertionError, match="marker"):
        block_after_marker("# README\n```python\nprint(1)\n```\n")
    with pytest.raises(AssertionError, match="no ```python block"):
        block_after_marker(f"{MARKER}\n```sh\necho 1\n```\n")
    assert block_after_marker(f"{MARKER}\n```python\nprint(1)\n```\n") == "print(1)\n"
