"""Token usage and cost of model requests, per request and per agent run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunUsage", "Usage"]


@dataclass(slots=True)
class Usage:
    """Tokens of one model request, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class RunUsage:
    """What an agent run used so far: requests, tool calls, tokens and cost.

    ``cost_usd`` sums the requests whose price is known; ``unpriced_requests`` counts the
    others (a model without a price, e.g. a local server), which cost budgets treat as free.
    """

    requests: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_request(self, usage: Usage, cost_usd: float | None) -> None:
        self.requests += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if cost_usd is None:
            self.unpriced_requests += 1
        else:
            self.cost_usd += cost_usd

    def to_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "unpriced_requests": self.unpriced_requests,
        }
