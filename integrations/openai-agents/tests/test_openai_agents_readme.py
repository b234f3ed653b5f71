"""The READMEs' Python blocks run as written against the real server.

Every ```python block of this package's README, and the block after
`<!-- README test: python openai-agents -->` in the repository's README, runs with the server's
address for `http://127.0.0.1:8000`, the admin key in `CONTEXTIQ_API_KEY`, and a stub in place
of OpenAI's model (the runner's default provider is patched: no network, no OpenAI key).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import pytest
from agents.items import TResponseInputItem
from agents.models.multi_provider import MultiProvider

from openai_agents_support import StubModel, text_of, text_output

PACKAGE_README = Path(__file__).resolve().parents[1] / "README.md"
MAIN_README = Path(__file__).resolve().parents[3] / "README.md"
MARKER = "<!-- README test: python openai-agents -->"
URL = "http://127.0.0.1:8000"


class EchoModel(StubModel):
    """Answers every call: from the history when asked where the user lives."""

    def _record(self, input: Union[str, List[TResponseInputItem]]) -> List[Any]:
        self.outputs = [[text_output(self.answer(input))]]
        return super()._record(input)

    @staticmethod
    def answer(input: Union[str, List[TResponseInputItem]]) -> str:
        texts = [input] if isinstance(input, str) else [text_of(dict(i)) or "" for i in input]
        if "Where do I live?" in texts[-1]:
            return "In Lisbon." if any("Lisbon" in text for text in texts[:-1]) else "I don't know."
        return "Noted."


def python_blocks(text: str) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def marked_block(text: str) -> Optional[str]:
    if MARKER not in text:
        return None
    match = re.match(r"\s*```python\n(.*?)```", text.split(MARKER, 1)[1], re.DOTALL)
    assert match, f"no python block right after {MARKER}"
    return match.group(1)


def run_block(block: str, server: Any, monkeypatch: pytest.MonkeyPatch, source: str) -> EchoModel:
    assert URL in block, f"a block of {source} does not use {URL}"
    model = EchoModel()
    monkeypatch.setattr(MultiProvider, "get_model", lambda self, name: model)
    monkeypatch.setenv("CONTEXTIQ_API_KEY", server.admin_key)
    namespace: Dict[str, Any] = {"__name__": "__main__"}
    exec(compile(block.replace(URL, server.url), source, "exec"), namespace)
    return model


def check_quick_start(model: EchoModel, server: Any, output: str) -> None:
    """The quick start's two turns reached the model and the server, and memories came of them."""
    assert len(model.inputs) == 2
    second = [text_of(item) for item in model.inputs[1]]
    assert "I live in Lisbon and I love coffee." in second and second[-1] == "Where do I live?"
    assert "In Lisbon." in output and "JobCounts(" in output
    with server.client() as native:
        [record] = [s for s in native.sessions.iter(user_id="u1")
                    if s.metadata.get("openai_agents", {}).get("session_id") == "conversation-123"]
        contents = [e.content for e in native.sessions.iter_events(record.id)]
        assert contents[-4]["content"] == "I live in Lisbon and I love coffee."
        assert contents[-2]["content"] == "Where do I live?"
        assert any("Lisbon" in m.fact for m in native.memories.iter({"user_id": "u1"}))


def test_the_package_readme_runs(server, monkeypatch, capsys):
    blocks = python_blocks(PACKAGE_README.read_text())
    assert blocks, "the package README has no python block"
    for index, block in enumerate(blocks):
        model = run_block(block, server, monkeypatch, f"{PACKAGE_README}[{index}]")
        if index == 0:
            check_quick_start(model, server, capsys.readouterr().out)


def test_the_main_readme_block_runs(server, monkeypatch, capsys):
    """The repository's README carries the quick start after its marker (a copy of this
    package's first python block)."""
    block = marked_block(MAIN_README.read_text())
    assert block is not None, f"{MAIN_README} has no {MARKER} marker"
    assert block == python_blocks(PACKAGE_README.read_text())[0], "the main README's block differs from the package's"
    model = run_block(block, server, monkeypatch, str(MAIN_README))
    check_quick_start(model, server, capsys.readouterr().out)
