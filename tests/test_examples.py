"""The refund example, end to end: approve, reject, edit, time out, and its command-line demo."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentflow import (
    ApprovalError,
    Engine,
    PayloadValidationError,
    RunFailedError,
    RunHandle,
    RunStatus,
    WaitpointRecord,
)
from examples.refund_approval import (
    RefundOutcome,
    RefundRequest,
    outbox,
    payment_gateway,
    refund_approval,
)

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def request(**changes: Any) -> RefundRequest:
    fields: dict[str, Any] = {
        "order_id": "ord_1001",
        "amount_cents": 4_999,
        "reason": "arrived broken",
        "cooling_off_seconds": 0.05,
    }
    return RefundRequest(**(fields | changes))


async def pending_approval(engine: Engine, handle: RunHandle[Any]) -> WaitpointRecord:
    approvals = await eventually(
        lambda: engine.pending_approvals(handle.id), what="the refund approval"
    )
    assert [a.name for a in approvals] == ["refund"]
    return approvals[0]


def new_gateway_calls(before: set[str]) -> dict[str, int]:
    return {key: n for key, n in payment_gateway.calls.items() if key not in before}


async def test_approved_refund_is_paid_once_despite_a_gateway_timeout(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_approval])
    before = set(payment_gateway.calls)
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request())
        approval = await pending_approval(engine, handle)
        assert approval.data["amount_cents"] == 4_999
        assert approval.data["customer_email"] == "ada@example.com"
        assert (await engine.get_run(handle.id)).status is RunStatus.WAITING

        decision = await engine.approve(handle.id, "refund", approver="lead", comment="ok")
        assert decision.approved
        assert not decision.edited
        assert decision.digest == approval.digest
        with pytest.raises(ApprovalError):  # single use
            await engine.approve(handle.id, "refund", approver="someone else")
        outcome = await handle.result(timeout=10)

    assert outcome.status == "refunded"
    assert outcome.refunded_cents == outcome.requested_cents == 4_999
    assert (outcome.decided_by, outcome.comment) == ("lead", "ok")
    assert outcome.transaction_id is not None

    # Both attempts of the payment step used one idempotency key: the gateway paid once.
    calls = new_gateway_calls(before)
    assert list(calls.values()) == [2]
    [key] = calls
    assert payment_gateway.refunds[key].transaction_id == outcome.transaction_id

    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.name, s.attempts) for s in steps] == [
        (1, "load_order", 1),
        (2, "assess_risk", 1),
        (5, "issue_refund", 2),
        (6, "notify_customer", 1),
    ]
    errors = await engine.get_errors(handle.id)
    assert [(e.step, e.step_attempt, e.type) for e in errors] == [
        ("issue_refund", 1, "GatewayTimeout")
    ]
    waits = await engine.list_waitpoints(run_id=handle.id)
    assert [(w.seq, w.kind, w.status) for w in waits] == [
        (3, "approval", "approved"),
        (4, "sleep", "completed"),
    ]
    # Replays after the approval and the sleep do not write earlier logs again.
    logs = await engine.get_logs(handle.id)
    assert [entry.message for entry in logs] == [
        "waiting for approval",
        "refund approved",
        "calling payment gateway",
        "calling payment gateway",
        "refund issued",
    ]


async def test_rejected_refund_moves_no_money_and_tells_the_customer(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_approval])
    before = set(payment_gateway.calls)
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request())
        await pending_approval(engine, handle)
        decision = await engine.reject(
            handle.id, "refund", approver="lead", comment="outside the return window"
        )
        assert decision.status == "rejected"
        outcome = await handle.result(timeout=10)

    assert outcome == RefundOutcome(
        order_id="ord_1001",
        status="rejected",
        requested_cents=4_999,
        decided_by="lead",
        comment="outside the return window",
        notification_id=outcome.notification_id,
    )
    assert new_gateway_calls(before) == {}
    steps = await engine.get_steps(handle.id)
    assert [s.name for s in steps] == ["load_order", "assess_risk", "notify_rejection"]
    [email] = [m for m in outbox if m.message_id == outcome.notification_id]
    assert email.to == "ada@example.com"


async def test_approver_edit_changes_the_amount_refunded(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_approval])
    before = set(payment_gateway.calls)
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request())
        await pending_approval(engine, handle)
        decision = await engine.approve(
            handle.id, "refund", approver="lead", data={"amount_cents": 2_500}
        )
        assert decision.edited
        assert decision.data == {"amount_cents": 2_500}
        outcome = await handle.result(timeout=10)

    assert outcome.status == "refunded"
    assert (outcome.requested_cents, outcome.refunded_cents) == (4_999, 2_500)
    [key] = new_gateway_calls(before)
    assert payment_gateway.refunds[key].amount_cents == 2_500


async def test_an_invalid_edit_fails_the_run_without_paying(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_approval])
    before = set(payment_gateway.calls)
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request())
        await pending_approval(engine, handle)
        await engine.approve(handle.id, "refund", data={"amount_cents": 1_000_000})
        with pytest.raises(RunFailedError) as failed:
            await handle.result(timeout=10)

    assert failed.value.status == "failed"
    assert failed.value.error is not None
    assert failed.value.error["type"] == "NonRetryableError"
    assert new_gateway_calls(before) == {}


async def test_small_refund_is_approved_automatically(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_approval])
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request(amount_cents=1_000))
        outcome = await handle.result(timeout=10)

    assert (outcome.status, outcome.decided_by, outcome.refunded_cents) == (
        "refunded",
        "auto",
        1_000,
    )
    assert await engine.list_waitpoints(run_id=handle.id, kind="approval") == []


async def test_unanswered_approval_expires(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_approval])
    before = set(payment_gateway.calls)
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request(approval_timeout_seconds=0.2))
        outcome = await handle.result(timeout=10)

    assert (outcome.status, outcome.refunded_cents) == ("expired", 0)
    [approval] = await engine.list_waitpoints(run_id=handle.id, kind="approval")
    assert approval.status == "timed_out"
    assert new_gateway_calls(before) == {}
    with pytest.raises(ApprovalError):  # the run has ended
        await engine.approve(handle.id, "refund")


async def test_approval_survives_a_restart(make_engine: Callable[..., Engine]) -> None:
    first = make_engine([refund_approval])
    async with running_worker(first):
        handle = await first.trigger(refund_approval, request())
        await pending_approval(first, handle)
    # A new engine (a new process, days later) approves and finishes the same run.
    second = make_engine([refund_approval])
    await second.approve(handle.id, "refund", approver="night shift")
    async with running_worker(second):
        run = await second.wait(handle.id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert RefundOutcome.model_validate(run.output).decided_by == "night shift"
    steps = await second.get_steps(handle.id)
    assert [s.name for s in steps] == [
        "load_order",
        "assess_risk",
        "issue_refund",
        "notify_customer",
    ]


async def test_unknown_order_fails_at_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_approval])
    async with running_worker(engine):
        handle = await engine.trigger(refund_approval, request(order_id="ord_404"))
        with pytest.raises(RunFailedError):
            await handle.result(timeout=10)

    [step] = await engine.get_steps(handle.id)
    assert (step.name, step.status, step.attempts) == ("load_order", "failed", 1)
    assert step.error is not None
    assert step.error["type"] == "NonRetryableError"


async def test_invalid_payload_names_the_field(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_approval])
    with pytest.raises(PayloadValidationError) as invalid:
        await engine.trigger(refund_approval, {"order_id": "ord_1001", "amount_cents": 0})
    assert invalid.value.fields == ["amount_cents", "reason"]


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "examples.refund_approval"], cwd=ROOT, env=env, check=False
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "approval 'refund'" in out
    assert "GatewayTimeout" in out
    result = RefundOutcome.model_validate_json(out.split("result:", 1)[1])
    assert (result.status, result.refunded_cents, result.decided_by) == ("refunded", 4_999, "demo")
    assert (tmp_path / "demo.db").exists()
