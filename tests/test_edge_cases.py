"""Edge cases of replay, cancellation and concurrency found in review, kept fixed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from agentflow import Engine, RunContext, RunStatus, workflow

from ._support import FakeClock, eventually, running_worker

pytestmark = pytest.mark.anyio

effects: list[str] = []


@workflow(id="two_steps")
async def two_steps(ctx: RunContext) -> str:
    await ctx.step("first", anyio.sleep, 30)
    await ctx.step("charge", effects.append, f"{ctx.run_id}:charged")
    return "done"


async def test_cancelling_a_run_whose_worker_died_never_runs_it_again(
    make_engine: Callable[..., Engine],
) -> None:
    clock = FakeClock()
    engine = make_engine([two_steps], clock=clock)
    handle = await engine.trigger(two_steps)
    async with anyio.create_task_group() as tg:  # a worker that dies without a goodbye
        await tg.start(engine.worker(lease=5, poll_interval=0.01).run)
        await eventually(lambda: _status(engine, handle.id, RunStatus.RUNNING), what="running")
        tg.cancel_scope.cancel()
    assert (await engine.cancel(handle.id)).cancel_requested
    clock.offset += 60  # the dead worker's lease runs out
    async with running_worker(engine, lease=5):
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.CANCELLED
    assert f"{handle.id}:charged" not in effects


async def _status(engine: Engine, run_id: str, status: RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


@workflow(id="starts_children")
async def starts_children(ctx: RunContext) -> None:
    await ctx.step("first", anyio.sleep, 0.3)
    await ctx.trigger("two_steps")


async def test_cancel_from_another_process_stops_children_being_started(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([starts_children, two_steps])
    other = make_engine([starts_children, two_steps])  # another process, e.g. the CLI
    async with running_worker(engine, lease=30):
        handle = await engine.trigger(starts_children)
        await eventually(lambda: _status(engine, handle.id, RunStatus.RUNNING), what="running")
        await other.cancel(handle.id)
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.CANCELLED
    assert await engine.list_runs(parent_id=handle.id) == []


@workflow(id="leaf_value")
async def leaf_value(ctx: RunContext, payload: dict[str, int]) -> int:
    return payload["n"]


@workflow(id="adopts")
async def adopts(ctx: RunContext) -> int:
    return await ctx.trigger_and_wait(leaf_value, {"n": 7}, idempotency_key="shared")


async def test_waiting_on_a_run_found_by_idempotency_key_that_is_no_child(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([adopts, leaf_value])
    async with running_worker(engine):
        top = await engine.trigger(leaf_value, {"n": 7}, idempotency_key="shared")
        parent = await engine.trigger(adopts)
        assert await parent.result(timeout=10) == 7
    assert (await engine.get_run(top.id)).parent_id is None


@workflow(id="gathers_children")
async def gathers_children(ctx: RunContext) -> list[int]:
    results = await asyncio.gather(
        ctx.trigger_and_wait(leaf_value, {"n": 1}), ctx.trigger_and_wait(leaf_value, {"n": 2})
    )
    batch = await asyncio.gather(
        ctx.batch_trigger_and_wait(leaf_value, [{"n": 3}]),
        ctx.batch_trigger_and_wait(leaf_value, [{"n": 4}, {"n": 5}]),
    )
    return [*results, *(r.output for group in batch for r in group)]


async def test_child_waits_run_side_by_side_replay_in_the_same_positions(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([gathers_children, leaf_value])
    async with running_worker(engine):
        handle = await engine.trigger(gathers_children)
        assert await handle.result(timeout=20) == [1, 2, 3, 4, 5]


@workflow(id="sleeps_until")
async def sleeps_until(ctx: RunContext, payload: dict[str, float]) -> str:
    await ctx.sleep_until(datetime.fromtimestamp(payload["at"], UTC))
    await ctx.step("after", effects.append, f"{ctx.run_id}:after")
    return "woke"


async def test_sleep_until_a_time_that_has_passed_on_replay(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([sleeps_until])
    at = (datetime.now(UTC) + timedelta(seconds=0.2)).timestamp()
    async with running_worker(engine):
        handle = await engine.trigger(sleeps_until, {"at": at})
        assert await handle.result(timeout=10) == "woke"
    assert effects.count(f"{handle.id}:after") == 1


async def test_the_same_event_id_sent_at_once_is_recorded_once(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    records = []

    async def send() -> None:
        records.append(await engine.send_event("order.paid", {"n": 1}, id="evt-same"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(send)
    assert sum(not r.duplicate for r in records) == 1
    assert len(await engine.list_events()) == 1


@workflow(id="greet")
async def greet(ctx: RunContext, name: str) -> str:
    return f"hello {name}"


async def test_a_string_payload_is_a_string_not_json(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([greet])
    async with running_worker(engine):
        assert await (await engine.trigger(greet, "bob")).result(timeout=10) == "hello bob"
        handle = await engine.trigger(greet, '{"looks": "like json"}')
        assert await handle.result(timeout=10) == 'hello {"looks": "like json"}'


async def _one() -> int:
    return 1


@workflow(id="mutates_metadata")
async def mutates_metadata(ctx: RunContext) -> str:
    items: list[object] = []
    ctx.metadata.set("items", items)  # checked here: an empty list is JSON
    items.append(object())  # changed afterwards: saving it with the next write fails
    await ctx.step("one", _one)
    return "done"


async def test_metadata_that_cannot_be_saved_fails_the_run_instead_of_wedging_it(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([mutates_metadata])
    async with running_worker(engine, lease=60):
        run = await engine.wait((await engine.trigger(mutates_metadata)).id, timeout=10)
    assert run.status is RunStatus.FAILED
    assert run.attempt == 1
