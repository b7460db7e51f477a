"""Workflows and the operations that start runs: list, trigger, send an event."""

from __future__ import annotations

from typing import Any

from agentflow.engine import RunHandle
from agentflow.models import EventRecord, WorkflowInfo

from .routing import Call, Operation, operation
from .schemas import EventRequest, TriggerRequest, TriggerResponse, WorkflowList

__all__ = ["OPERATIONS"]

OPERATIONS: list[Operation] = []


@operation(OPERATIONS, "GET", "/api/v1/workflows", response=WorkflowList, tags=("workflows",))
async def list_workflows(call: Call) -> WorkflowList:
    """List the registered workflows with their payload and output JSON schemas."""
    workflows = call.engine.workflows
    return WorkflowList(items=[WorkflowInfo.of(wf) for _, wf in sorted(workflows.items())])


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/workflows/{workflow_id}/trigger",
    response=TriggerResponse,
    status=202,
    body=TriggerRequest,
    body_required=False,
    errors=(404, 413, 422),
    tags=("workflows",),
)
async def trigger(call: Call) -> TriggerResponse:
    """Start a run of a workflow (or return the existing one for a repeated idempotency key)."""
    req: TriggerRequest = call.body
    handle: RunHandle[Any] = await call.engine.trigger(
        call.path("workflow_id"),
        req.payload,
        idempotency_key=req.idempotency_key,
        delay=req.delay,
        tags=req.tags,
        priority=req.priority,
        concurrency_key=req.concurrency_key,
    )
    return TriggerResponse(created=handle.created, run=await handle.get())


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/events",
    response=EventRecord,
    status=202,
    body=EventRequest,
    errors=(413, 422),
    tags=("events",),
)
async def send_event(call: Call) -> EventRecord:
    """Send an event: resume the runs waiting for it and start its subscribed workflows."""
    req: EventRequest = call.body
    return await call.engine.send_event(req.name, req.payload, id=req.id)
