"""The model interface: one request in, one assistant message (with usage) out.

A model is anything with ``name``, ``context_window`` and ``request``. Requests and
responses are plain dataclasses; the agent journals each response (``ModelResponse``) as the
result of an ``llm`` step, so a replay never calls the model again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from ..messages import AssistantMessage, Message
from ..pricing import ModelPrice
from ..usage import Usage

__all__ = [
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OutputSchema",
    "TextStream",
    "ToolDefinition",
]


class ModelSettings(TypedDict, total=False):
    """Sampling and transport settings passed to the provider (unset keys are not sent)."""

    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stop: list[str]
    parallel_tool_calls: bool
    timeout: float
    extra_body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """What the model is told about a tool: its name, description and JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """The JSON schema a structured final answer must match."""

    name: str
    schema: dict[str, Any]


@dataclass(slots=True)
class ModelRequest:
    """One request to a model. ``turn`` counts the agent run's requests from 0."""

    messages: list[Message]
    tools: list[ToolDefinition] = field(default_factory=list)
    output_schema: OutputSchema | None = None
    settings: ModelSettings = field(default_factory=lambda: ModelSettings())
    agent: str = ""
    turn: int = 0


@dataclass(slots=True)
class ModelResponse:
    """A model's answer, as journaled: the message, usage, cost (when priced) and latency."""

    message: AssistantMessage
    usage: Usage = field(default_factory=Usage)
    model_name: str = ""
    finish_reason: str | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None


class TextStream(Protocol):
    """Where a streaming model sends its text deltas (the agent batches them into
    ``ctx.publish`` writes)."""

    async def send(self, delta: str) -> None: ...

    async def flush(self) -> None: ...


class Model(ABC):
    """Base class of models. Subclasses implement :meth:`request`.

    ``context_window`` (tokens) lets the agent trim the history to fit; ``None`` means unknown
    (no trimming). ``price`` gives the cost recorded with each call.
    """

    context_window: int | None = None
    price: ModelPrice | None = None

    @property
    @abstractmethod
    def name(self) -> str:
        """The model name recorded with every call (e.g. ``gpt-4o-mini``)."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook, most models need nothing
        """Load what the model needs before its first request (heavy imports, in a thread)."""

    @abstractmethod
    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        """Send ``request``; stream text deltas to ``stream`` when one is given.

        Raises:
            ModelError: classified provider errors (rate limit, timeout, bad request...).
        """

    def cost(self, usage: Usage) -> float | None:
        return None if self.price is None else self.price.cost(usage)
