"""Request and response bodies of the HTTP API.

The routes validate with these models and the OpenAPI document is built from their JSON
schemas, so the two cannot drift apart. Records (runs, steps, ...) are the engine's own models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.models import LogEntry, Run, StepRecord, WaitpointRecord
from agentflow.status import RunStatus

__all__ = [
    "ApprovalList",
    "ApprovalQuery",
    "DecisionRequest",
    "ErrorBody",
    "ErrorDetail",
    "EventRequest",
    "Health",
    "LogList",
    "LogQuery",
    "RunList",
    "RunListQuery",
    "StepList",
    "TriggerRequest",
    "TriggerResponse",
    "WorkflowInfo",
    "WorkflowList",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerRequest(_Request):
    payload: Any = Field(None, description="The workflow's payload; validated by its model.")
    idempotency_key: str | None = Field(
        None, description="A second trigger with the same key returns the first run."
    )
    delay: float | None = Field(None, ge=0, description="Seconds to wait before the run starts.")
    tags: list[str] = Field(default_factory=list)
    priority: int | None = None
    concurrency_key: str | None = None


class DecisionRequest(_Request):
    approver: str | None = None
    comment: str | None = None
    data: Any = Field(
        None, description="Approve only: replaces the data the run asked to have approved."
    )


class EventRequest(_Request):
    name: str = Field(min_length=1)
    payload: Any = None
    id: str | None = Field(None, description="Re-sending an event id changes nothing.")


class RunListQuery(_Request):
    workflow: str | None = None
    status: RunStatus | None = None
    tag: str | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, description="next_cursor of the previous page.")


class LogQuery(_Request):
    after: int = Field(0, ge=0, description="Only log entries with an id above this one.")


class ApprovalQuery(_Request):
    run_id: str | None = None


class WorkflowInfo(BaseModel):
    id: str
    version: str
    description: str
    payload_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


class WorkflowList(BaseModel):
    items: list[WorkflowInfo]


class TriggerResponse(BaseModel):
    created: bool = Field(description="False when an idempotency key matched an existing run.")
    run: Run


class RunList(BaseModel):
    items: list[Run]
    next_cursor: str | None


class StepList(BaseModel):
    items: list[StepRecord]


class LogList(BaseModel):
    items: list[LogEntry]


class ApprovalList(BaseModel):
    items: list[WaitpointRecord]


class Health(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail
