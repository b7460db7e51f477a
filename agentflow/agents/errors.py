"""Errors the agent loop raises. ``AgentError`` is the root; every one is also an
``AgentflowError`` with a stable ``code``.

Most are non-retryable: a retried run replays the same journaled model answers and would fail
the same way, so retrying the workflow cannot help.
"""

from __future__ import annotations

from typing import Any

from ..errors import AgentflowError, NonRetryableError

__all__ = [
    "AgentError",
    "ApprovalEditError",
    "BudgetExceededError",
    "ContextWindowExceededError",
    "MaxTurnsExceededError",
    "ModelRetry",
    "OutputValidationError",
    "ToolDefinitionError",
    "ToolResultError",
]


class AgentError(AgentflowError):
    """Root of the errors raised by agents, tools and models."""

    code = "agent_error"

    def __init__(self, message: str, *, agent: str | None = None) -> None:
        super().__init__(message)
        self.agent = agent


class MaxTurnsExceededError(AgentError, NonRetryableError):
    """The agent used ``max_turns`` model requests without producing a final answer."""

    code = "max_turns_exceeded"

    def __init__(self, agent: str, max_turns: int) -> None:
        super().__init__(
            f"agent {agent!r} made {max_turns} model request(s) (max_turns={max_turns}) "
            "without a final answer; raise max_turns, or make the instructions or tools "
            "lead to an answer sooner",
            agent=agent,
        )
        self.max_turns = max_turns


class OutputValidationError(AgentError, NonRetryableError):
    """The model's final answer did not validate against ``output_type``, even after retries."""

    code = "invalid_output"

    def __init__(self, agent: str, attempts: int, errors: str) -> None:
        super().__init__(
            f"agent {agent!r} gave no valid output in {attempts} attempt(s); last problem: "
            f"{errors}",
            agent=agent,
        )
        self.attempts = attempts
        self.errors = errors


class BudgetExceededError(AgentError, NonRetryableError):
    """A token or cost budget was used up (and not extended by an approval)."""

    code = "budget_exceeded"

    def __init__(self, agent: str, reason: str, usage: dict[str, Any]) -> None:
        super().__init__(f"agent {agent!r} stopped: {reason}", agent=agent)
        self.reason = reason
        self.usage = usage


class ContextWindowExceededError(AgentError, NonRetryableError):
    """The prompt does not fit the model's context window even after trimming."""

    code = "context_window_exceeded"

    def __init__(self, agent: str, tokens: int, limit: int) -> None:
        super().__init__(
            f"agent {agent!r}: the prompt needs about {tokens} tokens after trimming, but only "
            f"{limit} fit the model's context window (minus the room kept for the answer); "
            "shorten the instructions or the latest input, or use a model with a larger window",
            agent=agent,
        )
        self.tokens = tokens
        self.limit = limit


class ApprovalEditError(AgentError, NonRetryableError):
    """An approver edited a tool call's arguments into something the tool does not accept."""

    code = "invalid_approval_edit"


class ToolDefinitionError(AgentError, TypeError):
    """A function cannot be used as a tool (e.g. ``*args``, or two tools with one name)."""

    code = "invalid_tool"


class ToolResultError(AgentError, NonRetryableError):
    """A tool returned a value that cannot be stored as JSON.

    Raised inside the tool's step after the tool ran, and not retried: running the tool
    again would repeat its side effects and fail the same way.
    """

    code = "invalid_tool_result"


class ModelRetry(Exception):
    """Raise in a tool to send ``message`` back to the model as an error it can act on.

    Not an agentflow error: the tool call is journaled as completed with an error result,
    and the model decides what to do next (fix its arguments, try another tool, give up).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
