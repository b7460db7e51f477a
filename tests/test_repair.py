"""Bulk and repair operations: cancel and replay by filter, replay one run, fork from a step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from agentflow import (
    ConflictError,
    Engine,
    NotFoundError,
    RetryPolicy,
    RunContext,
    RunStatus,
    workflow,
)

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

calls: Counter[str] = Counter()
broken = {"charge": True}


def fetch(order_id: str) -> str:
    calls["fetch"] += 1
    return f"order {order_id}"


def charge(order: str) -> str:
    calls["charge"] += 1
    if broken["charge"]:
        raise RuntimeError("card processor down")
    return f"charged {order}"


def notify(receipt: str) -> str:
    calls["notify"] += 1
    return f"sent {receipt}"


@workflow(id="checkout")
async def checkout(ctx: RunContext, payload: dict[str, str]) -> str:
    order = await ctx.step("fetch", fetch, payload["order_id"])
    receipt = await ctx.step("charge", charge, order, retry=RetryPolicy.none())
    return await ctx.step("notify", notify, receipt)


async def test_fork_from_a_step_keeps_the_journal_before_it(
    make_engine: Callable[..., Engine],
) -> None:
    calls.clear()
    broken["charge"] = True
    engine = make_engine([checkout])
    async with running_worker(engine):
        failed = await (await engine.trigger(checkout, {"order_id": "7"})).wait(timeout=10)
        assert failed.status is RunStatus.FAILED
        broken["charge"] = False  # the processor is back
        fork = await engine.fork(failed.id, from_step="charge")
        assert await fork.result(timeout=10) == "sent charged order 7"
        by_number = await engine.fork(failed.id, from_step=1)
        assert await by_number.result(timeout=10) == "sent charged order 7"
    assert calls == {"fetch": 2, "charge": 3, "notify": 2}, "fetch is not run again by a fork"
    forked = await engine.get_run(fork.id)
    assert forked.metadata["forked_from"] == {"run_id": failed.id, "from_step": 2}
    steps = await engine.get_steps(fork.id)
    assert [(s.seq, s.name, s.status) for s in steps] == [
        (1, "fetch", "completed"),
        (2, "charge", "completed"),
        (3, "notify", "completed"),
    ]
    with pytest.raises(NotFoundError, match="no step named 'refund'"):
        await engine.fork(failed.id, from_step="refund")


@workflow(id="approval_gate")
async def approval_gate(ctx: RunContext) -> str:
    await ctx.step("fetch", fetch, "1")
    await ctx.wait_for_approval("go")
    return "went"


async def test_fork_past_a_wait_that_never_resolved_is_refused(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([approval_gate])
    async with running_worker(engine):
        handle = await engine.trigger(approval_gate)
        await eventually(lambda: engine.pending_approvals(handle.id), what="the approval")
        await engine.cancel(handle.id)
    with pytest.raises(ConflictError, match="never resolved"):
        await engine.fork(handle.id, from_step=3)


@workflow(id="parked")
async def parked(ctx: RunContext, payload: dict[str, int]) -> int:
    await ctx.wait_for_approval("never")
    return payload["n"]


async def test_cancel_and_replay_many_by_filter(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([parked, checkout])
    handles = [
        await engine.trigger(parked, {"n": n}, tags=["batch-a"] if n % 2 else ["batch-b"])
        for n in range(6)
    ]
    other = await engine.trigger(checkout, {"order_id": "x"})
    cancelled = await engine.cancel_many(workflow="parked", tag="batch-a")
    assert sorted(cancelled) == sorted(handles[n].id for n in (1, 3, 5))
    statuses = {h.id: (await h.get()).status for h in handles}
    assert [statuses[handles[n].id] for n in range(6)] == [
        RunStatus.QUEUED,
        RunStatus.CANCELLED,
        RunStatus.QUEUED,
        RunStatus.CANCELLED,
        RunStatus.QUEUED,
        RunStatus.CANCELLED,
    ]
    assert (await other.get()).status is RunStatus.QUEUED
    replays = await engine.replay_many(workflow="parked", status="cancelled")
    assert len(replays) == 3
    assert sorted([(await r.get()).payload["n"] for r in replays]) == [1, 3, 5]
    again = await engine.replay(handles[0].id)
    run = await again.get()
    assert (run.payload, run.tags, run.metadata["replay_of"]) == (
        {"n": 0},
        ["batch-b"],
        handles[0].id,
    )
    await engine.cancel_many(status=["queued", "waiting"])
    assert {r.status for r in await engine.list_runs(limit=100)} == {RunStatus.CANCELLED}
