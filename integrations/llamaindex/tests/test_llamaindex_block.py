"""ContextIQMemoryBlock on its own: what aput records, what aget finds, in which scope."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, List, Optional

import contextiq
import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.core.memory.memory import BaseMemoryBlock
from llama_index.core.utils import get_tokenizer

from contextiq_llamaindex import ContextIQMemoryBlock

SessionsOf = Callable[[str], Dict[Optional[str], contextiq.Session]]  # the conftest fixture's type
LISBON = "<fact>User lives in Lisbon</fact>"
PEANUTS = "<fact>User is allergic to peanuts</fact>"


def said(role: str, text: str) -> ChatMessage:
    return ChatMessage(role=role, content=text)


def question(text: str = "Which city do I live in?") -> List[ChatMessage]:
    return [said("user", text)]


def job_of(block: ContextIQMemoryBlock) -> str:
    assert block.last_job_id is not None, "no generation job queued"
    return block.last_job_id


async def test_aput_then_aget_recalls_the_fact(make_block: Callable[..., ContextIQMemoryBlock], user: str,
                                               native: contextiq.ContextIQ) -> None:
    block = make_block(user_id=user, wait_for_generation=True)
    assert await block.aget(question()) == ""          # nothing remembered yet

    await block.aput([said("user", "I live in Lisbon and I am allergic to peanuts."), said("assistant", "Noted.")],
                     session_id="chat-1")

    job = native.jobs.get(job_of(block))
    assert job.status == "completed" and job.counts.added == 2
    text = await block.aget(question())
    assert text.splitlines()[0] == LISBON               # the best match first
    assert set(text.splitlines()) == {LISBON, PEANUTS}


async def test_aput_queues_the_job_without_waiting_by_default(make_block: Callable[..., ContextIQMemoryBlock],
                                                              user: str, native: contextiq.ContextIQ) -> None:
    block = make_block(user_id=user)
    assert block.last_job_id is None
    await block.aput([said("user", "I live in Lisbon.")])

    job = native.jobs.wait(job_of(block))
    assert job.status == "completed" and job.source_type == "session" and job.scope == {"user_id": user}
    assert LISBON in (await block.aget(question())).splitlines()


async def test_aget_queries_with_the_latest_user_message(make_block: Callable[..., ContextIQMemoryBlock],
                                                         user: str) -> None:
    block = make_block(user_id=user, wait_for_generation=True, top_k=1)
    await block.aput([said("user", "I live in Lisbon. I am allergic to peanuts.")])

    history = [said("user", "Which city do I live in?"), said("assistant", "Let me check."),
               said("user", "What am I allergic to?"), said("assistant", "One moment.")]
    assert await block.aget(history) == PEANUTS         # the last user message, not the first
    assert await block.aget(history[:2]) == LISBON
    # No user message to search for: an empty block, which Memory leaves out of the prompt.
    assert await block.aget([said("assistant", "Hello!")]) == ""
    assert await block.aget([]) == "" and await block.aget(None) == ""


async def test_top_k_limits_the_facts(make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    writer = make_block(user_id=user, wait_for_generation=True)
    await writer.aput([said("user", "I live in Lisbon. I am allergic to peanuts. I am vegetarian.")])

    assert len((await make_block(user_id=user).aget(question())).splitlines()) == 3
    assert len((await make_block(user_id=user, top_k=2).aget(question())).splitlines()) == 2


async def test_users_and_agents_are_kept_apart(make_block: Callable[..., ContextIQMemoryBlock]) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    await make_block(user_id=alice, wait_for_generation=True).aput([said("user", "I live in Lisbon.")])
    await make_block(user_id=bob, wait_for_generation=True).aput([said("user", "I live in Tokyo.")])
    await make_block(user_id=alice, agent_id="travel", wait_for_generation=True).aput(
        [said("user", "I am allergic to peanuts.")])

    assert await make_block(user_id=alice).aget(question()) == LISBON
    assert await make_block(user_id=bob).aget(question()) == "<fact>User lives in Tokyo</fact>"
    # Scopes match exactly: the agent's memories of alice are not alice's, nor the reverse.
    assert await make_block(user_id=alice, agent_id="travel").aget(question()) == PEANUTS
    assert await make_block(user_id=bob, agent_id="travel").aget(question()) == ""


async def test_the_session_and_its_events_through_the_native_api(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    block = make_block(user_id=user, agent_id="travel-agent")
    await block.aput([
        said("system", "You are a travel agent."),
        said("user", "I live in Lisbon."),
        ChatMessage(role=MessageRole.CHATBOT, content="Noted."),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[ImageBlock(url="https://example.com/map.png")]),  # no text
        ChatMessage(role=MessageRole.TOOL, content='{"flights": 3}', additional_kwargs={"tool_call_id": "c1"}),
    ], session_id="chat-1")
    await block.aput([said("user", "Book me a flight."), said("assistant", "Done.")], session_id="chat-1")
    await block.aput([said("user", "Hello again.")], session_id="chat-2")

    sessions = sessions_of(user)
    assert set(sessions) == {"chat-1", "chat-2"}
    first = sessions["chat-1"]
    assert block.session_ids == {"chat-1": first.id, "chat-2": sessions["chat-2"].id}
    assert first.scope == {"user_id": user, "agent_id": "travel-agent"} and first.agent_id == "travel-agent"
    assert contents(first.id) == [
        ("system", "system", "You are a travel agent."),
        ("user", "user", "I live in Lisbon."),
        ("chatbot", "assistant", "Noted."),
        ("tool", "tool", '{"flights": 3}'),
        ("user", "user", "Book me a flight."),
        ("assistant", "assistant", "Done."),
    ]
    assert contents(sessions["chat-2"].id) == [("user", "user", "Hello again.")]


async def test_messages_without_session_id_share_one_session(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    block = make_block(user_id=user)
    await block.aput([said("user", "One.")])
    await block.aput([said("user", "Two.")])
    await block.aput([ChatMessage(role="user", blocks=[TextBlock(text="  ")])])   # nothing to record

    sessions = sessions_of(user)
    assert list(sessions) == [None]
    assert [content for _, _, content in contents(sessions[None].id)] == ["One.", "Two."]


async def test_large_batches_are_appended_in_order(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    block = make_block(user_id=user, max_events_per_append=2)
    await block.aput([said("user", f"Message {i}.") for i in range(5)], session_id="s")

    assert [content for _, _, content in contents(sessions_of(user)["s"].id)] == [f"Message {i}." for i in range(5)]


async def test_a_deleted_session_is_replaced(
        make_block: Callable[..., ContextIQMemoryBlock], user: str, native: contextiq.ContextIQ,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    block = make_block(user_id=user, wait_for_generation=True)
    await block.aput([said("user", "I live in Lisbon.")], session_id="chat-1")
    native.sessions.delete(block.session_ids["chat-1"])      # e.g. expired, or deleted by an operator

    await block.aput([said("user", "I am allergic to peanuts.")], session_id="chat-1")

    session = sessions_of(user)["chat-1"]
    assert contents(session.id) == [("user", "user", "I am allergic to peanuts.")]
    # The memories of the deleted session stay in the scope.
    assert set((await block.aget(question())).splitlines()) == {LISBON, PEANUTS}


async def test_engine_partitions_the_memories(make_block: Callable[..., ContextIQMemoryBlock], user: str,
                                              server: Any) -> None:
    engine = f"li-{uuid.uuid4().hex[:8]}"
    await make_block(user_id=user, engine=engine, wait_for_generation=True).aput([said("user", "I live in Lisbon.")])

    assert await make_block(user_id=user, engine=engine).aget(question()) == LISBON
    assert await make_block(user_id=user).aget(question()) == ""
    with server.client(engine=engine) as client:
        assert [s.user_id for s in client.sessions.iter(user_id=user)] == [user]


async def test_a_given_client_is_used_and_left_open(server: Any, user: str) -> None:
    engine = f"li-{uuid.uuid4().hex[:8]}"
    async with contextiq.AsyncContextIQ(base_url=server.url, api_key=server.admin_key, engine=engine) as client:
        # No base_url / api_key: they would be unusable defaults, so the given client must be the one used.
        block = ContextIQMemoryBlock(user_id=user, client=client, wait_for_generation=True)
        await block.aput([said("user", "I live in Lisbon.")])
        assert await block.aget(question()) == LISBON
        assert [s.user_id async for s in client.sessions.iter(user_id=user)] == [user]   # still open


async def test_truncation_drops_the_least_relevant_facts_first(make_block: Callable[..., ContextIQMemoryBlock]) -> None:
    block = make_block(user_id="nobody")
    content = "\n".join([LISBON, PEANUTS, "<fact>User is vegetarian</fact>"])
    tokens = get_tokenizer()

    assert await block.atruncate(content, 0) == content
    assert await block.atruncate(content, 1) == "\n".join([LISBON, PEANUTS])
    just_the_first = len(tokens(content)) - len(tokens(LISBON))
    assert await block.atruncate(content, just_the_first) == LISBON
    assert await block.atruncate(content, just_the_first + 1) is None


def test_configuration() -> None:
    block = ContextIQMemoryBlock(user_id="u1", agent_id="a1", api_key="ck_secret")
    assert isinstance(block, BaseMemoryBlock)
    # LlamaIndex's conventions: a fixed default name, priority 0 (never truncated), takes flushes.
    assert (block.name, block.priority, block.accept_short_term_memory) == ("ContextIQMemories", 0, True)
    assert block.scope == {"user_id": "u1", "agent_id": "a1"}
    assert ContextIQMemoryBlock(user_id="u1").scope == {"user_id": "u1"}
    assert "ck_secret" not in repr(block) and "api_key" not in block.model_dump()
    for bad in ({"user_id": ""}, {"user_id": "u1", "top_k": 0}, {"user_id": "u1", "top_k": 101}, {}):
        with pytest.raises(ValidationError):
            ContextIQMemoryBlock(**bad)
