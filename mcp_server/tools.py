"""The operation tools: each one translates to Engine calls, like the HTTP API's routes."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import anyio
from mcp_types import ToolAnnotations

from agentflow import models
from agentflow.models import ApprovalDecision, EventRecord, Run
from agentflow.status import RunStatus

from .queries import approvals_of, log_page
from .registry import READ, ToolFailure, ToolSpec, typed_tool
from .schemas import (
    ApproveInput,
    GetRunInput,
    ListRunsInput,
    LogList,
    LogsInput,
    NoInput,
    PendingApproval,
    RejectInput,
    RunDetail,
    RunIdInput,
    RunList,
    RunSummary,
    SendEventInput,
    TriggerInput,
    TriggerResult,
    WorkflowInfo,
    WorkflowList,
)

if TYPE_CHECKING:
    from agentflow.engine import Engine, RunHandle

__all__ = ["TOOL_NAMES", "operation_tools", "pending_approvals", "settle"]

TOOL_NAMES = frozenset(
    {
        "list_workflows",
        "trigger_workflow",
        "get_run",
        "list_runs",
        "get_run_logs",
        "approve_run",
        "reject_run",
        "cancel_run",
        "send_event",
    }
)
"""The built-in tools' names: a workflow of the same id cannot have a tool of its own."""

_WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
_CANCEL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
_DECIDE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


async def pending_approvals(engine: Engine, run_id: str) -> list[PendingApproval]:
    """What holds the run up: its pending approvals and those of the child runs it waits for
    (each names its run: answer it there)."""
    return [PendingApproval.of(wp) for wp in await approvals_of(engine, run_id)]


async def settle(engine: Engine, run_id: str, timeout: float) -> Run:
    """The run once it ended or paused, or as it is after ``timeout`` seconds.

    A paused run (waiting for an approval, an event, a timer) will not move on its own soon,
    so there is no point in holding the caller. The run may be executed by a worker in another
    process: there is nothing to wait on but the database, polled with a growing interval.
    """
    run = await engine.get_run(run_id)
    delay = 0.01
    with anyio.move_on_after(timeout):
        while not (run.status.is_terminal or run.status is RunStatus.WAITING):
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
            run = await engine.get_run(run_id)
    return run


async def _approval_name(engine: Engine, run_id: str, name: str | None) -> str:
    if name is not None:
        return name
    names = sorted({wp.name for wp in await engine.pending_approvals(run_id)})
    if len(names) == 1:
        return names[0]
    if not names:
        await engine.get_run(run_id)  # an unknown run says so
        raise ToolFailure("not_found", f"run {run_id} has no pending approval", {"run_id": run_id})
    raise ToolFailure(
        "ambiguous_approval",
        f"run {run_id} waits for several approvals; pass name (one of: {', '.join(names)})",
        {"run_id": run_id, "pending": names},
    )


async def _target(engine: Engine, args: RejectInput | ApproveInput) -> dict[str, Any]:
    if args.token is not None:
        return {"token": args.token}
    if args.run_id is None:
        raise ToolFailure(
            "invalid_arguments",
            "name the approval: run_id (and name, if the run waits for several) or token",
            {"errors": [{"field": "run_id", "message": "run_id or token is required"}]},
        )
    return {"run_id": args.run_id, "name": await _approval_name(engine, args.run_id, args.name)}


