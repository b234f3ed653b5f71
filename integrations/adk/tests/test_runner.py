"""A whole ADK `Runner` turn against the server: an agent with `load_memory` and
`PreloadMemoryTool` on a stub model (no network), sessions and memories in ContextIQ.

Turn one tells the agent facts; `add_session_to_memory` turns that session into memories;
turn two, in a new session, gets them back both ways: preloaded into the model's request and
through the model's `load_memory` call."""

from __future__ import annotations

import json
from typing import AsyncGenerator

import pytest
from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.load_memory_tool import load_memory_tool
from google.adk.tools.preload_memory_tool import PreloadMemoryTool
from google.genai import types

from contextiq_adk import ContextIQMemoryBankService, ContextIQSessionService
from support import Server, async_wait_for, unique

APP = "memory_app"


class StubModel(BaseLlm):
    """A model that answers by rules, and records every request it got.

    - After a `load_memory` response: answers with the facts it returned.
    - On a question: calls `load_memory` with the question as query.
    - Otherwise: "Noted."
    """

    model: str = "stub-model"
    requests: list = []

    async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        responses = [part.function_response for content in llm_request.contents for part in content.parts or []
                     if part.function_response and part.function_response.name == "load_memory"]
        if responses:
            # ADK hands the tool's result over as is: {"result": LoadMemoryResponse(...)}.
            payload = json.loads(json.dumps(responses[-1].response, default=lambda value: value.model_dump(mode="json")))
            facts = texts_in(payload)
            yield text_response("I remember: " + "; ".join(sorted(facts)) if facts else "I remember nothing.")
            return
        # The user's words: PreloadMemoryTool adds a user content of its own, the memories.
        said = [" ".join(part.text for part in content.parts or [] if part.text)
                for content in llm_request.contents if content.role == "user"]
        said = [text for text in said if "PAST_CONVERSATIONS" not in text]
        if said and said[-1].strip().endswith("?"):
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(
                function_call=types.FunctionCall(id=unique("call"), name="load_memory", args={"query": said[-1]}))]))
            return
        yield text_response("Noted.")


def texts_in(value) -> list[str]:
    """Every `text` field anywhere in a JSON value."""
    if isinstance(value, dict):
        return [text for key, item in value.items()
                for text in ([item] if key == "text" and isinstance(item, str) else texts_in(item))]
    if isinstance(value, list):
        return [text for item in value for text in texts_in(item)]
    return []


