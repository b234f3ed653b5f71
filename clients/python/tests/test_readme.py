"""The README's Python examples run against the server, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import contextiq
from support import SDK_ROOT, Server


def _blocks() -> List[str]:
    text = (SDK_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@contextlib.contextmanager
def _in(directory: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def _run(code: str, server: Server, namespace: Dict[str, Any]) -> str:
    code = code.replace("http://127.0.0.1:8000", server.url)
    code = code.replace('api_key="ck_..."', f'base_url="{server.url}", api_key="{server.admin_key}"')
    code = code.replace("ContextIQ(api_key=key", f'ContextIQ(base_url="{server.url}", api_key=key')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    return out.getvalue()


def test_every_example_runs(server: Server, tmp_path: Path) -> None:
    blocks = _blocks()
    assert len(blocks) >= 5
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin-key.txt").write_text(server.admin_key + "\n")
    with _in(tmp_path), contextiq.ContextIQ(base_url=server.url, api_key=server.admin_key) as client:
        for block in blocks:
            output = _run(block, server, {"client": client, "key": server.admin_key})
            for line, expected in zip(output.splitlines(), re.findall(r"print\(.*?\)\s+# (.*)", block)):
                assert line == expected, (block, output)
        quick_start = _run(blocks[0], server, {})
    lines = quick_start.splitlines()
    assert lines[0] == "JobCounts(added=0, updated=0, deleted=0, unchanged=2)"  # the second run: known
    assert any("Lisbon" in line for line in lines[1:])


def test_the_main_readme_shows_the_quick_start_this_suite_runs() -> None:
    """README.md's Python snippet (after its marker) is the quick start `test_every_example_runs` runs."""
    from support import REPO_ROOT

    marker = "<!-- README test: python sdk -->"
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert marker in readme, f"no {marker} in README.md"
    match = re.match(r"\s*```python\n(.*?)```", readme.split(marker, 1)[1], flags=re.S)
    assert match, f"no python block after {marker}"
    assert match.group(1) == _blocks()[0]
