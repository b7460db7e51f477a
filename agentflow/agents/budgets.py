"""Token and cost budgets for an agent run.

A budget is checked before each model request, against the usage journaled so far: once a
limit is reached no further request is made. (The check uses recorded usage only, never a
prompt estimate, so a replay decides exactly as the first execution did.)

A cost limit cannot be enforced for a request whose price is unknown (``cost_usd=None``: no
price table entry, e.g. a model variant, a local server): with ``max_cost_usd`` set, such a
request counts as reaching the limit ("cannot enforce max_cost_usd"), unless
``allow_unpriced=True`` says to count it as free. Approving that budget approval allows
unpriced requests for the rest of the run. Give the model ``price=ModelPrice(...)`` to
enforce the limit.

When a limit is reached the agent either fails with ``BudgetExceededError``
(``on_exceeded="fail"``), or pauses on an approval named ``"<agent>:budget"``
(``on_exceeded="approve"``): approving grants as much again as the budget's limits, from the
current usage (or the limits an approver puts in edited data, e.g.
``{"max_total_tokens": 50000}``); rejecting, or letting the approval time out, fails the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from .errors import ApprovalEditError, BudgetExceededError
from .usage import RunUsage

if TYPE_CHECKING:
    from ..context import RunContext

__all__ = ["Budget"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on one agent run's usage. ``None`` means no limit."""

    max_total_tokens: int | None = None
    max_cost_usd: float | None = None
    on_exceeded: Literal["fail", "approve"] = "fail"
    approval_timeout: float | timedelta | None = None
    allow_unpriced: bool = False
    """Count requests with no known price as free towards ``max_cost_usd`` (by default the
    first one stops the run, since the limit cannot be enforced for it)."""

    def __post_init__(self) -> None:
        if self.on_exceeded not in ("fail", "approve"):
            raise ValueError('Budget.on_exceeded must be "fail" or "approve"')

    def cannot_enforce_cost(self, usage: RunUsage) -> bool:
        """Whether ``max_cost_usd`` is set but ``usage`` has requests without a price."""
        return (
            self.max_cost_usd is not None
            and usage.unpriced_requests > 0
            and not self.allow_unpriced
        )

    def exceeded(self, usage: RunUsage) -> str | None:
        """Why ``usage`` is over this budget, or ``None``."""
        if self.max_total_tokens is not None and usage.total_tokens >= self.max_total_tokens:
            return (
                f"token budget used up: {usage.total_tokens} of max_total_tokens="
                f"{self.max_total_tokens}"
            )
        if self.max_cost_usd is not None and usage.cost_usd >= self.max_cost_usd:
            return (
                f"cost budget used up: ${usage.cost_usd:.6f} of max_cost_usd=${self.max_cost_usd}"
            )
        if self.cannot_enforce_cost(usage):
            return (
                f"cannot enforce max_cost_usd=${self.max_cost_usd}: {usage.unpriced_requests} "
                "model request(s) had no known price (give the model price=ModelPrice(...), "
                "or set Budget(allow_unpriced=True) to count them as free)"
            )
        return None


async def enforce(
    ctx: RunContext, agent: str, granted: Budget, original: Budget, usage: RunUsage
) -> Budget:
    """Check ``usage`` against ``granted`` before a request; return the budget to go on with.

    Raises:
        BudgetExceededError: over budget, and failing (or the approval was not given).
    """
    reason = granted.exceeded(usage)
    if reason is None:
        return granted
    if granted.on_exceeded == "fail":
        raise BudgetExceededError(agent, reason, usage.to_dict())
    decision = await ctx.wait_for_approval(
        f"{agent}:budget",
        data={
            "agent": agent,
            "reason": reason,
            "usage": usage.to_dict(),
            "max_total_tokens": granted.max_total_tokens,
            "max_cost_usd": granted.max_cost_usd,
        },
        timeout=granted.approval_timeout,
    )
    if not decision.approved:
        by = f" by {decision.approver}" if decision.approver else ""
        note = f": {decision.comment}" if decision.comment else ""
        raise BudgetExceededError(
            agent, f"{reason}; more budget was {decision.status}{by}{note}", usage.to_dict()
        )
    unpriced = granted.cannot_enforce_cost(usage) and not granted.exceeded(
        replace(usage, unpriced_requests=0)
    )
    if unpriced:
        # The approver was told cost cannot be enforced, and lets the run go on regardless.
        granted = replace(granted, allow_unpriced=True)
    if decision.edited and isinstance(decision.data, dict):
        return _edited(agent, granted, decision.data)
    if unpriced:
        return granted
    return replace(
        granted,
        max_total_tokens=None
        if original.max_total_tokens is None
        else usage.total_tokens + original.max_total_tokens,
        max_cost_usd=None
        if original.max_cost_usd is None
        else usage.cost_usd + original.max_cost_usd,
    )


def _edited(agent: str, granted: Budget, data: dict[str, Any]) -> Budget:
    tokens = _number(agent, data, "max_total_tokens", granted.max_total_tokens)
    cost = _number(agent, data, "max_cost_usd", granted.max_cost_usd)
    return replace(
        granted,
        max_total_tokens=None if tokens is None else int(tokens),
        max_cost_usd=cost,
    )


def _number(agent: str, data: dict[str, Any], key: str, default: float | None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ApprovalEditError(
            f"the approver's edited budget for agent {agent!r} is invalid: {key} must be a "
            f"number or null, not {value!r}",
            agent=agent,
        ) from None
    if not math.isfinite(number) or number < 0:
        raise ApprovalEditError(
            f"the approver's edited budget for agent {agent!r} is invalid: {key} must be a "
            f"non-negative number, not {value!r}",
            agent=agent,
        )
    return number
