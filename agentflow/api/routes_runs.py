"""Runs (read, list, cancel, replay, steps, logs) and their approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from agentflow.models import ApprovalDecision, AttemptError, Run, WaitpointRecord
from agentflow.status import RunStatus, WaitpointStatus

from .errors import invalid
from .routing import Call, Operation, operation
from .schemas import (
    ApprovalList,
    ApprovalQuery,
    DecisionRequest,
    LogList,
    LogQuery,
    RequestModel,
    RunList,
    RunListQuery,
    StepList,
    TriggerResponse,
)

if TYPE_CHECKING:
    from agentflow.engine import Engine

    from .routes_hooks import CompletionRequest

__all__ = ["OPERATIONS"]

OPERATIONS: list[Operation] = []


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
    q: RunListQuery = call.query
    page = await call.engine.page_runs(
        workflow=q.workflow, status=q.status, tag=q.tag, limit=q.limit, cursor=q.cursor
    )
    return RunList(items=page.items, next_cursor=page.next_cursor)


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
    """The run's log entries, oldest first, a page at a time: ``after`` (the last id seen)
    returns only newer ones."""
    run = await call.engine.get_run(call.path("run_id"))
    q = call.query
    return LogList(items=await call.engine.get_logs(run.id, after_id=q.after, limit=q.limit))


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


async def resolve_approval(
    engine: Engine, approved: bool, req: DecisionRequest | CompletionRequest, **target: str
) -> ApprovalDecision:
    """Approve or reject the approval ``target`` names; ``data`` is passed only when sent."""
    if approved:
        extra: dict[str, Any] = {"data": req.data} if "data" in req.model_fields_set else {}
        return await engine.approve(**target, approver=req.approver, comment=req.comment, **extra)
    return await engine.reject(**target, approver=req.approver, comment=req.comment)


async def _decide(call: Call, approved: bool, **target: str) -> ApprovalDecision:
    req: DecisionRequest = call.body
    if not approved and "data" in req.model_fields_set:
        raise invalid([{"field": "data", "message": "only an approval can edit the data"}])
    return await resolve_approval(call.engine, approved, req, **target)


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


# -- errors, waitpoints, bulk and repair ------------------------------------------------------
# (Declared after the routes above, so their models live here rather than in ``schemas``.)


class ErrorList(BaseModel):
    items: list[AttemptError]


class WaitpointQuery(RequestModel):
    run_id: str | None = None
    kind: Literal["sleep", "approval", "event", "child"] | None = None
    status: WaitpointStatus | None = None


class WaitpointList(BaseModel):
    items: list[WaitpointRecord]


class RunFilterRequest(RequestModel):
    workflow: str | None = None
    status: list[RunStatus] = Field(default_factory=list, description="Any of these statuses.")
    tag: str | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None


class ReplayManyRequest(RunFilterRequest):
    limit: int = Field(1000, ge=1, le=10_000)


class CancelManyResponse(BaseModel):
    cancelled: list[str] = Field(description="Ids of the runs that matched and were cancelled.")


class ReplayManyResponse(BaseModel):
    started: list[str] = Field(description="Ids of the new runs, oldest source first.")


class ForkRequest(RequestModel):
    from_step: Annotated[int, Field(ge=1)] | Annotated[str, Field(min_length=1)] = Field(
        description="Journal position (1 or more) or step name: it and what follows run again."
    )


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/runs/{run_id}/errors",
    response=ErrorList,
    errors=(404,),
    tags=("runs",),
)
async def get_errors(call: Call) -> ErrorList:
    """Every failed attempt of the run and of its steps, oldest first, with tracebacks."""
    run = await call.engine.get_run(call.path("run_id"))
    return ErrorList(items=await call.engine.get_errors(run.id))


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/waitpoints",
    response=WaitpointList,
    query=WaitpointQuery,
    errors=(422,),
    tags=("runs",),
)
async def list_waitpoints(call: Call) -> WaitpointList:
    """Waitpoints (timers, approvals, events, child runs), filtered by run, kind and status."""
    q: WaitpointQuery = call.query
    items = await call.engine.list_waitpoints(
        run_id=q.run_id, kind=q.kind, status=None if q.status is None else q.status.value
    )
    return WaitpointList(items=items)


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/runs/cancel-many",
    response=CancelManyResponse,
    body=RunFilterRequest,
    errors=(413, 422),
    tags=("runs",),
)
async def cancel_many(call: Call) -> CancelManyResponse:
    """Cancel every unfinished run matching the filters, with their children."""
    req: RunFilterRequest = call.body
    ids = await call.engine.cancel_many(
        workflow=req.workflow,
        status=req.status or None,
        tag=req.tag,
        created_after=req.created_after,
        created_before=req.created_before,
    )
    return CancelManyResponse(cancelled=ids)


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/runs/replay-many",
    response=ReplayManyResponse,
    status=202,
    body=ReplayManyRequest,
    errors=(413, 422),
    tags=("runs",),
)
async def replay_many(call: Call) -> ReplayManyResponse:
    """Replay (as new runs) every run matching the filters, oldest first."""
    req: ReplayManyRequest = call.body
    handles = await call.engine.replay_many(
        workflow=req.workflow,
        status=req.status or None,
        tag=req.tag,
        created_after=req.created_after,
        created_before=req.created_before,
        limit=req.limit,
    )
    return ReplayManyResponse(started=[h.id for h in handles])


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/runs/{run_id}/fork",
    response=TriggerResponse,
    status=202,
    body=ForkRequest,
    errors=(404, 409, 413, 422),
    tags=("runs",),
)
async def fork_run(call: Call) -> TriggerResponse:
    """Resume a run as a new run from a step, keeping the journal before it."""
    req: ForkRequest = call.body
    handle = await call.engine.fork(call.path("run_id"), from_step=req.from_step)
    return TriggerResponse(created=handle.created, run=await handle.get())
