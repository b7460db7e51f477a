"""A small agentflow application for the CLI tests (``tests.apps.cli_app:engine``).

The database comes from AGENTFLOW_DATABASE_URL, which each test points at its own file.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from agentflow import Engine, NonRetryableError, RunContext, workflow


class Greeting(BaseModel):
    name: str
    times: int = 1


@workflow(id="greet", description="Greet someone, a number of times.")
async def greet(ctx: RunContext, payload: Greeting) -> dict[str, str]:
    async def compose(name: str, times: int) -> str:
        return " ".join([f"hello {name}"] * times)

    text = await ctx.step("compose", compose, payload.name, payload.times)
    ctx.log.info("greeted", name=payload.name)
    return {"greeting": text}


class Expense(BaseModel):
    item: str
    amount: int


@workflow(id="expense")
async def expense(ctx: RunContext, payload: Expense) -> dict[str, Any]:
    """Ask a manager to approve an expense."""
    decision = await ctx.wait_for_approval("manager", data=payload.model_dump())
    return {
        "approved": decision.approved,
        "approver": decision.approver,
        "comment": decision.comment,
        "data": decision.data,
    }


@workflow(id="await_event")
async def await_event(ctx: RunContext) -> Any:
    """Wait for the event 'go' and return its payload."""
    event = await ctx.wait_for_event("go")
    return None if event is None else event.payload


class Gate(BaseModel):
    path: str


@workflow(id="gated")
async def gated(ctx: RunContext, payload: Gate) -> str:
    """A step that runs until the file at ``path`` exists (to hold a run in flight)."""

    async def wait_for_file(path: str) -> str:
        # The test process opens the gate by creating the file: there is no event to share.
        while not await anyio.Path(path).exists():  # noqa: ASYNC110
            await anyio.sleep(0.01)
        return "opened"

    return await ctx.step("wait_for_file", wait_for_file, payload.path)


@workflow(id="broken")
async def broken(ctx: RunContext) -> None:
    """Fail at once."""

    async def explode() -> None:
        raise NonRetryableError("the flux capacitor is out of flux")

    await ctx.step("explode", explode)


engine = Engine(workflows=[greet, expense, await_event, gated, broken])
