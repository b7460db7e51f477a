"""Runs (read, list, cancel, replay, steps, logs) and their approvals."""

from __future__ import annotations

from typing import Any

from agentflow.models import ApprovalDecision, Run

from .errors import invalid
from .routing import Call, Operation, operation
from .schemas import (
    ApprovalList,
    ApprovalQuery,
    DecisionRequest,
    LogList,
    LogQuery,
    RunList,
    RunListQuery,
    StepList,
    TriggerResponse,
)

__all__ = ["OPERATIONS"]

OPERATIONS: list[Operation] = []


# -- cursors ----------------------------------------------------------------------------------


async def _page(call: Call, q: RunListQuery) -> RunList:
    page = await call.engine.page_runs(
        workflow=q.workflow, status=q.status, tag=q.tag, limit=q.limit, cursor=q.cursor
    )
    return RunList(items=page.items, next_cursor=page.next_cursor)


# -- runs -------------------------------------------------------------------------------------


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/runs",
    response=RunList,
    query=RunListQuery,
    errors=(422,),
    tags=("runs",),
)
async def list_runs(call: Call) -> RunList:
    """List runs, newest first, filtered by workflow, status and tag; page with ``cursor``."""
    return await _page(call, call.query)


@operation(OPERATIONS, "GET", "/api/v1/runs/{run_id}", response=Run, errors=(404,), tags=("runs",))
async def get_run(call: Call) -> Run:
    """Get a run: status, payload, output or error."""
    return await call.engine.get_run(call.path("run_id"))


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/runs/{run_id}/steps",
    response=StepList,
    errors=(404,),
    tags=("runs",),
)
async def get_steps(call: Call) -> StepList:
    """The run's journal: every step, wait and child run, in order."""
    run = await call.engine.get_run(call.path("run_id"))
    return StepList(items=await call.engine.get_steps(run.id))


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/runs/{run_id}/logs",
    response=LogList,
    query=LogQuery,
    errors=(404, 422),
    tags=("runs",),
)
async def get_logs(call: Call) -> LogList:
    """The run's log entries, oldest first; ``after`` (a log id) returns only newer ones."""
    run = await call.engine.get_run(call.path("run_id"))
    return LogList(items=await call.engine.get_logs(run.id, after_id=call.query.after))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/runs/{run_id}/cancel",
    response=Run,
    errors=(404, 409),
    tags=("runs",),
)
async def cancel_run(call: Call) -> Run:
    """Cancel a run and its unfinished children (executing ones stop at their next await)."""
    return await call.engine.cancel(call.path("run_id"))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/runs/{run_id}/replay",
    response=TriggerResponse,
    status=202,
    errors=(404, 422),
    tags=("runs",),
)
async def replay_run(call: Call) -> TriggerResponse:
    """Start a new run of the same workflow with the same payload and tags."""
    handle = await call.engine.replay(call.path("run_id"))
    return TriggerResponse(created=handle.created, run=await handle.get())


# -- approvals --------------------------------------------------------------------------------


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/approvals",
    response=ApprovalList,
    query=ApprovalQuery,
    errors=(422,),
    tags=("approvals",),
)
async def list_approvals(call: Call) -> ApprovalList:
    """Pending approvals, of every run or of one (``run_id``)."""
    return ApprovalList(items=await call.engine.pending_approvals(call.query.run_id))


async def _decide(call: Call, approved: bool, **target: str) -> ApprovalDecision:
    req: DecisionRequest = call.body
    if approved:
        extra: dict[str, Any] = {"data": req.data} if "data" in req.model_fields_set else {}
        return await call.engine.approve(
            **target, approver=req.approver, comment=req.comment, **extra
        )
    if "data" in req.model_fields_set:
        raise invalid([{"field": "data", "message": "only an approval can edit the data"}])
    return await call.engine.reject(**target, approver=req.approver, comment=req.comment)


_DECISION: dict[str, Any] = {
    "response": ApprovalDecision,
    "body": DecisionRequest,
    "body_required": False,
    "errors": (404, 409, 413, 422),
    "tags": ("approvals",),
}


@operation(OPERATIONS, "POST", "/api/v1/runs/{run_id}/approvals/{name}/approve", **_DECISION)
async def approve_by_name(call: Call) -> ApprovalDecision:
    """Approve a run's pending approval, named as in ``ctx.wait_for_approval``."""
    return await _decide(call, True, run_id=call.path("run_id"), name=call.path("name"))


@operation(OPERATIONS, "POST", "/api/v1/runs/{run_id}/approvals/{name}/reject", **_DECISION)
async def reject_by_name(call: Call) -> ApprovalDecision:
    """Reject a run's pending approval."""
    return await _decide(call, False, run_id=call.path("run_id"), name=call.path("name"))


@operation(OPERATIONS, "POST", "/api/v1/approvals/{token}/approve", **_DECISION)
async def approve_by_token(call: Call) -> ApprovalDecision:
    """Approve by the approval's single-use token."""
    return await _decide(call, True, token=call.path("token"))


@operation(OPERATIONS, "POST", "/api/v1/approvals/{token}/reject", **_DECISION)
async def reject_by_token(call: Call) -> ApprovalDecision:
    """Reject by the approval's single-use token."""
    return await _decide(call, False, token=call.path("token"))
