"""Inputs and outputs of the MCP tools: their JSON schemas are what clients see.

Records (runs, steps, log entries, decisions, events) are the engine's own models, so the MCP
server, the HTTP API and the Python API describe a run the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow import models
from agentflow.limits import KEY_LENGTH, MAX_DELAY, MAX_ID
from agentflow.models import LogEntry, Run, StepRecord, WaitpointRecord
from agentflow.status import RunStatus

__all__ = [
    "MAX_ID",
    "MAX_LOGS",
    "MAX_WAIT_SECONDS",
    "ApproveInput",
    "GetRunInput",
    "LogList",
    "LogsInput",
    "PendingApproval",
    "RejectInput",
    "RunDetail",
    "RunIdInput",
    "RunList",
    "RunSummary",
    "SendEventInput",
    "TriggerInput",
    "TriggerResult",
    "WorkflowInfo",
    "WorkflowList",
    "WorkflowRunResult",
]

MAX_WAIT_SECONDS = 60.0
"""The longest a tool call waits for a run: agents should poll ``get_run`` beyond that."""

MAX_LOGS = 1000
"""The most log entries one answer carries (get_run_logs pages with after_id)."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoInput(_Input):
    pass


class TriggerInput(_Input):
    workflow: str = Field(
        max_length=KEY_LENGTH, description="The workflow id (see list_workflows)."
    )
    payload: Any = Field(None, description="The workflow's payload; must match its payload_schema.")
    idempotency_key: str | None = Field(
        None,
        max_length=KEY_LENGTH,
        description="A second trigger with the same key returns the first run.",
    )
    tags: list[Annotated[str, Field(max_length=KEY_LENGTH)]] = Field(
        default_factory=list, max_length=100
    )
    delay: float | None = Field(
        None,
        ge=0,
        le=MAX_DELAY,
        allow_inf_nan=False,
        description="Seconds to wait before the run starts (at most 100 years).",
    )
    wait_seconds: float = Field(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Wait up to this long for the run to finish or pause before answering.",
    )


class RunIdInput(_Input):
    run_id: str = Field(description="The run's id (run_...).")


class GetRunInput(RunIdInput):
    include_steps: bool = Field(False, description="Also return the run's journal of steps.")


class ListRunsInput(_Input):
    workflow: str | None = Field(None, description="Only runs of this workflow.")
    status: RunStatus | None = Field(None, description="Only runs in this status.")
    tag: str | None = Field(None, description="Only runs with this tag.")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, description="next_cursor of the previous page.")


class _DecisionInput(_Input):
    run_id: str | None = Field(None, description="The waiting run (with name), or use token.")
    name: str | None = Field(
        None, description="The approval's name; optional when the run waits for just one."
    )
    token: str | None = Field(None, description="The approval's single-use token (tok_...).")
    approver: str | None = Field(
        None, max_length=KEY_LENGTH, description="Who decides; recorded with the decision."
    )
    comment: str | None = Field(None, max_length=10_000)


class ApproveInput(_DecisionInput):
    data: Any = Field(
        None, description="Replaces the data the run asked to have approved (an edit)."
    )


class RejectInput(_DecisionInput):
    pass


class SendEventInput(_Input):
    name: str = Field(
        min_length=1, max_length=KEY_LENGTH, description="The event name runs wait for or start on."
    )
    payload: Any = None
    id: str | None = Field(
        None, max_length=KEY_LENGTH, description="Re-sending an event id changes nothing."
    )


class LogsInput(RunIdInput):
    after_id: int = Field(
        0,
        ge=0,
        lt=MAX_ID,
        description="Only entries with an id above this one (next_after_id of the last page).",
    )
    limit: int = Field(200, ge=1, le=MAX_LOGS)


class PendingApproval(BaseModel):
    """An approval a run waits for: answer it with approve_run or reject_run."""

    run_id: str
    name: str
    token: str | None
    data: Any = None
    created_at: datetime
    timeout_at: datetime | None

    @classmethod
    def of(cls, wp: WaitpointRecord) -> PendingApproval:
        return cls.model_validate(wp, from_attributes=True)


class TriggerResult(BaseModel):
    created: bool = Field(description="False when an idempotency key matched an existing run.")
    run: Run
    pending_approvals: list[PendingApproval] = Field(default_factory=list)


class RunDetail(BaseModel):
    run: Run
    pending_approvals: list[PendingApproval]
    steps: list[StepRecord] | None = None


class RunSummary(BaseModel):
    id: str
    workflow_id: str
    status: RunStatus
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None = None

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls.model_validate(run, from_attributes=True)


class RunList(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None


class WorkflowInfo(models.WorkflowInfo):
    tool: str | None = Field(description="The tool that runs this workflow directly, if any.")


class WorkflowList(BaseModel):
    items: list[WorkflowInfo]


class LogList(BaseModel):
    items: list[LogEntry]
    next_after_id: int | None = Field(
        None, description="More entries follow: pass this as after_id to get them."
    )
    truncated: bool = Field(
        False, description="Older entries were left out (get_run_logs pages through all)."
    )


class WorkflowRunResult(BaseModel):
    """What a workflow tool answers: the output if the run finished, else where it stands."""

    run_id: str
    workflow: str
    status: RunStatus
    finished: bool
    output: Any = None
    error: dict[str, Any] | None = None
    pending_approvals: list[PendingApproval] = Field(default_factory=list)
    message: str
