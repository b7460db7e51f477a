from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from agentflow import Engine, RunContext, RunStatus, workflow

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    order_id: str
    amount: int


@workflow(id="smoke")
async def smoke(ctx: RunContext, order: Order) -> dict[str, int]:
    async def double(x: int) -> int:
        return x * 2

    total = await ctx.step("double", double, order.amount)
    return {"total": total}


async def test_trigger_and_complete(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([smoke])
    async with running_worker(engine):
        handle = await engine.trigger(smoke, {"order_id": "o1", "amount": 21})
        assert await handle.result(timeout=10) == {"total": 42}
    run = await engine.get_run(handle.id)
    assert run.status is RunStatus.COMPLETED
    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.name, s.output) for s in steps] == [(1, "double", 42)]
    assert await eventually(lambda: engine.get_run(handle.id))
