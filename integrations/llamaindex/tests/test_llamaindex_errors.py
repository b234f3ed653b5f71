"""What the adapter raises when the server refuses, and what it refuses itself."""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, List, Optional

import contextiq
import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.memory import Memory

from contextiq_llamaindex import ContextIQGenerationError, ContextIQMemoryBlock

FACT = [ChatMessage(role="user", content="I live in Lisbon.")]
QUESTION = [ChatMessage(role="user", content="Which city do I live in?")]


@pytest.fixture
def two_users() -> List[str]:
    return [f"u1-{uuid.uuid4().hex[:8]}", f"u2-{uuid.uuid4().hex[:8]}"]


async def test_a_key_of_another_user_is_refused_on_write(
        server: Any, make_block: Callable[..., ContextIQMemoryBlock], two_users: List[str],
        sessions_of: Callable[[str], Dict[Optional[str], contextiq.Session]]) -> None:
    u1, u2 = two_users
    key = server.scoped_key({"user_id": u1})
    # The key works for its own user ...
    own = make_block(user_id=u1, api_key=key, wait_for_generation=True)
    await own.aput(FACT)
    assert await own.aget(QUESTION) == "<fact>User lives in Lisbon</fact>"

    # ... and is refused for another, with the server's reason and the scope at fault.
    with pytest.raises(contextiq.PermissionDeniedError) as raised:
        await make_block(user_id=u2, api_key=key).aput(FACT)
    error = raised.value
    assert (error.status, error.code) == (403, "forbidden")
    assert "user_id" in error.detail
    assert f"for scope {{'user_id': '{u2}'}}" in "\n".join(getattr(error, "__notes__", []))
    assert sessions_of(u2) == {}


async def test_a_key_of_another_user_reads_nothing(
        server: Any, make_block: Callable[..., ContextIQMemoryBlock], two_users: List[str]) -> None:
    u1, u2 = two_users
    await make_block(user_id=u2, wait_for_generation=True).aput(FACT)
    # The server's rule (SECURITY.md): a search of a scope out of the key's reach is empty, not a 403.
    key = server.scoped_key({"user_id": u1})
    assert await make_block(user_id=u2, api_key=key).aget(QUESTION) == ""
    assert await make_block(user_id=u2).aget(QUESTION) == "<fact>User lives in Lisbon</fact>"


async def test_the_refusal_reaches_the_chat_engine(
        server: Any, make_block: Callable[..., ContextIQMemoryBlock], two_users: List[str]) -> None:
    u1, u2 = two_users
    block = make_block(user_id=u2, api_key=server.scoped_key({"user_id": u1}))
    memory = Memory.from_defaults(session_id="chat-1", token_limit=50, chat_history_token_ratio=0.5,
                                  token_flush_size=10, memory_blocks=[block])
    chat = SimpleChatEngine.from_defaults(llm=MockLLM(max_tokens=5), memory=memory)
    with pytest.raises(contextiq.PermissionDeniedError):
        for text in ("I live in Lisbon and I am allergic to peanuts.", "Can you recommend a good book about Portugal?",
                     "Which city do I live in, and what should I avoid eating?"):
            await chat.achat(text)                          # the flush of an early turn raises


async def test_a_wrong_key_is_refused(server: Any, make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    block = make_block(user_id=user, api_key="ck_not-a-key")
    with pytest.raises(contextiq.AuthenticationError) as raised:
        await block.aget(QUESTION)
    assert raised.value.status == 401
    with pytest.raises(contextiq.AuthenticationError):
        await block.aput(FACT)


async def test_an_invalid_generation_config_is_refused(
        make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    # No LLM provider on the server under test: the llm extractor is a 422 on `config.extractor`.
    block = make_block(user_id=user, generation_config={"extractor": "llm"})
    with pytest.raises(contextiq.ValidationError) as raised:
        await block.aput(FACT)
    assert (raised.value.code, raised.value.field) == ("validation_failed", "config.extractor")


async def test_a_failed_job_raises_when_waited_for() -> None:
    # A job that fails for good cannot be provoked on the real server; its answers are replayed.
    now = "2026-01-01T00:00:00Z"
    job = {"id": "j1", "status": "pending", "source_type": "session", "scope": {"user_id": "u1"},
           "created_at": now, "updated_at": now}

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/sessions":
            return httpx.Response(201, json={"id": "s1", "user_id": "u1", "scope": {"user_id": "u1"}, "state": {},
                                             "metadata": {}, "created_at": now, "updated_at": now, "event_count": 0})
        if path == "/api/v1/sessions/s1/events":
            events = json.loads(request.content)["events"]
            return httpx.Response(201, json={"events": [
                {"id": f"e{i}", "session_id": "s1", "seq": i, "timestamp": now, **event}
                for i, event in enumerate(events, 1)]})
        if path == "/api/v1/memories/generate":
            return httpx.Response(202, json=job)
        if path == "/api/v1/jobs/j1":
            return httpx.Response(200, json={**job, "status": "failed", "error": "the extractor gave up"})
        return httpx.Response(404, json={"status": 404, "code": "not_found", "title": "Not Found", "detail": path})

    async with contextiq.AsyncContextIQ(base_url="http://contextiq.test", api_key="ck_test",
                                        transport=httpx.MockTransport(answer)) as client:
        block = ContextIQMemoryBlock(user_id="u1", client=client, wait_for_generation=True)
        with pytest.raises(ContextIQGenerationError, match="the extractor gave up") as raised:
            await block.aput(FACT)
        assert raised.value.job.id == "j1" and block.last_job_id == "j1"
        # Without waiting, the job is only queued: no error.
        await ContextIQMemoryBlock(user_id="u1", client=client).aput(FACT)
