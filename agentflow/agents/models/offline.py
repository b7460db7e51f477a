"""Offline models for tests and examples: no network, no key, deterministic.

* :class:`ScriptedModel` plays back a list of replies: the agent run's request number ``i``
  (``ModelRequest.turn``) gets ``replies[i]``.
* :class:`FunctionModel` computes each reply from the request with your function.

A reply is a string (the final text), a :class:`ToolCall` (see :func:`tool_call`), a list of
tool calls (run concurrently), an ``AssistantMessage`` or a whole ``ModelResponse``. Token
usage is estimated from the text (about four characters per token) unless a
``ModelResponse`` gives it, so budgets can be tested offline too.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from ...errors import NonRetryableError
from ..messages import AssistantMessage, Message, ToolCall
from ..pricing import ModelPrice
from ..usage import Usage
from .base import Model, ModelRequest, ModelResponse, TextStream
from .errors import ModelError

__all__ = ["FunctionModel", "Reply", "ScriptExhaustedError", "ScriptedModel", "tool_call"]

Reply: TypeAlias = str | ToolCall | list[ToolCall] | AssistantMessage | ModelResponse


def tool_call(name: str, /, call_id: str = "", **arguments: Any) -> ToolCall:
    """A tool call reply: ``tool_call("lookup", query="refund policy")``."""
    return ToolCall(name=name, arguments=json.dumps(arguments), id=call_id)


class ScriptExhaustedError(ModelError, NonRetryableError):
    """A scripted model was asked for more replies than it has."""

    code = "script_exhausted"


def _estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def _message_text(m: Message) -> str:
    if m.role == "assistant":
        return (m.content or "") + "".join(c.name + c.arguments for c in m.tool_calls)
    return m.content


class _OfflineModel(Model):
    def __init__(self, name: str, context_window: int | None, price: ModelPrice | None) -> None:
        self._name = name
        self.context_window = context_window
        self.price = price
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def _respond(
        self, reply: Reply, request: ModelRequest, stream: TextStream | None, started: float
    ) -> ModelResponse:
        if isinstance(reply, ModelResponse):
            response = reply
        else:
            if isinstance(reply, str):
                message = AssistantMessage(content=reply)
            elif isinstance(reply, ToolCall):
                message = AssistantMessage(tool_calls=[reply])
            elif isinstance(reply, list):
                message = AssistantMessage(tool_calls=list(reply))
            else:
                message = reply
            prompt = sum(_estimate(_message_text(m)) + 3 for m in request.messages)
            usage = Usage(input_tokens=prompt, output_tokens=_estimate(_message_text(message)))
            response = ModelResponse(message=message, usage=usage, model_name=self.name)
        message = response.message
        # Tool call ids are what pairs results with calls: give scripted calls stable ones.
        message.tool_calls = [
            c if c.id else ToolCall(c.name, c.arguments, f"call_{request.turn}_{i}")
            for i, c in enumerate(message.tool_calls)
        ]
        if stream is not None and message.content:
            for piece in re.findall(r"\S*\s*", message.content):
                if piece:
                    await stream.send(piece)
            await stream.flush()
        if response.cost_usd is None:
            response.cost_usd = self.cost(response.usage)
        if response.latency_ms is None:
            response.latency_ms = round((time.monotonic() - started) * 1000, 3)
        response.model_name = response.model_name or self.name
        return response


class ScriptedModel(_OfflineModel):
    """Plays back ``replies``: request ``i`` of an agent run gets ``replies[i]``.

    Stateless between calls (the position comes from the request), so a replayed or
    recovered run, in any process, gets the same replies. ``requests`` records what was
    actually sent, in this process.
    """

    def __init__(
        self,
        replies: Sequence[Reply],
        *,
        name: str = "scripted",
        context_window: int | None = None,
        price: ModelPrice | None = None,
    ) -> None:
        super().__init__(name, context_window, price)
        self.replies = list(replies)

    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        started = time.monotonic()
        self.requests.append(request)
        if request.turn >= len(self.replies):
            raise ScriptExhaustedError(
                f"the script has {len(self.replies)} replies but was sent "
                f"request #{request.turn + 1}",
                model=self.name,
            )
        return await self._respond(_copy(self.replies[request.turn]), request, stream, started)


class FunctionModel(_OfflineModel):
    """Computes each reply with ``fn(messages, request)`` (sync or async)."""

    def __init__(
        self,
        fn: Callable[[list[Message], ModelRequest], Reply | Awaitable[Reply]],
        *,
        name: str = "function",
        context_window: int | None = None,
        price: ModelPrice | None = None,
    ) -> None:
        super().__init__(name, context_window, price)
        self.fn = fn

    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        started = time.monotonic()
        self.requests.append(request)
        reply = self.fn(request.messages, request)
        if inspect.isawaitable(reply):
            reply = await reply
        return await self._respond(reply, request, stream, started)


def _copy(reply: Reply) -> Reply:
    # Replies are filled in (ids, cost) per request: never mutate the script itself.
    if isinstance(reply, ModelResponse):
        return ModelResponse(
            message=AssistantMessage(reply.message.content, list(reply.message.tool_calls)),
            usage=Usage(reply.usage.input_tokens, reply.usage.output_tokens),
            model_name=reply.model_name,
            finish_reason=reply.finish_reason,
            cost_usd=reply.cost_usd,
            latency_ms=reply.latency_ms,
        )
    if isinstance(reply, AssistantMessage):
        return AssistantMessage(reply.content, list(reply.tool_calls))
    if isinstance(reply, list):
        return list(reply)
    return reply
