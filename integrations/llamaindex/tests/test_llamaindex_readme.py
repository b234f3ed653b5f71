"""The READMEs' Python blocks run as written against the real server.

Every ```python block of this package's README, and the block after
`<!-- README test: python llamaindex -->` in the repository's README.md, runs with the server's
address for `http://127.0.0.1:8000`, the admin key in `CONTEXTIQ_API_KEY` and a user id of its
own for `"u1"` (the tests share one server). Sync tests: the blocks may call `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any, Dict, List

import contextiq
import pytest
from llama_index.core.base.llms.types import ChatMessage

PACKAGE_README = Path(__file__).resolve().parents[1] / "README.md"
MAIN_README = Path(__file__).resolve().parents[3] / "README.md"
MARKER = "<!-- README test: python llamaindex -->"
LISBON = "<fact>User lives in Lisbon</fact>"


def python_blocks(text: str) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def run(block: str, server: Any, user_id: str, origin: str) -> Dict[str, Any]:
    assert "http://127.0.0.1:8000" in block, f"a block of {origin} does not name the server"
    code = block.replace("http://127.0.0.1:8000", server.url).replace('"u1"', f'"{user_id}"')
    namespace: Dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, origin, "exec"), namespace)
    return namespace


@pytest.fixture
def readme_env(server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONTEXTIQ_API_KEY", server.admin_key)
    return server


def test_the_package_readme_blocks(readme_env: Any, native: contextiq.ContextIQ,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(PACKAGE_README.read_text())
    assert blocks, "no python block in the package README"
    user_id = f"readme-{uuid.uuid4().hex[:8]}"
    for block in blocks:
        run(block, readme_env, user_id, str(PACKAGE_README))

    # The quick start prints the last prompt (MockLLM answers with it): the fact came back.
    assert LISBON in capsys.readouterr().out
    facts = {memory.fact for memory in native.memories.iter({"user_id": user_id})}
    assert {"User lives in Lisbon", "User is allergic to peanuts"} <= facts


def test_the_main_readme_block(readme_env: Any, native: contextiq.ContextIQ) -> None:
    readme = MAIN_README.read_text()
    assert MARKER in readme, f"{MAIN_README} has no {MARKER} (followed by the LlamaIndex python block)"
    match = re.match(r"\s*```python\n(.*?)```", readme.split(MARKER, 1)[1], re.DOTALL)
    assert match, f"no python block right after {MARKER}"
    user_id = f"readme-{uuid.uuid4().hex[:8]}"
    namespace = run(match.group(1), readme_env, user_id, str(MAIN_README))
    block, memory, chat = namespace["block"], namespace["memory"], namespace["chat"]

    async def conversation() -> str:
        # What Memory would flush after a long conversation, then a later turn.
        await block.aput([ChatMessage(role="user", content="I live in Lisbon."),
                          ChatMessage(role="assistant", content="Noted.")], session_id=memory.session_id)
        assert native.jobs.wait(block.last_job_id).status == "completed"
        return str(await chat.achat("Which city do I live in?"))

    assert LISBON in asyncio.run(conversation())            # MockLLM answers with its prompt
    [session] = list(native.sessions.iter(user_id=user_id))
    assert session.scope == block.scope and session.metadata == {"llamaindex_session_id": memory.session_id}
