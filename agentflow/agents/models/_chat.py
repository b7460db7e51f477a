"""The OpenAI chat-completions wire format, shared by the openai and litellm models.

Responses are read by attribute, so the same code reads the openai SDK's objects and
litellm's look-alikes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..messages import AssistantMessage, Message, ToolCall
from ..usage import Usage
from .base import Model, ModelRequest, ModelResponse, TextStream

__all__ = [
    "ChunkAccumulator",
    "Completion",
    "chat_kwargs",
    "chat_messages",
    "chat_response",
    "parse_completion",
    "read_stream",
]

Completion: TypeAlias = tuple[AssistantMessage, Usage, str | None, str]
"""(message, usage, finish reason, name of the model that answered)."""

_SETTINGS = ("temperature", "top_p", "max_tokens", "seed", "stop", "parallel_tool_calls")


def chat_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant":
            # Without tool calls the API requires a content: an empty answer is sent as "".
            content = m.content if m.content is not None or m.tool_calls else ""
            item: dict[str, Any] = {"role": "assistant", "content": content}
            if m.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in m.tool_calls
                ]
            out.append(item)
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def chat_kwargs(request: ModelRequest, *, structured_output: bool) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create`` (minus model and streaming)."""
    kwargs: dict[str, Any] = {"messages": chat_messages(request.messages)}
    if request.tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.output_schema is not None and structured_output:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": request.output_schema.name,
                "schema": request.output_schema.schema,
                "strict": False,
            },
        }
    settings = request.settings
    for key in _SETTINGS:
        if key in settings:
            kwargs[key] = settings[key]  # type: ignore[literal-required]
    if not request.tools:
        kwargs.pop("parallel_tool_calls", None)  # providers reject it without tools
    if "timeout" in settings:
        kwargs["timeout"] = settings["timeout"]
    if "extra_body" in settings:
        kwargs["extra_body"] = settings["extra_body"]
    return kwargs


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    return Usage(
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
    )


def parse_completion(completion: Any) -> Completion:
    """The :data:`Completion` of a non-streamed completion."""
    choice = completion.choices[0]
    raw = choice.message
    calls = [
        ToolCall(name=c.function.name, arguments=c.function.arguments or "{}", id=c.id or "")
        for c in (getattr(raw, "tool_calls", None) or [])
    ]
    message = AssistantMessage(content=getattr(raw, "content", None), tool_calls=calls)
    usage = _usage(getattr(completion, "usage", None))
    return message, usage, choice.finish_reason, str(getattr(completion, "model", "") or "")


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ChunkAccumulator:
    """Builds the final message from streamed chunks; :meth:`feed` returns the text delta."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str = ""

    def feed(self, chunk: Any) -> str:
        if getattr(chunk, "usage", None) is not None:
            self.usage = _usage(chunk.usage)
        self.model = str(getattr(chunk, "model", "") or self.model)
        delta_text = ""
        for choice in getattr(chunk, "choices", None) or []:
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                delta_text += delta.content
            for part in getattr(delta, "tool_calls", None) or []:
                index = part.index if part.index is not None else len(self.calls)
                call = self.calls.setdefault(index, _PartialCall())
                if part.id:
                    call.id = part.id
                function = part.function
                if function is not None:
                    if function.name:
                        call.name = function.name
                    if function.arguments:
                        call.arguments.append(function.arguments)
        if delta_text:
            self.text.append(delta_text)
        return delta_text

    def message(self) -> AssistantMessage:
        calls = [
            ToolCall(name=c.name, arguments="".join(c.arguments) or "{}", id=c.id)
            for _, c in sorted(self.calls.items())
        ]
        return AssistantMessage(content="".join(self.text) or None, tool_calls=calls)


async def read_stream(chunks: AsyncIterable[Any], stream: TextStream) -> Completion:
    """The :data:`Completion` of streamed chunks, sending the text deltas to ``stream``."""
    acc = ChunkAccumulator()
    async for chunk in chunks:
        delta = acc.feed(chunk)
        if delta:
            await stream.send(delta)
    await stream.flush()
    return acc.message(), acc.usage, acc.finish_reason, acc.model


def chat_response(model: Model, completion: Completion, started: float) -> ModelResponse:
    """``completion`` as ``model``'s response to a request sent at ``started`` (monotonic)."""
    message, usage, finish, served_by = completion
    return ModelResponse(
        message=message,
        usage=usage,
        model_name=served_by or model.name,
        finish_reason=finish,
        cost_usd=model.cost(usage),
        latency_ms=round((time.monotonic() - started) * 1000, 3),
    )
