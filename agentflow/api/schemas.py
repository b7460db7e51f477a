"""Request and response bodies of the HTTP API.

The routes validate with these models and the OpenAPI document is built from their JSON
schemas, so the two cannot drift apart. Records (runs, steps, ...) are the engine's own models.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.limits import KEY_LENGTH, MAX_DELAY, MAX_ID, MAX_PRIORITY
from agentflow.models import LogEntry, Run, StepRecord, WaitpointRecord, WorkflowInfo
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
    "RequestModel",
    "RunList",
    "RunListQuery",
    "StepList",
    "TriggerRequest",
    "TriggerResponse",
    "WorkflowInfo",
    "WorkflowList",
]


class RequestModel(BaseModel):
    """A request body or query: unknown fields are refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


class TriggerRequest(RequestModel):
    payload: Any = Field(None, description="The workflow's payload; validated by its model.")
    idempotency_key: str | None = Field(
        None,
        max_length=KEY_LENGTH,
        description="A second trigger with the same key returns the first run.",
    )
    delay: float | None = Field(
        None,
        ge=0,
        le=MAX_DELAY,
        allow_inf_nan=False,
        description="Seconds to wait before the run starts.",
    )
    tags: list[Annotated[str, Field(max_length=KEY_LENGTH)]] = Field(
        default_factory=list, max_length=100
    )
    priority: int | None = Field(None, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    concurrency_key: str | None = Field(None, max_length=KEY_LENGTH)


class DecisionRequest(RequestModel):
    approver: str | None = Field(None, max_length=KEY_LENGTH)
    comment: str | None = Field(None, max_length=10_000)
    data: Any = Field(
        None, description="Approve only: replaces the data the run asked to have approved."
    )


class EventRequest(RequestModel):
    name: str = Field(min_length=1, max_length=KEY_LENGTH)
    payload: Any = None
    id: str | None = Field(
        None, max_length=KEY_LENGTH, description="Re-sending an event id changes nothing."
    )


class RunListQuery(RequestModel):
    workflow: str | None = None
    status: RunStatus | None = None
    tag: str | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, description="next_cursor of the previous page.")


class LogQuery(RequestModel):
    after: int = Field(
        0, ge=0, le=MAX_ID, description="Only log entries with an id above this one."
    )
    limit: int = Field(
        1000, ge=1, le=1000, description="At most this many; page on with the last id."
    )


class ApprovalQuery(RequestModel):
    run_id: str | None = None


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
