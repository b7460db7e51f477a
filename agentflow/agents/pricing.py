"""Model prices, for the cost recorded with each model call and for cost budgets.

The table holds OpenAI list prices (USD per million tokens) at the time of writing; pass
``price=ModelPrice(...)`` to a model to use your own. litellm models use litellm's price
table. A model with no known price records ``cost_usd=None`` (and a budget with
``max_cost_usd`` stops at it: see :mod:`agentflow.agents.budgets`).

A price is looked up by the exact model name, or by a known name followed by a date or
version suffix only (``gpt-4o-mini-2024-07-18``, ``o3-2025-04-16``, ``...-latest``): a
variant such as ``o3-pro`` or ``gpt-5-codex`` is priced differently from its base model, so
it has no known price rather than the base's. Context windows, which variants share far
more often, are looked up by the longest known prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from .usage import Usage

__all__ = ["KNOWN_CONTEXT_WINDOWS", "KNOWN_PRICES", "ModelPrice", "lookup"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


KNOWN_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4o-2024-05-13": ModelPrice(5.00, 15.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-5": ModelPrice(1.25, 10.00),
    "gpt-5-mini": ModelPrice(0.25, 2.00),
    "gpt-5-nano": ModelPrice(0.05, 0.40),
    "o3": ModelPrice(2.00, 8.00),
    "o3-mini": ModelPrice(1.10, 4.40),
    "o4-mini": ModelPrice(1.10, 4.40),
}

KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-5": 272_000,
    "gpt-5-mini": 272_000,
    "gpt-5-nano": 272_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
}


# What may follow a known name for the same model: a date or version snapshot.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d+|latest)")


def lookup(table: dict[str, T], model: str, *, variants: bool = False) -> T | None:
    """The entry for ``model`` (without a ``provider/`` prefix): its exact name, or a known
    name followed only by a date or version suffix (``gpt-4o-mini-2024-07-18``).

    With ``variants=True`` any known prefix matches, the longest first (``o3-pro`` finds
    ``o3``): for context windows, not prices.
    """
    name = model.rsplit("/", 1)[-1]
    if name in table:
        return table[name]
    candidates = sorted((key for key in table if name.startswith(key)), key=len, reverse=True)
    for key in candidates:
        if variants or _SNAPSHOT.fullmatch(name[len(key) :]):
            return table[key]
    return None
