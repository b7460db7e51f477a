"""Waitpoints: durable sleep, approvals, events and child runs, including timeouts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from agentflow import (
    ApprovalError,
    ChildRunError,
    Engine,
    NotFoundError,
    RunContext,
    RunStatus,
    workflow,
)

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

side_effects: Counter[str] = Counter()


async def effect(name: str) -> str:
    side_effects[name] += 1
    return name


@workflow(id="sleeper")
async def sleeper(ctx: RunContext, payload: dict[str, float]) -> str:
    await ctx.step("before", effect, f"{ctx.run_id}:before")
    await ctx.sleep(payload["seconds"])
    await ctx.step("after", effect, f"{ctx.run_id}:after")
    return "woke"


async def test_sleep_parks_the_run_without_holding_a_worker_slot(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([sleeper])
    async with running_worker(engine) as worker:
        handle = await engine.trigger(sleeper, {"seconds": 30})

        async def parked() -> bool:
            run = await engine.get_run(handle.id)
            return run.status is RunStatus.WAITING and not worker.active_runs

        await eventually(parked, what="the run to wait")
        (wait,) = await engine.list_waitpoints(run_id=handle.id)
        assert (wait.kind, wait.status) == ("sleep", "pending")
        assert wait.timeout_at is not None
        short = await engine.trigger(sleeper, {"seconds": 0.05})
        assert await short.result(timeout=10) == "woke"
        await engine.cancel(handle.id)
    assert side_effects[f"{short.id}:before"] == 1
    assert side_effects[f"{short.id}:after"] == 1


class Refund(BaseModel):
    order_id: str
    amount: int


@workflow(id="approval")
async def approval_wf(ctx: RunContext, refund: Refund) -> dict[str, Any]:
    decision = await ctx.wait_for_approval("refund", data=refund, timeout=refund.amount / 100)
    if decision.approved:
        await ctx.step("pay", effect, f"{ctx.run_id}:pay")
    return decision.model_dump(mode="json")


async def _pending(engine: Engine, run_id: str) -> Any:
    approvals = await eventually(lambda: engine.pending_approvals(run_id), what="approval")
    return approvals[0]


async def test_approve_resumes_the_run_with_the_decision(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([approval_wf])
    async with running_worker(engine):
        handle = await engine.trigger(approval_wf, {"order_id": "o-1", "amount": 3000})
        pending = await _pending(engine, handle.id)
        assert pending.data == {"order_id": "o-1", "amount": 3000}
        assert pending.token is not None
        assert len(pending.token) > 20
        decision = await engine.approve(handle.id, "refund", approver="alice", comment="fine")
        assert decision.approved
        result = await handle.result(timeout=10)
    assert result["status"] == "approved"
    assert result["approver"] == "alice"
    assert result["comment"] == "fine"
    assert result["digest"] == pending.digest
    assert side_effects[f"{handle.id}:pay"] == 1


async def test_reject_and_edited_data(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([approval_wf])
    async with running_worker(engine):
        rejected = await engine.trigger(approval_wf, {"order_id": "o-2", "amount": 3000})
        edited = await engine.trigger(approval_wf, {"order_id": "o-3", "amount": 3000})
        await _pending(engine, rejected.id)
        token = (await _pending(engine, edited.id)).token
        await engine.reject(rejected.id, "refund", approver="bob", comment="too much")
        await engine.approve(token=token, approver="carol", data={"order_id": "o-3", "amount": 5})
        no = await rejected.result(timeout=10)
        yes = await edited.result(timeout=10)
    assert (no["approved"], no["status"], no["comment"]) == (False, "rejected", "too much")
    assert side_effects[f"{rejected.id}:pay"] == 0
    assert (yes["approved"], yes["edited"], yes["data"]) == (
        True,
        True,
        {"order_id": "o-3", "amount": 5},
    )


async def test_approval_timeout_is_journaled(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([approval_wf])
    async with running_worker(engine):
        handle = await engine.trigger(approval_wf, {"order_id": "o-4", "amount": 5})
        result = await handle.result(timeout=10)
        with pytest.raises(ApprovalError, match="already ended"):
            await engine.approve(handle.id, "refund")
    assert (result["approved"], result["status"]) == (False, "timed_out")
    (wait,) = await engine.list_waitpoints(run_id=handle.id)
    assert wait.status == "timed_out"


async def test_approval_tokens_are_single_use_and_errors_are_clear(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([approval_wf])
    async with running_worker(engine):
        handle = await engine.trigger(approval_wf, {"order_id": "o-5", "amount": 3000})
        pending = await _pending(engine, handle.id)
        with pytest.raises(NotFoundError, match="pending approvals: refund"):
            await engine.approve(handle.id, "wrong-name")
        await engine.approve(token=pending.token, approver="alice")
        with pytest.raises(ApprovalError, match="already approved by alice"):
            await engine.approve(token=pending.token)
        await handle.result(timeout=10)
        with pytest.raises(ApprovalError, match="already ended with status completed"):
            await engine.reject(handle.id, "refund")
    with pytest.raises(NotFoundError):
        await engine.approve(token="tok_not-a-real-token")


approval_data = {"amount": 10}


@workflow(id="digest_bound")
async def digest_bound_wf(ctx: RunContext) -> bool:
    first = await ctx.wait_for_approval("first", data=dict(approval_data))
    await ctx.wait_for_approval("second")
    return first.approved


async def test_approval_is_bound_to_a_digest_of_its_data(
    make_engine: Callable[..., Engine],
) -> None:
    approval_data["amount"] = 10
    engine = make_engine([digest_bound_wf])
    async with running_worker(engine):
        handle = await engine.trigger(digest_bound_wf)
        await _pending(engine, handle.id)
        await engine.approve(handle.id, "first")
        await eventually(
            lambda: engine.list_waitpoints(run_id=handle.id, status="pending"), what="second"
        )
        approval_data["amount"] = 1_000_000  # replay would now ask about different data
        await engine.approve(handle.id, "second")
        run = await handle.wait(timeout=10)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["type"] == "NonDeterminismError"
    assert "different data" in run.error["message"]


@workflow(id="event_waiter")
async def event_waiter(ctx: RunContext, payload: dict[str, Any]) -> Any:
    event = await ctx.wait_for_event(
        "order.paid", match={"order_id": payload["order_id"]}, timeout=payload["timeout"]
    )
    return None if event is None else event.payload


async def test_event_resumes_only_matching_waits(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([event_waiter])
    async with running_worker(engine):
        a = await engine.trigger(event_waiter, {"order_id": "a", "timeout": 30})
        b = await engine.trigger(event_waiter, {"order_id": "b", "timeout": 30})
        for run_id in (a.id, b.id):
            await eventually(
                lambda run_id=run_id: engine.list_waitpoints(run_id=run_id, status="pending"),
                what="event wait",
            )
        sent = await engine.send_event("order.paid", {"order_id": "a", "total": 12}, id="evt-1")
        assert sent.resumed_runs == 1
        assert await a.result(timeout=10) == {"order_id": "a", "total": 12}
        again = await engine.send_event("order.paid", {"order_id": "b"}, id="evt-1")
        assert again.duplicate
        assert again.resumed_runs == 1
        assert (await engine.get_run(b.id)).status is RunStatus.WAITING
        await engine.send_event("order.shipped", {"order_id": "b"})
        await engine.send_event("order.paid", {"order_id": "b", "total": 3})
        assert await b.result(timeout=10) == {"order_id": "b", "total": 3}
    names = [e.name for e in await engine.list_events()]
    assert sorted(names) == ["order.paid", "order.paid", "order.shipped"]


async def test_event_wait_times_out(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([event_waiter])
    async with running_worker(engine):
        handle = await engine.trigger(event_waiter, {"order_id": "z", "timeout": 0.05})
        assert await handle.result(timeout=10) is None


class Item(BaseModel):
    n: int


@workflow(id="square")
async def square(ctx: RunContext, item: Item) -> Item:
    if item.n < 0:
        raise ValueError("negative")
    await ctx.step("count", effect, f"square:{ctx.parent_id}:{item.n}")
    return Item(n=item.n * item.n)


@workflow(id="parent")
async def parent_wf(ctx: RunContext, payload: dict[str, int]) -> dict[str, Any]:
    fire_and_forget = await ctx.trigger(square, {"n": 1})
    child = await ctx.trigger_and_wait(square, {"n": payload["n"]})
    assert isinstance(child, Item), "a child's output comes back typed"
    batch = await ctx.batch_trigger_and_wait(square, [{"n": 2}, {"n": 3}, {"n": -1}])
    try:
        await ctx.trigger_and_wait(square, {"n": -5})
        failed = None
    except ChildRunError as exc:
        failed = exc.status
    return {
        "child": child.n,
        "batch": [(r.status.value, r.output.n if r.ok else r.error["type"]) for r in batch],
        "failed": failed,
        "fire_and_forget": fire_and_forget,
    }


async def test_children_run_once_and_parents_wait_for_them(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([parent_wf, square])
    async with running_worker(engine, concurrency=4):
        handle = await engine.trigger(parent_wf, {"n": 4})
        result = await handle.result(timeout=20)
    assert result["child"] == 16
    assert result["batch"] == [
        ["completed", 4],
        ["completed", 9],
        ["failed", "ValueError"],
    ]
    assert result["failed"] == "failed"
    children = await engine.list_runs(parent_id=handle.id, limit=100)
    assert len(children) == 6, "each child is started exactly once despite the replays"
    fire = await engine.get_run(result["fire_and_forget"])
    assert fire.parent_id == handle.id
    for n in (1, 4, 2, 3):
        assert side_effects[f"square:{handle.id}:{n}"] == 1


@workflow(id="leaf")
async def leaf(ctx: RunContext, item: Item) -> int:
    return item.n


@workflow(id="fan_out")
async def fan_out(ctx: RunContext, payload: dict[str, int]) -> int:
    results = await ctx.batch_trigger_and_wait(leaf, [{"n": n} for n in range(payload["width"])])
    return sum(r.output for r in results)


async def test_batch_children_finishing_together_wake_the_parent(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([fan_out, leaf])
    async with running_worker(engine, concurrency=24):
        parents = [await engine.trigger(fan_out, {"width": 30}) for _ in range(4)]
        for parent in parents:
            assert await parent.result(timeout=30) == sum(range(30))


class OrderCreated(BaseModel):
    order_id: str
    total: int


order_log: list[str] = []


@workflow(id="bill_order", on_event="order.created")
async def bill_order(ctx: RunContext, order: OrderCreated) -> str:
    order_log.append(f"bill:{order.order_id}")
    return "billed"


@workflow(id="ship_order", on_event=["order.created", "order.retried"])
async def ship_order(ctx: RunContext, order: OrderCreated) -> str:
    order_log.append(f"ship:{order.order_id}")
    return "shipped"


@workflow(id="created_waiter")
async def created_waiter(ctx: RunContext, payload: dict[str, str]) -> Any:
    event = await ctx.wait_for_event("order.created", match={"order_id": payload["order_id"]})
    return None if event is None else event.payload


@workflow(id="audit_order", on_event="order.created")
async def audit_order(ctx: RunContext, payload: dict[str, list[str]]) -> None:
    order_log.append("audit")


async def test_an_event_starts_every_subscribed_workflow_and_resumes_matching_waits(
    make_engine: Callable[..., Engine],
) -> None:
    order_log.clear()
    engine = make_engine([bill_order, ship_order, audit_order, created_waiter])
    async with running_worker(engine):
        waiter = await engine.trigger(created_waiter, {"order_id": "o-9"})
        other = await engine.trigger(created_waiter, {"order_id": "o-1"})
        for run_id in (waiter.id, other.id):
            await eventually(
                lambda run_id=run_id: engine.list_waitpoints(run_id=run_id, status="pending"),
                what="event wait",
            )
        event = await engine.send_event("order.created", {"order_id": "o-9", "total": 5}, id="e1")
        assert (event.started_runs, event.resumed_runs) == (2, 1)
        assert [e["workflow"] for e in event.errors] == ["audit_order"]
        assert event.errors[0]["errors"][0]["field"] == "order_id"
        again = await engine.send_event("order.created", {"order_id": "o-9", "total": 5}, id="e1")
        assert again.duplicate
        assert await waiter.result(timeout=10) == {"order_id": "o-9", "total": 5}
        started = await eventually(
            lambda: _completed(engine, ["bill_order", "ship_order"]), what="subscribers"
        )
        assert (await engine.get_run(other.id)).status is RunStatus.WAITING
        await engine.cancel(other.id)
    assert sorted(order_log) == ["bill:o-9", "ship:o-9"]
    assert all(r.metadata["event_id"] == "e1" for r in started)
    (stored,) = await engine.list_events(name="order.created")
    assert stored.errors == event.errors


async def _completed(engine: Engine, workflows: list[str]) -> list[Any]:
    runs = [r for w in workflows for r in await engine.list_runs(workflow=w)]
    done = [r for r in runs if r.status is RunStatus.COMPLETED]
    return done if len(done) == len(workflows) else []
