"""Leases: a worker whose lease lapsed while it was still executing a run yields to the
execution that holds the lease now, even when that is the same worker re-claiming it."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

from agentflow import Engine, RunContext, RunStatus, workflow

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio


async def test_a_run_reclaimed_by_the_same_worker_completes_once(
    make_engine: Callable[..., Engine],
) -> None:
    offset = [0.0]
    entered: list[int] = []
    gate = anyio.Event()
    seconds: list[str] = []

    async def slow_step() -> str:
        entered.append(1)
        await gate.wait()
        return "done"

    def second() -> str:
        seconds.append("ran")
        return "ok"

    @workflow(id="lapsing")
    async def lapsing(ctx: RunContext) -> str:
        await ctx.step("first", slow_step)
        return await ctx.step("second", second)

    # Moving the clock on makes the run's lease look expired, as a stalled heartbeat would.
    engine = make_engine([lapsing], clock=lambda: time.time() + offset[0])
    async with running_worker(engine, lease=5.0, sweep_interval=0.05):
        handle = await engine.trigger(lapsing)
        await eventually(lambda: _at_least(entered, 1), what="the first execution")
        offset[0] += 10
        await eventually(lambda: _at_least(entered, 2), what="the run to be claimed again")
        gate.set()
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.COMPLETED
    assert run.output == "ok"
    assert seconds == ["ran"], "only the execution holding the lease goes on"
    steps = await engine.get_steps(handle.id)
    assert [(s.name, s.status) for s in steps] == [("first", "completed"), ("second", "completed")]


async def _at_least(items: list[int], n: int) -> bool:
    return len(items) >= n
