"""A customer refund that a human approves before money moves.

The workflow loads the order, scores the request, and (above a small amount) pauses on a
durable approval. An approver approves, rejects, or approves with an edited amount; after a
short cooling-off sleep the refund is issued through a payment gateway that times out once
per refund (the step retries it) and is told an idempotency key so that a retry can never pay
twice. Every step, wait and decision is a checkpoint: kill the process at any point and the
run resumes where it was.

Run it with the dev server and drive it from another shell::

    agentflow dev examples.refund_approval:engine
    agentflow trigger examples.refund_approval:engine refund_approval \\
        --payload '{"order_id": "ord_1001", "amount_cents": 4999, "reason": "arrived broken"}'
    agentflow approve examples.refund_approval:engine RUN_ID refund

or all in one process, approving automatically: ``python -m examples.refund_approval``.
No network and no API keys are needed: the order store, the gateway and the mailer are fakes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field, ValidationError

from agentflow import (
    ApprovalDecision,
    Engine,
    NonRetryableError,
    RetryPolicy,
    RunContext,
    RunFailedError,
    RunStatus,
    workflow,
)

__all__ = [
    "AUTO_APPROVE_LIMIT_CENTS",
    "ORDERS",
    "FlakyPaymentGateway",
    "GatewayTimeout",
    "Order",
    "RefundOutcome",
    "RefundProposal",
    "RefundReceipt",
    "RefundRequest",
    "engine",
    "outbox",
    "payment_gateway",
    "refund_approval",
]

# Refunds up to this amount with a low risk score are issued without asking anyone.
AUTO_APPROVE_LIMIT_CENTS = 2_000
THREE_DAYS = 3 * 24 * 3600.0


# -- models: the payload, the output and the step results ---------------------------------


class RefundRequest(BaseModel):
    """What a support agent (human or AI) submits."""

    order_id: str = Field(description="The order to refund, e.g. ord_1001.")
    amount_cents: int = Field(gt=0, description="Amount to refund, in cents.")
    reason: str = Field(min_length=1, description="Why the customer wants a refund.")
    cooling_off_seconds: float = Field(
        default=1.0, ge=0, description="Durable pause between approval and payment."
    )
    approval_timeout_seconds: float = Field(
        default=THREE_DAYS, gt=0, description="How long the approval may stay open."
    )


class Order(BaseModel):
    order_id: str
    customer_email: str
    total_cents: int
    items: list[str]


class RiskAssessment(BaseModel):
    score: float = Field(ge=0, le=1)
    reasons: list[str]
    needs_approval: bool


class RefundProposal(BaseModel):
    """The data an approver sees, and may edit (``amount_cents`` for a partial refund)."""

    order_id: str
    customer_email: str
    amount_cents: int = Field(gt=0)
    reason: str
    risk_score: float
    risk_reasons: list[str]


class RefundReceipt(BaseModel):
    transaction_id: str
    order_id: str
    amount_cents: int


class EmailReceipt(BaseModel):
    message_id: str
    to: str
    subject: str


class RefundOutcome(BaseModel):
    order_id: str
    status: Literal["refunded", "rejected", "expired"]
    requested_cents: int
    refunded_cents: int = 0
    transaction_id: str | None = None
    decided_by: str | None = Field(
        default=None, description="The approver, or 'auto' when no approval was needed."
    )
    comment: str | None = None
    notification_id: str | None = None


# -- the outside world (fakes: deterministic, in memory) ------------------------------------

ORDERS: dict[str, Order] = {
    order.order_id: order
    for order in [
        Order(
            order_id="ord_1001",
            customer_email="ada@example.com",
            total_cents=12_900,
            items=["espresso machine"],
        ),
        Order(
            order_id="ord_1002",
            customer_email="grace@example.com",
            total_cents=1_500,
            items=["descaling tablets"],
        ),
        Order(
            order_id="ord_1003",
            customer_email="alan@example.com",
            total_cents=54_000,
            items=["grinder", "espresso machine", "milk jug"],
        ),
    ]
}


class GatewayTimeout(Exception):
    """The payment gateway did not answer in time. Transient: worth retrying."""


class FlakyPaymentGateway:
    """Stands in for a payment provider's refund API.

    It times out on the first call for each idempotency key and succeeds on the next, so
    every run shows one step retry, deterministically. Like real providers it deduplicates
    by idempotency key: the same key never moves money twice.
    """

    def __init__(self, failures_per_key: int = 1) -> None:
        self.failures_per_key = failures_per_key
        self.calls: Counter[str] = Counter()
        self.refunds: dict[str, RefundReceipt] = {}

    async def refund(
        self, *, idempotency_key: str, order_id: str, amount_cents: int
    ) -> RefundReceipt:
        self.calls[idempotency_key] += 1
        if self.calls[idempotency_key] <= self.failures_per_key:
            raise GatewayTimeout(f"payment gateway timed out refunding {order_id}")
        receipt = self.refunds.get(idempotency_key)
        if receipt is None:
            txn = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
            receipt = RefundReceipt(
                transaction_id=f"txn_{txn}", order_id=order_id, amount_cents=amount_cents
            )
            self.refunds[idempotency_key] = receipt
        return receipt


payment_gateway = FlakyPaymentGateway()
outbox: list[EmailReceipt] = []


# -- steps ----------------------------------------------------------------------------------


async def load_order(order_id: str) -> Order:
    order = ORDERS.get(order_id)
    if order is None:
        # Retrying cannot make an unknown order appear: fail the run at once.
        raise NonRetryableError(f"no order {order_id!r}; known orders: {', '.join(ORDERS)}")
    return order


async def assess_risk(order: Order, request: RefundRequest) -> RiskAssessment:
    share = request.amount_cents / order.total_cents
    reasons = []
    if request.amount_cents > AUTO_APPROVE_LIMIT_CENTS:
        reasons.append(f"amount above the {AUTO_APPROVE_LIMIT_CENTS / 100:.2f} auto-approve limit")
    if share > 0.5:
        reasons.append(f"refund is {share:.0%} of the order")
    return RiskAssessment(
        score=round(min(share, 1.0), 2), reasons=reasons, needs_approval=bool(reasons)
    )


async def issue_refund(ctx: RunContext, order_id: str, amount_cents: int) -> RefundReceipt:
    # The key is the same on every retry and replay of this step, so the gateway pays once.
    ctx.log.info("calling payment gateway", order_id=order_id, amount_cents=amount_cents)
    return await payment_gateway.refund(
        idempotency_key=ctx.idempotency_key, order_id=order_id, amount_cents=amount_cents
    )


async def send_email(to: str, subject: str, body: str) -> EmailReceipt:
    receipt = EmailReceipt(message_id=f"msg_{len(outbox) + 1:05d}", to=to, subject=subject)
    outbox.append(receipt)
    return receipt


GATEWAY_RETRY = RetryPolicy(max_attempts=5, initial_delay=0.2, factor=2.0, max_delay=5.0)


# -- the workflow ---------------------------------------------------------------------------


@workflow(id="refund_approval", version="1", timeout=120)
async def refund_approval(ctx: RunContext, request: RefundRequest) -> RefundOutcome:
    """Refund part or all of an order. Refunds above 20.00, or above half the order, wait
    for a human approval named "refund"; the approver may edit amount_cents."""
    order: Order = await ctx.step("load_order", load_order, request.order_id)
    if request.amount_cents > order.total_cents:
        raise NonRetryableError(
            f"refund of {request.amount_cents} cents exceeds the order total of "
            f"{order.total_cents} cents"
        )
    risk: RiskAssessment = await ctx.step("assess_risk", assess_risk, order, request)
    proposal = RefundProposal(
        order_id=order.order_id,
        customer_email=order.customer_email,
        amount_cents=request.amount_cents,
        reason=request.reason,
        risk_score=risk.score,
        risk_reasons=risk.reasons,
    )
    outcome = RefundOutcome(
        order_id=order.order_id, status="refunded", requested_cents=request.amount_cents
    )

    if risk.needs_approval:
        ctx.log.info("waiting for approval", amount_cents=proposal.amount_cents, risk=risk.reasons)
        decision = await ctx.wait_for_approval(
            "refund", data=proposal, timeout=request.approval_timeout_seconds
        )
        if decision.status == "timed_out":
            ctx.log.warn("approval timed out; no refund issued")
            return outcome.model_copy(update={"status": "expired"})
        if not decision.approved:
            ctx.log.info("refund rejected", approver=decision.approver, comment=decision.comment)
            rejection: EmailReceipt = await ctx.step(
                "notify_rejection",
                send_email,
                order.customer_email,
                f"Your refund request for {order.order_id}",
                f"We could not approve this refund. {decision.comment or ''}".strip(),
            )
            return outcome.model_copy(
                update={
                    "status": "rejected",
                    "decided_by": decision.approver,
                    "comment": decision.comment,
                    "notification_id": rejection.message_id,
                }
            )
        proposal = _approved_proposal(proposal, order, decision)
        outcome = outcome.model_copy(
            update={"decided_by": decision.approver, "comment": decision.comment}
        )
        ctx.log.info(
            "refund approved", approver=decision.approver, amount_cents=proposal.amount_cents
        )
    else:
        outcome = outcome.model_copy(update={"decided_by": "auto"})
        ctx.log.info("refund approved automatically", amount_cents=proposal.amount_cents)

    # A durable pause: the run holds no worker while it sleeps, and can still be cancelled.
    await ctx.sleep(request.cooling_off_seconds)
    receipt: RefundReceipt = await ctx.step(
        "issue_refund",
        issue_refund,
        ctx,
        order.order_id,
        proposal.amount_cents,
        retry=GATEWAY_RETRY,
    )
    ctx.log.info("refund issued", transaction_id=receipt.transaction_id)
    notice: EmailReceipt = await ctx.step(
        "notify_customer",
        send_email,
        order.customer_email,
        f"Your refund for {order.order_id}",
        f"We refunded {receipt.amount_cents / 100:.2f} (transaction {receipt.transaction_id}).",
    )
    return outcome.model_copy(
        update={
            "refunded_cents": receipt.amount_cents,
            "transaction_id": receipt.transaction_id,
            "notification_id": notice.message_id,
        }
    )


def _approved_proposal(
    proposal: RefundProposal, order: Order, decision: ApprovalDecision
) -> RefundProposal:
    """The proposal as approved. An edit is validated like any input: it may change the
    amount (up to the order total) but not the order.

    Approvers may send only the fields they change, e.g. ``{"amount_cents": 2500}``.
    """
    if not decision.edited:
        return proposal
    if not isinstance(decision.data, dict):
        raise NonRetryableError("edited approval data must be a JSON object")
    try:
        edited = RefundProposal.model_validate({**proposal.model_dump(), **decision.data})
    except ValidationError as exc:
        raise NonRetryableError(f"edited approval data is not a valid refund: {exc}") from None
    if edited.order_id != order.order_id or edited.amount_cents > order.total_cents:
        raise NonRetryableError(
            f"an approver may change the amount up to the order total ({order.total_cents} "
            "cents), not the order"
        )
    return edited


engine = Engine(workflows=[refund_approval])


# -- `python -m examples.refund_approval`: the whole story in one process -------------------


async def demo(
    request: RefundRequest, *, reject: bool = False, edit: dict[str, Any] | None = None
) -> RefundOutcome:
    """Start a worker, trigger a run, print its progress, decide the approval, print the result.

    Raises:
        RunFailedError: the run failed (e.g. an unknown order).
    """
    async with engine, anyio.create_task_group() as tg:
        worker = await tg.start(engine.worker(poll_interval=0.1, sweep_interval=0.2).run)
        try:
            handle = await engine.trigger(refund_approval, request)
            print(f"triggered run {handle.id} (database {engine.database_url})")
            with anyio.fail_after(60):
                await _follow(handle.id, reject=reject, edit=edit)
            run = await handle.wait(timeout=10)
        finally:
            worker.stop()
    if run.status is not RunStatus.COMPLETED:
        raise RunFailedError(run.id, run.status.value, run.error)
    outcome = RefundOutcome.model_validate(run.output)
    print("result:")
    print(outcome.model_dump_json(indent=2))
    return outcome


async def _follow(run_id: str, *, reject: bool, edit: dict[str, Any] | None) -> None:
    """Print what the run does until it ends, answering its approval on the way."""
    status: RunStatus | None = None
    steps_seen = errors_seen = last_log = 0
    waits: dict[str, str] = {}
    while True:
        run = await engine.get_run(run_id)
        if run.status is not status:
            status = run.status
            print(f"  status: {status}")
        steps = await engine.get_steps(run_id)
        for step in steps[steps_seen:]:
            print(f"  step #{step.seq} {step.name}: {step.status} after {step.attempts} attempt(s)")
        steps_seen = len(steps)
        errors = await engine.get_errors(run_id)
        for error in errors[errors_seen:]:
            where = "the run" if error.step is None else f"step {error.step!r}"
            attempt = error.step_attempt or error.run_attempt
            print(f"  {where} failed (attempt {attempt}): {error.type}: {error.message}")
        errors_seen = len(errors)
        for wait in await engine.list_waitpoints(run_id=run_id):
            if waits.get(wait.id) != wait.status:
                waits[wait.id] = wait.status
                print(f"  wait #{wait.seq} {wait.kind} {wait.name!r}: {wait.status}")
        for entry in await engine.get_logs(run_id, after_id=last_log):
            print(f"  log [{entry.level}] {entry.message} {json.dumps(entry.fields)}")
            last_log = entry.id
        if status.is_terminal:
            return
        for approval in await engine.pending_approvals(run_id):
            print(f"  approval {approval.name!r} asks about: {json.dumps(approval.data)}")
            if reject:
                await engine.reject(run_id, approval.name, approver="demo", comment="not covered")
                print("  -> rejected by demo")
            elif edit is None:
                await engine.approve(run_id, approval.name, approver="demo", comment="looks fine")
                print("  -> approved by demo")
            else:
                # ``data`` replaces what was asked for; leaving it out approves it unchanged.
                await engine.approve(
                    run_id, approval.name, approver="demo", comment="partial refund", data=edit
                )
                print(f"  -> approved by demo, edited to {json.dumps(edit)}")
        await anyio.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.refund_approval",
        description="Run one refund end to end in this process, deciding the approval.",
    )
    parser.add_argument("--order", default="ord_1001", help="order id (default ord_1001)")
    parser.add_argument("--amount", type=int, default=4_999, help="amount in cents (4999)")
    parser.add_argument("--reject", action="store_true", help="reject instead of approving")
    parser.add_argument("--edit-amount", type=int, help="approve a different amount (cents)")
    parser.add_argument("--cooling-off", type=float, default=1.0, help="seconds (default 1)")
    args = parser.parse_args(argv)
    request = RefundRequest(
        order_id=args.order,
        amount_cents=args.amount,
        reason="The espresso machine arrived broken.",
        cooling_off_seconds=args.cooling_off,
    )
    edit = None if args.edit_amount is None else {"amount_cents": args.edit_amount}
    try:
        anyio.run(lambda: demo(request, reject=args.reject, edit=edit))
    except RunFailedError as exc:
        raise SystemExit(f"the run did not complete: {exc}") from None


if __name__ == "__main__":
    main()