def operation_tools(engine: Engine, *, workflow_tools: Collection[str] = ()) -> list[ToolSpec]:
    """The built-in tools; ``workflow_tools`` names the workflows that have their own tool."""

    async def trigger_workflow(args: TriggerInput) -> TriggerResult:
        handle: RunHandle[Any] = await engine.trigger(
            args.workflow,
            args.payload,
            idempotency_key=args.idempotency_key,
            tags=args.tags,
            delay=args.delay,
        )
        run = await settle(engine, handle.id, args.wait_seconds)
        waiting = run.status is RunStatus.WAITING
        approvals = await pending_approvals(engine, run.id) if waiting else []
        return TriggerResult(created=handle.created, run=run, pending_approvals=approvals)

    async def get_run(args: GetRunInput) -> RunDetail:
        run = await engine.get_run(args.run_id)
        steps = await engine.get_steps(run.id) if args.include_steps else None
        return RunDetail(
            run=run, pending_approvals=await pending_approvals(engine, run.id), steps=steps
        )

    async def list_runs(args: ListRunsInput) -> RunList:
        page = await engine.page_runs(
            workflow=args.workflow,
            status=args.status,
            tag=args.tag,
            limit=args.limit,
            cursor=args.cursor,
        )
        return RunList(items=[RunSummary.of(r) for r in page.items], next_cursor=page.next_cursor)

    async def list_workflows(args: NoInput) -> WorkflowList:
        # As the HTTP API's GET /api/v1/workflows, plus ``tool``.
        items = [
            WorkflowInfo(
                **models.WorkflowInfo.of(wf).model_dump(),
                tool=wf.id if wf.id in workflow_tools else None,
            )
            for wf in sorted(engine.workflows.values(), key=lambda wf: wf.id)
        ]
        return WorkflowList(items=items)

    async def approve_run(args: ApproveInput) -> ApprovalDecision:
        target = await _target(engine, args)
        extra: dict[str, Any] = {"data": args.data} if "data" in args.model_fields_set else {}
        return await engine.approve(**target, approver=args.approver, comment=args.comment, **extra)

    async def reject_run(args: RejectInput) -> ApprovalDecision:
        target = await _target(engine, args)
        return await engine.reject(**target, approver=args.approver, comment=args.comment)

    async def cancel_run(args: RunIdInput) -> Run:
        return await engine.cancel(args.run_id)

    async def send_event(args: SendEventInput) -> EventRecord:
        return await engine.send_event(args.name, args.payload, id=args.id)

    async def get_run_logs(args: LogsInput) -> LogList:
        run = await engine.get_run(args.run_id)
        items, more = await log_page(engine, run.id, after_id=args.after_id, limit=args.limit)
        return LogList(items=items, next_after_id=items[-1].id if more else None)

    return [
        typed_tool(
            "list_workflows",
            "List the workflows this server can run: ids, descriptions, and the JSON schema "
            "of each one's payload (the input trigger_workflow expects) and output.",
            NoInput,
            WorkflowList,
            READ,
            list_workflows,
        ),
        typed_tool(
            "trigger_workflow",
            "Start a durable run of a workflow with a payload matching its payload_schema. "
            "Returns the run at once (or after wait_seconds, if it finished or paused sooner); "
            "follow it with get_run. A run waiting for approval lists pending_approvals.",
            TriggerInput,
            TriggerResult,
            _WRITE,
            trigger_workflow,
        ),
        typed_tool(
            "get_run",
            "Get a run: status, payload, output or error, and the approvals it waits for.",
            GetRunInput,
            RunDetail,
            READ,
            get_run,
        ),
        typed_tool(
            "list_runs",
            "List runs, newest first, filtered by workflow, status and tag; page with cursor.",
            ListRunsInput,
            RunList,
            READ,
            list_runs,
        ),
        typed_tool(
            "get_run_logs",
            "A run's log entries, oldest first, up to limit (at most 1000) at a time: "
            "after_id returns only newer ones; next_after_id is set when more follow.",
            LogsInput,
            LogList,
            READ,
            get_run_logs,
        ),
        typed_tool(
            "approve_run",
            "Approve a run's pending approval, by run_id (and name, if it waits for several) "
            "or by token. data replaces the data the run asked to have approved.",
            ApproveInput,
            ApprovalDecision,
            _DECIDE,
            approve_run,
        ),
        typed_tool(
            "reject_run",
            "Reject a run's pending approval, by run_id (and name) or by token.",
            RejectInput,
            ApprovalDecision,
            _DECIDE,
            reject_run,
        ),
        typed_tool(
            "cancel_run",
            "Cancel a run and its unfinished child runs.",
            RunIdInput,
            Run,
            _CANCEL,
            cancel_run,
        ),
        typed_tool(
            "send_event",
            "Send an event: starts the workflows subscribed to it and resumes the runs "
            "waiting for it whose filter matches.",
            SendEventInput,
            EventRecord,
            _WRITE,
            send_event,
        ),
    ]
