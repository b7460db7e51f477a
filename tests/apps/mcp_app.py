"""A small agentflow application for the MCP tests (``tests.apps.mcp_app:engine``).

The database comes from AGENTFLOW_DATABASE_URL, which each test points at its own database.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agentflow import Engine, RunContext, Workflow, workflow


class Refund(BaseModel):
    order_id: str = Field(description="The order to refund.")
    amount_cents: int = Field(gt=0)


@workflow(id="refund_order", description="Refund an order, once a human approved it.")
async def refund_order(ctx: RunContext, req: Refund) -> dict[str, Any]:
    decision = await ctx.wait_for_approval("refund", data=req.model_dump())
    ctx.log.info("decided", approved=decision.approved)
    if not decision.approved:
        return {"status": "rejected", "comment": decision.comment}
    return {"status": "refunded", "order_id": req.order_id, "by": decision.approver}


class Greeting(BaseModel):
    name: str


@workflow(id="greet", description="Say hello.")
async def greet(ctx: RunContext, payload: Greeting) -> dict[str, str]:
    async def compose(name: str) -> str:
        return f"hello {name}"

    return {"greeting": await ctx.step("compose", compose, payload.name)}


@workflow(id="add")
async def add(ctx: RunContext, numbers: list[int]) -> int:
    """Add numbers (a payload that is not an object)."""
    return sum(numbers)


@workflow(id="await_event")
async def await_event(ctx: RunContext) -> Any:
    """Wait for the event 'go' and return its payload."""
    event = await ctx.wait_for_event("go")
    return None if event is None else event.payload


WORKFLOWS: list[Workflow[Any, Any]] = [refund_order, greet, add, await_event]
engine = Engine(workflows=WORKFLOWS)
