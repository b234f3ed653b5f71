"""Helpers of the openai-agents adapter's tests: a scripted model, canned items.

(Named for this package alone: the integrations suite puts every package's tests directory on
`sys.path`, so a generic name such as `support` would collide with another package's.)
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Union

from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

_counter = 0


def _next_id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}_{_counter}"


def text_output(text: str) -> ResponseOutputMessage:
    """An assistant message the model 'answers'."""
    return ResponseOutputMessage(
        id=_next_id("msg"), type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])])


def tool_call_output(name: str, arguments: str, call_id: Optional[str] = None) -> ResponseFunctionToolCall:
    """A function call the model 'makes'."""
    return ResponseFunctionToolCall(id=_next_id("fc"), type="function_call", name=name, arguments=arguments,
                                    call_id=call_id or _next_id("call"), status="completed")


class StubModel(Model):
    """A `Model` that answers with canned outputs, turn after turn, and records its inputs
    (the way openai-agents' own tests use FakeModel)."""

    def __init__(self, outputs: Sequence[List[TResponseOutputItem]] = ()) -> None:
        self.outputs: List[List[TResponseOutputItem]] = [list(turn) for turn in outputs]
        #: The input items of every call, in order (deep copies: the runner reuses its lists).
        self.inputs: List[List[Dict[str, Any]]] = []

    def queue(self, *turn: TResponseOutputItem) -> None:
        self.outputs.append(list(turn))

    def _record(self, input: Union[str, List[TResponseInputItem]]) -> List[TResponseOutputItem]:
        if isinstance(input, str):
            self.inputs.append([{"role": "user", "content": input}])
        else:
            self.inputs.append([_plain(item) for item in input])
        if not self.outputs:
            raise AssertionError("the model was called more often than the test scripted")
        return self.outputs.pop(0)

    async def get_response(
        self,
        system_instructions: Optional[str],
        input: Union[str, List[TResponseInputItem]],
        model_settings: ModelSettings,
        tools: List[Tool],
        output_schema: Optional[AgentOutputSchemaBase],
        handoffs: List[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: Optional[str],
        conversation_id: Optional[str],
        prompt: Any,
    ) -> ModelResponse:
        output = self._record(input)
        return ModelResponse(output=output, usage=Usage(), response_id=_next_id("resp"))

    async def stream_response(  # type: ignore[override]
        self,
        system_instructions: Optional[str],
        input: Union[str, List[TResponseInputItem]],
        model_settings: ModelSettings,
        tools: List[Tool],
        output_schema: Optional[AgentOutputSchemaBase],
        handoffs: List[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: Optional[str] = None,
        conversation_id: Optional[str] = None,
        prompt: Any = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        output = self._record(input)
        response = Response(id=_next_id("resp"), created_at=0, model="stub", object="response", output=output,
                            tool_choice="none", tools=[], top_p=None, parallel_tool_calls=False)
        yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)


def _plain(item: Any) -> Dict[str, Any]:
    if hasattr(item, "model_dump"):
        return item.model_dump(exclude_unset=True)
    return copy.deepcopy(dict(item))


def text_of(item: Dict[str, Any]) -> Optional[str]:
    """The text of a message item (string content or output/input text parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return None


def shape(item: Dict[str, Any]) -> tuple:
    """What identifies an item in a conversation, whatever ids and statuses came with it."""
    kind = item.get("type") or "message"
    if kind == "message":
        return ("message", item.get("role"), text_of(item))
    if kind == "function_call":
        return ("function_call", item.get("name"), item.get("arguments"), item.get("call_id"))
    if kind == "function_call_output":
        return ("function_call_output", item.get("call_id"), str(item.get("output")))
    return (kind,)


def user_message(text: str) -> Dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, Any]:
    return {"type": "message", "role": "assistant", "id": _next_id("msg"), "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def function_call(name: str, arguments: str, call_id: str) -> Dict[str, Any]:
    return {"type": "function_call", "name": name, "arguments": arguments, "call_id": call_id}


def function_output(call_id: str, output: str) -> Dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def mapped_sessions(client: Any, user_id: str, session_id: str, agent_id: Optional[str] = None) -> List[Any]:
    """The ContextIQ sessions (native `contextiq.Session`s) mapped to an agents session id."""
    return [s for s in client.sessions.iter(user_id=user_id, agent_id=agent_id)
            if s.metadata.get("openai_agents", {}).get("session_id") == session_id
            and s.agent_id == agent_id]


def unique(prefix: str) -> str:
    """An id of this test alone (the tests share one server)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
