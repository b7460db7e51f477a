"""Runs: triggering, payload validation, idempotency, cancellation, timeouts, listing."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from pydantic import BaseModel, Field

from agentflow import (
    ConflictError,
    Engine,
    PayloadValidationError,
    RunContext,
    RunFailedError,
    RunNotFoundError,
    RunStatus,
    WaitTimeoutError,
    WorkflowNotFoundError,
    workflow,
)
from agentflow.limits import MAX_DELAY

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio


class Address(BaseModel):
    city: str
    zip: str = Field(pattern=r"^\d{5}$")


class Signup(BaseModel):
    email: str
    age: int = Field(ge=18)
    address: Address


@workflow(id="signup", description="Register a customer.")
async def signup(ctx: RunContext, payload: Signup) -> str:
    return payload.email


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_invalid_payload_is_rejected_with_field_names_and_creates_no_run(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([signup])
    with pytest.raises(PayloadValidationError) as caught:
        await engine.trigger(
            signup, {"email": "a@b.c", "age": 12, "address": {"city": "Lyon", "zip": "x"}}
        )
    assert sorted(caught.value.fields) == ["address.zip", "age"]
    assert "age: Input should be greater than or equal to 18" in str(caught.value)
    with pytest.raises(PayloadValidationError) as missing:
        await engine.trigger("signup", {"age": 30})
    assert sorted(missing.value.fields) == ["address", "email"]
    with pytest.raises(PayloadValidationError):
        await engine.trigger("signup", "not json")
    assert await engine.list_runs() == []


async def test_unknown_workflow_names_the_available_ones(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([signup])
    with pytest.raises(WorkflowNotFoundError, match="available workflows: signup"):
        await engine.trigger("sign_up", {})
    with pytest.raises(RunNotFoundError):
        await engine.get_run("run_missing")


async def test_idempotent_trigger_returns_the_first_run_until_the_key_expires(
    make_engine: Callable[..., Engine],
) -> None:
    clock = FakeClock()
    engine = make_engine([signup], clock=clock, idempotency_ttl=timedelta(hours=1))
    payload = {"email": "a@b.c", "age": 30, "address": {"city": "Lyon", "zip": "69001"}}
    first = await engine.trigger(signup, payload, idempotency_key="signup-a")
    second = await engine.trigger(signup, payload, idempotency_key="signup-a")
    assert (first.created, second.created) == (True, False)
    assert second.id == first.id
    other_key = await engine.trigger(signup, payload, idempotency_key="signup-b")
    assert other_key.id != first.id
    clock.now += 3601
    after_ttl = await engine.trigger(signup, payload, idempotency_key="signup-a")
    assert after_ttl.created
    assert after_ttl.id != first.id
    assert len(await engine.list_runs()) == 3


async def test_idempotent_trigger_under_concurrency_creates_one_run(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([signup])
    payload = {"email": "a@b.c", "age": 30, "address": {"city": "Lyon", "zip": "69001"}}
    ids: list[str] = []

    async def fire() -> None:
        ids.append((await engine.trigger(signup, payload, idempotency_key="same")).id)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(fire)
    assert len(set(ids)) == 1
    assert len(await engine.list_runs()) == 1


@workflow(id="waits_for_approval")
async def waits_for_approval(ctx: RunContext, payload: dict[str, int]) -> str:
    if payload["depth"] > 0:
        await ctx.trigger_and_wait("waits_for_approval", {"depth": payload["depth"] - 1})
    await ctx.wait_for_approval("ok")
    return "approved"


@workflow(id="busy")
async def busy(ctx: RunContext) -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    await ctx.step("forever", forever)


async def test_cancel_cascades_to_children_and_running_runs_stop(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([waits_for_approval, busy])
    async with running_worker(engine) as worker:
        root = await engine.trigger(waits_for_approval, {"depth": 2})

        async def grandchild_waiting() -> bool:
            runs = await engine.list_runs(status=RunStatus.WAITING)
            return len(runs) == 3

        await eventually(grandchild_waiting, what="three waiting runs")
        running = await engine.trigger(busy)
        await eventually(lambda: _is(engine, running.id, RunStatus.RUNNING), what="running")
        cancelled = await engine.cancel(root.id)
        assert cancelled.status is RunStatus.CANCELLED
        await engine.cancel(running.id)
        run = await running.wait(timeout=10)
        assert run.status is RunStatus.CANCELLED
        await eventually(lambda: _no_active(worker.active_runs), what="worker idle")
    statuses = {r.status for r in await engine.list_runs(workflow="waits_for_approval")}
    assert statuses == {RunStatus.CANCELLED}
    assert await engine.pending_approvals() == []
    with pytest.raises(ConflictError, match="already ended with status cancelled"):
        await engine.cancel(root.id)
    with pytest.raises(RunFailedError, match="cancelled"):
        await root.result(timeout=1)


async def _is(engine: Engine, run_id: str, status: RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


async def _no_active(active: list[str]) -> bool:
    return not active


@workflow(id="slow", timeout=0.2)
async def slow(ctx: RunContext) -> None:
    async def nap() -> None:
        await anyio.sleep(0.1)

    for i in range(10):
        await ctx.step(f"nap{i}", nap)


async def test_workflow_timeout_ends_the_run_timed_out(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([slow])
    async with running_worker(engine):
        run = await (await engine.trigger(slow)).wait(timeout=10)
    assert run.status is RunStatus.TIMED_OUT
    assert run.error is not None
    assert "timeout of 0.2s" in run.error["message"]
    assert len(await engine.get_steps(run.id)) < 10


async def test_delayed_runs_wait_for_their_time(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([busy, signup])
    payload = {"email": "a@b.c", "age": 30, "address": {"city": "Lyon", "zip": "69001"}}
    async with running_worker(engine):
        later = await engine.trigger(busy, delay=timedelta(minutes=5))
        at = await engine.trigger(busy, run_at=datetime.now(UTC) + timedelta(hours=1))
        soon = await engine.trigger(signup, payload, delay=0.05)
        assert (await engine.get_run(later.id)).status is RunStatus.DELAYED
        assert await soon.result(timeout=10) == "a@b.c"
        assert (await engine.get_run(later.id)).status is RunStatus.DELAYED
        assert (await engine.get_run(at.id)).status is RunStatus.DELAYED
        await engine.cancel(later.id)
        await engine.cancel(at.id)


async def test_the_longest_delay_is_accepted_at_any_clock(
    make_engine: Callable[..., Engine],
) -> None:
    clock = FakeClock()
    clock.now = 1756638669.428207  # here (now + MAX_DELAY) - now rounds above MAX_DELAY
    assert (clock.now + MAX_DELAY) - clock.now > MAX_DELAY
    engine = make_engine([busy], clock=clock)
    handle = await engine.trigger(busy, delay=MAX_DELAY)
    assert (await engine.get_run(handle.id)).status is RunStatus.DELAYED
    with pytest.raises(ValueError, match="at most"):
        await engine.trigger(busy, delay=MAX_DELAY * 1.000001)
    with pytest.raises(ValueError, match="finite"):
        await engine.trigger(busy, delay=math.inf)


async def test_list_runs_filters_and_pages(make_engine: Callable[..., Engine]) -> None:
    clock = FakeClock()
    engine = make_engine([signup, busy], clock=clock)
    payload = {"email": "a@b.c", "age": 30, "address": {"city": "Lyon", "zip": "69001"}}
    ids = []
    for i in range(5):
        clock.now += 1
        handle = await engine.trigger(signup, payload, tags=["vip"] if i % 2 else [])
        ids.append(handle.id)
    await engine.trigger(busy)
    assert len(await engine.list_runs(workflow="signup")) == 5
    assert {r.id for r in await engine.list_runs(tag="vip")} == {ids[1], ids[3]}
    first_page = await engine.list_runs(workflow="signup", limit=2)
    assert [r.id for r in first_page] == [ids[4], ids[3]]
    second_page = await engine.list_runs(
        workflow="signup", limit=2, created_before=first_page[-1].created_at
    )
    assert [r.id for r in second_page] == [ids[2], ids[1]]
    assert len(await engine.list_runs(status=["queued", "running"])) == 6


async def test_wait_gives_up_after_its_timeout(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([busy])
    handle = await engine.trigger(busy)
    with pytest.raises(WaitTimeoutError):
        await engine.wait(handle.id, timeout=0.05)


async def test_graceful_shutdown_hands_runs_back(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([busy])
    async with running_worker(engine, shutdown_grace=0.05) as worker:
        handle = await engine.trigger(busy)
        await eventually(lambda: _is(engine, handle.id, RunStatus.RUNNING), what="running")
        worker.stop()
    run = await engine.get_run(handle.id)
    assert run.status is RunStatus.QUEUED, "a stopped worker hands its runs straight back"
