"""The conversation: messages exchanged with a model, in the OpenAI chat shape.

Plain dataclasses at runtime; ``MESSAGES`` validates and serialises them (the journal keeps
model responses as JSON and turns them back into these classes on replay).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

__all__ = [
    "MESSAGES",
    "AssistantMessage",
    "Message",
    "SystemMessage",
    "ToolCall",
    "ToolMessage",
    "UserMessage",
]


@dataclass(slots=True)
class ToolCall:
    """A tool call requested by the model; ``arguments`` is the JSON text it sent."""

    name: str
    arguments: str = "{}"
    id: str = ""

    def parsed_arguments(self) -> Any:
        """The arguments as JSON data, or ``None`` when they are not valid JSON."""
        try:
            return json.loads(self.arguments or "{}")
        except ValueError:
            return None


@dataclass(slots=True)
class SystemMessage:
    content: str
    role: Literal["system"] = "system"


@dataclass(slots=True)
class UserMessage:
    content: str
    role: Literal["user"] = "user"


@dataclass(slots=True)
class AssistantMessage:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    role: Literal["assistant"] = "assistant"


@dataclass(slots=True)
class ToolMessage:
    """The result (or error) of one tool call, sent back to the model."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    role: Literal["tool"] = "tool"


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]

MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[Message])
