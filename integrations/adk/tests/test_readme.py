"""The README's ADK snippet runs as written against the real server.

README.md marks the snippet with `<!-- README test: python adk -->`; this test runs it with
the server's address for `http://127.0.0.1:8000` and the admin key in `CONTEXTIQ_API_KEY`,
then uses the runner it builds: a session made through it is the native API's session in
the engine the snippet names.
"""

from __future__ import annotations

import asyncio
import re

from support import REPO_ROOT

MARKER = "<!-- README test: python adk -->"


def readme_snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    after = readme.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.DOTALL)
    assert match, f"no python block after {MARKER}"
    return match.group(1)


def test_the_readme_snippet_builds_a_runner_on_contextiq(server, monkeypatch):
    snippet = readme_snippet()
    assert "http://127.0.0.1:8000" in snippet
    monkeypatch.setenv("CONTEXTIQ_API_KEY", server.admin_key)
    namespace: dict = {}
    exec(compile(snippet.replace("http://127.0.0.1:8000", server.url), "README.md", "exec"), namespace)
    runner = namespace["runner"]

    async def create():
        return await runner.session_service.create_session(app_name="my_app", user_id="readme-user",
                                                           state={"step": 1})

    session = asyncio.run(create())
    listed = server.native("GET", "/sessions?user_id=readme-user", engine="my-agent").json()["sessions"]
    assert [item["state"] for item in listed] == [{"step": 1}]
    assert listed[0]["id"] == session.id or listed[0]["metadata"].get("agent_engine", {}).get("session_id") == session.id
    # Not in the default engine.
    assert server.native("GET", "/sessions?user_id=readme-user").json()["sessions"] == []
