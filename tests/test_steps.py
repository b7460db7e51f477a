"""Checkpointed steps: journaling, replay without re-execution, determinism, retries."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agentflow import (
    Engine,
    NonRetryableError,
    RetryPolicy,
    RunContext,
    RunStatus,
    StepFailedError,
    workflow,
)

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

calls: Counter[str] = Counter()


class Quote(BaseModel):
    sku: str
    price: float


async def fetch_quote(sku: str) -> Quote:
    calls[f"quote:{sku}"] += 1
    return Quote(sku=sku, price=9.5)


def sync_add(a: int, b: int) -> int:
    calls["sync_add"] += 1
    return a + b


@workflow(id="replay")
async def replay_wf(ctx: RunContext, payload: dict[str, str]) -> dict[str, Any]:
    quote = await ctx.step("quote", fetch_quote, payload["sku"])
    total = await ctx.step("add", sync_add, 1, 2)
    ctx.log.info("quoted", sku=quote.sku)
    await ctx.sleep(0.05)  # suspends: the run is re-executed from its journal after this
    assert isinstance(quote, Quote), "a pydantic result must round-trip to its class on replay"
    ctx.log.info("after sleep")
    return {"price": quote.price, "total": total}


async def test_replay_returns_journaled_results_without_calling_again(
    make_engine: Callable[..., Engine],
) -> None:
    calls.clear()
    engine = make_engine([replay_wf])
    async with running_worker(engine):
        handle = await engine.trigger(replay_wf, {"sku": "abc"})
        assert await handle.result(timeout=10) == {"price": 9.5, "total": 3}
    assert calls == Counter({"quote:abc": 1, "sync_add": 1})
    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.name, s.kind, s.status) for s in steps] == [
        (1, "quote", "step", "completed"),
        (2, "add", "step", "completed"),
    ]
    assert steps[0].output == {"sku": "abc", "price": 9.5}
    logs = await engine.get_logs(handle.id)
    assert [(entry.message, entry.fields) for entry in logs] == [
        ("quoted", {"sku": "abc"}),
        ("after sleep", {}),
    ], "replay must not write a log line twice"


switch = {"name": "first"}


@workflow(id="drifting")
async def drifting_wf(ctx: RunContext) -> str:
    async def noop() -> str:
        return "ok"

    await ctx.step(switch["name"], noop)
    await ctx.wait_for_approval("go")
    return "done"


async def test_replay_that_meets_a_different_step_fails_naming_both(
    make_engine: Callable[..., Engine],
) -> None:
    switch["name"] = "first"
    engine = make_engine([drifting_wf])
    async with running_worker(engine):
        handle = await engine.trigger(drifting_wf)
        await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        switch["name"] = "renamed"  # the code changed under a waiting run
        await engine.approve(handle.id, "go")
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["type"] == "NonDeterminismError"
    assert "'first'" in run.error["message"]
    assert "'renamed'" in run.error["message"]


attempts: Counter[str] = Counter()


async def flaky(key: str, fail_times: int) -> str:
    attempts[key] += 1
    if attempts[key] <= fail_times:
        raise ConnectionError(f"transient failure {attempts[key]}")
    return f"ok after {attempts[key]}"


@workflow(id="retrying")
async def retrying_wf(ctx: RunContext, payload: dict[str, int]) -> str:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, factor=2, max_delay=0.05)
    return await ctx.step("flaky", flaky, ctx.run_id, payload["fail"], retry=policy)


async def test_step_retries_until_success_and_records_each_failure(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([retrying_wf])
    async with running_worker(engine):
        handle = await engine.trigger(retrying_wf, {"fail": 2})
        assert await handle.result(timeout=10) == "ok after 3"
    (step,) = await engine.get_steps(handle.id)
    assert step.attempts == 3
    errors = await engine.get_errors(handle.id)
    assert [(e.step, e.step_attempt, e.type) for e in errors] == [
        ("flaky", 1, "ConnectionError"),
        ("flaky", 2, "ConnectionError"),
    ]
    assert "transient failure 1" in errors[0].message
    assert "Traceback" in errors[0].traceback


@workflow(id="exhausted")
async def exhausted_wf(ctx: RunContext, payload: dict[str, int]) -> str:
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01)
    try:
        return await ctx.step("flaky", flaky, ctx.run_id, payload["fail"], retry=policy)
    except StepFailedError as exc:
        # The same error type on first execution and on replay, so handling is deterministic.
        await ctx.sleep(0.01)
        return f"handled {exc.error_type} after {exc.attempts}"


async def test_exhausted_step_raises_step_failed_the_same_on_replay(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([exhausted_wf])
    async with running_worker(engine):
        handle = await engine.trigger(exhausted_wf, {"fail": 5})
        assert await handle.result(timeout=10) == "handled ConnectionError after 2"
    assert attempts[handle.id] == 2, "a failed step is journaled, not retried on replay"
    (step,) = await engine.get_steps(handle.id)
    assert step.status == "failed"
    assert step.error is not None
    assert step.error["type"] == "ConnectionError"


class Declined(NonRetryableError):
    pass


async def declined() -> None:
    attempts["declined"] += 1
    raise Declined("card declined")


async def value_error() -> None:
    attempts["value"] += 1
    raise ValueError("bad input")


@workflow(id="non_retryable", retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
async def non_retryable_wf(ctx: RunContext, payload: dict[str, str]) -> None:
    if payload["kind"] == "declined":
        await ctx.step("charge", declined)
    else:
        await ctx.step(
            "parse", value_error, retry=RetryPolicy(max_attempts=5, non_retryable=(ValueError,))
        )


@pytest.mark.parametrize(("kind", "key"), [("declined", "declined"), ("value", "value")])
async def test_non_retryable_errors_fail_at_once(
    make_engine: Callable[..., Engine], kind: str, key: str
) -> None:
    attempts[key] = 0
    engine = make_engine([non_retryable_wf])
    async with running_worker(engine):
        handle = await engine.trigger(non_retryable_wf, {"kind": kind})
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.FAILED
    assert run.attempt == 1, "a non-retryable step failure must not retry the workflow"
    assert attempts[key] == 1


@workflow(id="workflow_retry", retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
async def workflow_retry_wf(ctx: RunContext) -> int:
    async def once() -> int:
        calls["once"] += 1
        return 7

    value = await ctx.step("once", once)
    await ctx.step("flaky", flaky, ctx.run_id, 1, retry=RetryPolicy.none())
    return value


async def test_workflow_retry_keeps_completed_steps(make_engine: Callable[..., Engine]) -> None:
    calls["once"] = 0
    engine = make_engine([workflow_retry_wf])
    async with running_worker(engine):
        handle = await engine.trigger(workflow_retry_wf)
        assert await handle.result(timeout=10) == 7
    run = await engine.get_run(handle.id)
    assert run.attempt == 2
    assert calls["once"] == 1, "the completed step must not run again on the second attempt"
    errors = await engine.get_errors(handle.id)
    assert [(e.run_attempt, e.step) for e in errors] == [(1, "flaky"), (1, None)]


def test_backoff_delays_stay_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.5, factor=2, max_delay=4, jitter=0.25)
    for attempt in range(1, 10):
        nominal = min(4.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = policy.delay(attempt)
            assert nominal * 0.75 <= delay <= nominal
    exact = RetryPolicy(initial_delay=1, factor=3, max_delay=100, jitter=0)
    assert [exact.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 3, 9, 27, 81, 100]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


order: list[str] = []


@workflow(id="concurrent")
async def concurrent_wf(ctx: RunContext) -> list[int]:
    async def work(n: int, delay: float) -> int:
        await anyio.sleep(delay)
        order.append(f"ran:{n}")
        return n

    # Finishing order differs from start order; journal positions follow start order.
    gathered = await asyncio.gather(
        ctx.step("a", work, 1, 0.03), ctx.step("b", work, 2, 0.0), ctx.step("c", work, 3, 0.01)
    )
    results: list[int] = list(gathered)
    async with anyio.create_task_group() as tg:

        async def collect(name: str, n: int) -> None:
            results.append(await ctx.step(name, work, n, 0.0))

        tg.start_soon(collect, "d", 4)
        tg.start_soon(collect, "e", 5)
    await ctx.sleep(0.01)
    return sorted(results)


async def test_concurrent_steps_journal_deterministically(
    make_engine: Callable[..., Engine],
) -> None:
    order.clear()
    engine = make_engine([concurrent_wf])
    async with running_worker(engine):
        handle = await engine.trigger(concurrent_wf)
        assert await handle.result(timeout=10) == [1, 2, 3, 4, 5]
    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.name) for s in steps] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert len(order) == 5, "replay after the sleep must not run any step again"


keys: list[str] = []


@workflow(id="idempotency_keys")
async def idempotency_keys_wf(ctx: RunContext) -> list[str]:
    def charge() -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            raise ConnectionError("gateway timeout")
        return ctx.idempotency_key

    first = await ctx.step("charge", charge, retry=RetryPolicy(initial_delay=0.01))
    second = await ctx.step("charge_again", charge)
    return [first, second]


async def test_idempotency_key_is_stable_per_step_across_retries(
    make_engine: Callable[..., Engine],
) -> None:
    keys.clear()
    engine = make_engine([idempotency_keys_wf])
    async with running_worker(engine):
        handle = await engine.trigger(idempotency_keys_wf)
        first, second = await handle.result(timeout=10)
    assert keys == [first, first, second]
    assert first != second
    assert first.startswith(handle.id)


@workflow(id="not_json")
async def not_json_wf(ctx: RunContext) -> None:
    await ctx.step("bad", lambda: object())


async def test_step_result_that_is_not_json_fails_clearly(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([not_json_wf])
    async with running_worker(engine):
        run = await (await engine.trigger(not_json_wf)).wait(timeout=10)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "cannot store a value of type object" in run.error["message"]


async def test_idempotency_key_outside_a_step_is_an_error(
    make_engine: Callable[..., Engine],
) -> None:
    seen: list[str] = []

    @workflow(id="outside")
    async def outside(ctx: RunContext) -> None:
        try:
            _ = ctx.idempotency_key
        except RuntimeError as exc:
            seen.append(str(exc))

    engine = make_engine([outside])
    async with running_worker(engine):
        await (await engine.trigger(outside)).result(timeout=10)
    assert seen == ["ctx.idempotency_key is only available inside a step function"]


async def test_logs_of_a_long_step_are_visible_while_it_runs(
    make_engine: Callable[..., Engine],
) -> None:
    release = anyio.Event()

    @workflow(id="chatty")
    async def chatty(ctx: RunContext) -> None:
        async def long_step() -> None:
            ctx.log.info("working", pct=50)
            await release.wait()

        await ctx.step("long", long_step)

    engine = make_engine([chatty])
    # Heartbeats (every lease/3) flush the logs of running steps. A lease much shorter than
    # this could lapse on a busy machine, and the reclaimed run would rightly log again.
    async with running_worker(engine, lease=1.5):
        handle = await engine.trigger(chatty)
        (entry,) = await eventually(lambda: engine.get_logs(handle.id), what="log line")
        assert (entry.message, entry.fields, entry.seq) == ("working", {"pct": 50}, 1)
        assert (await engine.get_run(handle.id)).status is RunStatus.RUNNING
        release.set()
        await handle.result(timeout=10)
    assert len(await engine.get_logs(handle.id)) == 1


async def test_metadata_is_readable_while_running_and_not_applied_twice_on_replay(
    make_engine: Callable[..., Engine],
) -> None:
    gate = anyio.Event()

    @workflow(id="progress")
    async def progress(ctx: RunContext) -> dict[str, Any]:
        ctx.metadata.set("stage", "fetching")
        for n in range(3):
            await ctx.step(f"page{n}", anyio.sleep, 0)
            ctx.metadata.increment("pages")
            ctx.metadata.append("seen", n)
        await ctx.metadata.flush()
        await ctx.step("hold", gate.wait)
        await ctx.sleep(0.01)  # the run is replayed after this: nothing may count twice
        ctx.metadata.set("stage", "done")
        return ctx.metadata.to_dict()

    engine = make_engine([progress])
    async with running_worker(engine):
        handle = await engine.trigger(progress, metadata={"owner": "tests"})

        async def halfway() -> bool:
            return (await engine.get_run(handle.id)).metadata.get("pages") == 3

        await eventually(halfway, what="progress while running")
        gate.set()
        result = await handle.result(timeout=10)
    expected = {"owner": "tests", "stage": "done", "pages": 3, "seen": [0, 1, 2]}
    assert result == expected
    assert (await engine.get_run(handle.id)).metadata == expected
