"""The block inside the real llama-index-core: Memory's flushes, a chat engine's and an agent's prompts."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import contextiq
import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockFunctionCallingLLM, MockLLM
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall
from llama_index.core.memory import Memory
from llama_index.core.storage.chat_store.sql import MessageStatus
from llama_index.core.utils import get_tokenizer

from contextiq_llamaindex import ContextIQMemoryBlock

SessionsOf = Callable[[str], Dict[Optional[str], contextiq.Session]]  # the conftest fixture's type
LISBON = "<fact>User lives in Lisbon</fact>"
PEANUTS = "<fact>User is allergic to peanuts</fact>"
# A conversation of about 45 tokens: over the 25 of short-term memory below.
CONVERSATION = [
    ChatMessage(role="user", content="I live in Lisbon and I am allergic to peanuts."),
    ChatMessage(role="assistant", content="Good to know, thank you for telling me."),
    ChatMessage(role="user", content="Can you recommend a good book about the history of Portugal?"),
    ChatMessage(role="assistant", content="Try a history of the Portuguese empire."),
]


def small_memory(session_id: str, block: ContextIQMemoryBlock) -> Memory:
    # 50 tokens in all, half for the chat history, flushed 10 tokens (a turn) at a time.
    return Memory.from_defaults(session_id=session_id, token_limit=50, chat_history_token_ratio=0.5,
                                token_flush_size=10, memory_blocks=[block])


def texts(messages: Sequence[ChatMessage]) -> str:
    return "\n".join(message.content or "" for message in messages)


async def test_flushed_messages_come_back_in_the_system_message(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    memory = small_memory("chat-1", make_block(user_id=user, wait_for_generation=True))
    await memory.aput_messages(CONVERSATION)
    await memory.aput(ChatMessage(role="user", content="Which city do I live in?"))

    # Memory flushed the first turn out of short-term memory into the block: ContextIQ holds it.
    flushed = contents(sessions_of(user)["chat-1"].id)
    assert flushed[:2] == [("user", "user", CONVERSATION[0].content),
                           ("assistant", "assistant", CONVERSATION[1].content)]
    history = await memory.aget()
    assert "I live in Lisbon" not in texts(history[1:])     # gone from the short-term history ...
    system = history[0]
    assert system.role == MessageRole.SYSTEM                # ... and back, as memories, in the system message
    assert f"<ContextIQMemories>\n{LISBON}\n{PEANUTS}\n</ContextIQMemories>" in texts([system])
    assert history[-1].content == "Which city do I live in?"


async def test_a_block_that_refuses_flushes_records_nothing(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf) -> None:
    memory = small_memory("chat-1", make_block(user_id=user, accept_short_term_memory=False))
    await memory.aput_messages(CONVERSATION)
    assert len(await memory.aget_all(status=MessageStatus.ARCHIVED)) >= 2      # Memory did flush
    assert sessions_of(user) == {}


async def test_a_chat_engine_turn_prompts_with_the_remembered_fact(
        make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    # An earlier conversation, in another LlamaIndex session, flushed into ContextIQ.
    earlier = small_memory("chat-1", make_block(user_id=user, wait_for_generation=True))
    await earlier.aput_messages(CONVERSATION)

    llm = MockLLMWithChatMemoryOfLastCall(max_tokens=None)
    memory = Memory.from_defaults(session_id="chat-2", memory_blocks=[make_block(user_id=user)])
    chat = SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt="You are a travel agent.")
    reply = await chat.achat("Which city do I live in?")

    prompt = llm.last_chat_messages
    assert prompt is not None
    assert [m.role for m in prompt] == [MessageRole.SYSTEM, MessageRole.SYSTEM, MessageRole.USER]
    assert prompt[0].content == "You are a travel agent."
    assert LISBON in texts(prompt[1:2]) and "I live in Lisbon" not in texts(prompt)
    assert LISBON in str(reply)                            # MockLLM answers with its prompt


def test_the_sync_chat_engine(make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    # chat() runs each memory call on an event loop of its own (llama_index's asyncio_run).
    memory = small_memory("chat-1", make_block(user_id=user, wait_for_generation=True))
    chat = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    chat.chat("I live in Lisbon and I am allergic to peanuts.")
    chat.chat("Please suggest a restaurant for tonight, somewhere with a terrace.")
    reply = str(chat.chat("Which city do I live in?"))

    assert f"{LISBON}\n{PEANUTS}" in reply and "I live in Lisbon" not in reply
    assert LISBON in texts(memory.get(input="Where do I live?"))


# llama_index's workflows inspect pydantic models through attributes pydantic deprecates: their noise.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")
async def test_an_agent_run_prompts_with_the_remembered_fact(
        make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    await make_block(user_id=user, wait_for_generation=True).aput(CONVERSATION[:2])

    prompts: List[List[ChatMessage]] = []

    def answer(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        prompts.append(list(messages))
        return ChatMessage(role="assistant", content="You live in Lisbon.")

    agent = FunctionAgent(llm=MockFunctionCallingLLM(response_generator=answer), tools=[], system_prompt="Be brief.")
    memory = Memory.from_defaults(session_id="chat-2", memory_blocks=[make_block(user_id=user)])
    assert str(await agent.run(user_msg="Which city do I live in?", memory=memory)) == "You live in Lisbon."

    assert len(prompts) == 1
    memory_message = next(m for m in prompts[0] if m.role == MessageRole.SYSTEM and "<memory>" in (m.content or ""))
    assert LISBON in texts([memory_message])
    assert prompts[0][-1].content == "Which city do I live in?"


async def test_saving_a_short_conversation_at_its_end(
        make_block: Callable[..., ContextIQMemoryBlock], user: str,
        sessions_of: SessionsOf, contents: Callable[[str], List[Any]]) -> None:
    # The README's recipe for a conversation that never overflowed short-term memory.
    block = make_block(user_id=user, wait_for_generation=True)
    memory = Memory.from_defaults(session_id="chat-1", memory_blocks=[block])
    await memory.aput_messages(CONVERSATION[:2])
    assert sessions_of(user) == {}                          # nothing flushed

    await block.aput(await memory.aget_all(status=MessageStatus.ACTIVE), session_id=memory.session_id)

    assert len(contents(sessions_of(user)["chat-1"].id)) == 2
    assert LISBON in (await block.aget([ChatMessage(role="user", content="Where do I live?")])).splitlines()


async def test_memory_truncates_a_block_with_a_priority(
        make_block: Callable[..., ContextIQMemoryBlock], user: str) -> None:
    await make_block(user_id=user, wait_for_generation=True).aput(CONVERSATION[:1])
    block = make_block(user_id=user, priority=1)
    ask = ChatMessage(role="user", content="Which city do I live in?")
    assert (await block.aget([ask])).splitlines() == [LISBON, PEANUTS]

    # Room for the question and the best fact only.
    tokens = get_tokenizer()
    memory = Memory.from_defaults(session_id="chat-1", token_limit=len(tokens(texts([ask]))) + len(tokens(LISBON)) + 1,
                                  memory_blocks=[block])
    await memory.aput(ask)
    history = await memory.aget()
    assert LISBON in texts(history[:1]) and PEANUTS not in texts(history[:1])