def text_response(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def user_says(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def run_turn(runner: Runner, user: str, session_id: str, text: str) -> list:
    return [event async for event in runner.run_async(user_id=user, session_id=session_id, new_message=user_says(text))]


def final_text(events: list) -> str:
    texts = [part.text for event in events if event.content for part in event.content.parts or [] if part.text]
    return texts[-1]


def request_text(request: LlmRequest) -> str:
    return json.dumps([content.model_dump(mode="json", exclude_none=True) for content in request.contents])


async def test_a_runner_remembers_across_sessions(server: Server):
    engine = unique("runner")
    sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    memory = ContextIQMemoryBankService(server.base_url, server.admin_key, engine)
    model = StubModel(requests=[])
    agent = LlmAgent(
        name="assistant",
        model=model,
        instruction="You are a helpful assistant.",
        tools=[load_memory_tool, PreloadMemoryTool()],
    )
    runner = Runner(agent=agent, app_name=APP, session_service=sessions, memory_service=memory)
    user = unique("user")

    # Turn one: facts.
    first = await sessions.create_session(app_name=APP, user_id=user)
    events = await run_turn(runner, user, first.id, "I live in Lisbon. I am allergic to peanuts.")
    assert final_text(events) == "Noted."

    stored = await sessions.get_session(app_name=APP, user_id=user, session_id=first.id)
    # The user's message, then what the runner yielded, ids kept.
    assert [event.id for event in stored.events][1:] == [event.id for event in events]
    assert stored.events[0].author == "user"
    assert stored.events[-1].content.parts[0].text == "Noted."

    await memory.add_session_to_memory(stored)
    scope = {"app_name": APP, "user_id": user}

    # ADK's ingestEvents call runs in the background and sends no trigger, which Google
    # defines as "force flushed immediately": the memories arrive once the job has run.
    def facts():
        return {memory["fact"] for memory in server.native_memories(scope, engine=engine)}

    async def remembered():
        return facts() == {"User lives in Lisbon", "User is allergic to peanuts"}

    await async_wait_for(remembered, timeout=30, interval=0.5, what="memories from add_session_to_memory")

    # Turn two, in a new session: a question.
    second = await sessions.create_session(app_name=APP, user_id=user)
    model.requests.clear()
    events = await run_turn(runner, user, second.id, "Where do I live?")
    answer = final_text(events)
    # ADK's search asks for Google's default top 3: both facts of this user.
    assert answer == "I remember: User is allergic to peanuts; User lives in Lisbon", answer

    # PreloadMemoryTool put the memories into the model's first request.
    assert "User lives in Lisbon" in request_text(model.requests[0])
    assert "PAST_CONVERSATIONS" in request_text(model.requests[0])

    # The call, the tool's answer and the reply are the session's events, ids kept.
    stored = await sessions.get_session(app_name=APP, user_id=user, session_id=second.id)
    calls = [part.function_call for event in stored.events for part in event.content.parts if part.function_call]
    responses = [part.function_response for event in stored.events for part in event.content.parts if part.function_response]
    assert [call.name for call in calls] == ["load_memory"]
    assert [response.name for response in responses] == ["load_memory"]
    assert calls[0].id == responses[0].id
    assert {event.id for event in events if not event.partial} <= {event.id for event in stored.events}

    # Memory search in the Runner's scope, straight from the service.
    found = await memory.search_memory(app_name=APP, user_id=user, query="peanuts")
    assert "User is allergic to peanuts" in [entry.content.parts[0].text for entry in found.memories]
    # Another app's scope sees nothing.
    assert (await memory.search_memory(app_name="other_app", user_id=user, query="peanuts")).memories == []


async def test_add_events_to_memory_with_force_flush(server: Server):
    engine = unique("flush")
    sessions = ContextIQSessionService(server.base_url, server.admin_key, engine)
    memory = ContextIQMemoryBankService(server.base_url, server.admin_key, engine)
    agent = LlmAgent(name="assistant", model=StubModel(requests=[]), tools=[load_memory_tool])
    runner = Runner(agent=agent, app_name=APP, session_service=sessions, memory_service=memory)
    user = unique("user")
    session = await sessions.create_session(app_name=APP, user_id=user)
    await run_turn(runner, user, session.id, "My favourite colour is green.")
    stored = await sessions.get_session(app_name=APP, user_id=user, session_id=session.id)

    await memory.add_events_to_memory(app_name=APP, user_id=user, events=stored.events,
                                      custom_metadata={"force_flush": True, "stream_id": session.id})

    async def remembered():
        found = await memory.search_memory(app_name=APP, user_id=user, query="colour")
        return [entry.content.parts[0].text for entry in found.memories]

    assert await async_wait_for(remembered, timeout=30, what="flushed memories") == ["User's favourite colour is green"]


async def test_add_memory_directly_and_with_consolidation(server: Server):
    from google.adk.memory.memory_entry import MemoryEntry

    engine = unique("direct")
    memory = ContextIQMemoryBankService(server.base_url, server.admin_key, engine)
    user = unique("user")

    def entry(text: str, **kwargs) -> MemoryEntry:
        return MemoryEntry(content=types.Content(role="user", parts=[types.Part(text=text)]), **kwargs)

    await memory.add_memory(app_name=APP, user_id=user, memories=[
        entry("User likes hiking", id=unique("hiking")), entry("User has a cat")],
        custom_metadata={"source": "import"})
    found = await memory.search_memory(app_name=APP, user_id=user, query="hiking")
    assert found.memories[0].content.parts[0].text == "User likes hiking"
    assert found.memories[0].custom_metadata == {"source": "import"}
    native = server.native_memories({"app_name": APP, "user_id": user}, engine=engine)
    assert {memory["fact"] for memory in native} == {"User likes hiking", "User has a cat"}
    assert all(memory["metadata"]["source"] == "import" for memory in native)

    # With consolidation: a generate call with direct memories (not awaited by ADK).
    await memory.add_memory(app_name=APP, user_id=user, memories=[entry("User has a cat"), entry("User owns a kayak")],
                            custom_metadata={"enable_consolidation": True})

    def facts():
        return sorted(memory["fact"] for memory in server.native_memories({"app_name": APP, "user_id": user}, engine=engine))

    async def consolidated():
        return "User owns a kayak" in facts()

    await async_wait_for(consolidated, timeout=30, what="the consolidated memories")
    assert facts() == ["User has a cat", "User likes hiking", "User owns a kayak"]


async def test_retrieve_profiles_through_adk(server: Server):
    from google.adk.memory.memory_entry import MemoryEntry

    engine = unique("profiles")
    memory = ContextIQMemoryBankService(server.base_url, server.admin_key, engine)
    user = unique("user")
    assert await memory.retrieve_profiles(app_name=APP, user_id=user) == []
    entries = [MemoryEntry(content=types.Content(role="user", parts=[types.Part(text=text)]))
               for text in ["User's name is Ada", "User works as a pilot", "User's favourite colour is teal"]]
    await memory.add_memory(app_name=APP, user_id=user, memories=entries)
    profiles = await memory.retrieve_profiles(app_name=APP, user_id=user)
    assert [profile.schema_id for profile in profiles] == ["contextiq-profile"]
    assert profiles[0].profile == {"name": "Ada", "occupation": "a pilot", "favourite colour": "teal"}
