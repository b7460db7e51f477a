"""Public records returned by the engine: pydantic models, ready to serialise at the edges."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ._serde import loads
from .status import RunStatus

if TYPE_CHECKING:
    from .workflows import Workflow

__all__ = [
    "ApprovalDecision",
    "AttemptError",
    "ChildResult",
    "EventRecord",
    "LogEntry",
    "ReceivedEvent",
    "Run",
    "RunPage",
    "StepRecord",
    "StreamChunk",
    "WaitpointRecord",
    "WorkflowInfo",
]


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


# What a registered workflow takes and returns, as the HTTP API and the MCP server list it.
# (No docstring: it would become the schema's description in both published documents.)
class WorkflowInfo(_Record):
    id: str
    version: str
    description: str
    payload_schema: dict[str, Any]
    output_schema: dict[str, Any] | None

    @classmethod
    def of(cls, wf: Workflow[Any, Any]) -> WorkflowInfo:
        return cls(
            id=wf.id,
            version=wf.version,
            description=wf.description,
            payload_schema=wf.payload_schema(),
            output_schema=wf.output_schema(),
        )


class Run(_Record):
    id: str
    workflow_id: str
    workflow_version: str
    status: RunStatus
    payload: Any
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int
    priority: int
    queue: str
    tags: list[str]
    metadata: dict[str, Any]
    parent_id: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    available_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    concurrency_key: str | None = None
    expires_at: datetime | None = None
    schedule_id: str | None = None
    scheduled_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Run:
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            workflow_version=row["workflow_version"],
            status=RunStatus(row["status"]),
            payload=loads(row["payload"]),
            output=loads(row["output"]),
            error=loads(row["error"]),
            attempt=row["attempt"],
            priority=row["priority"],
            queue=row["queue"],
            tags=loads(row["tags"]),
            metadata=loads(row["run_metadata"]),
            parent_id=row["parent_id"],
            idempotency_key=row["idempotency_key"],
            created_at=_ts(row["created_at"]),
            updated_at=_ts(row["updated_at"]),
            available_at=_ts(row["available_at"]),
            started_at=_ts(row["started_at"]),
            finished_at=_ts(row["finished_at"]),
            cancel_requested=bool(row["cancel_requested"]),
            concurrency_key=row.get("concurrency_key"),
            expires_at=_ts(row.get("expires_at")),
            schedule_id=row.get("schedule_id"),
            scheduled_at=_ts(row.get("scheduled_at")),
        )

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


class RunPage(_Record):
    """One page of runs, newest first; pass ``next_cursor`` to get the next page."""

    items: list[Run]
    next_cursor: str | None


class StepRecord(_Record):
    run_id: str
    seq: int
    name: str
    kind: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    info: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StepRecord:
        return cls(
            run_id=row["run_id"],
            seq=row["seq"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            output=loads(row["output"]),
            error=loads(row["error"]),
            attempts=row["attempts"],
            started_at=_ts(row["started_at"]),
            finished_at=_ts(row["finished_at"]),
            duration_ms=(row["finished_at"] - row["started_at"]) * 1000,
            info=loads(row["info"]),
        )


class WaitpointRecord(_Record):
    id: str
    run_id: str
    seq: int
    kind: Literal["sleep", "approval", "event", "child"]
    name: str
    status: str
    target: str | None
    token: str | None
    data: Any = None
    digest: str | None
    timeout_at: datetime | None
    resolution: Any = None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WaitpointRecord:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            seq=row["seq"],
            kind=row["kind"],
            name=row["name"],
            status=row["status"],
            target=row["target"],
            token=row["token"],
            data=loads(row["data"]),
            digest=row["digest"],
            timeout_at=_ts(row["timeout_at"]),
            resolution=loads(row["resolution"]),
            created_at=_ts(row["created_at"]),
            resolved_at=_ts(row["resolved_at"]),
        )


class LogEntry(_Record):
    id: int
    run_id: str
    seq: int | None
    level: str
    message: str
    fields: dict[str, Any]
    ts: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> LogEntry:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            seq=row["seq"],
            level=row["level"],
            message=row["message"],
            fields=loads(row["fields"]),
            ts=_ts(row["ts"]),
        )


class StreamChunk(_Record):
    """A piece of a run's live output (see ``RunContext.publish``)."""

    id: int
    run_id: str
    stream: str
    data: str
    ts: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StreamChunk:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            stream=row["stream"],
            data=row["data"],
            ts=_ts(row["ts"]),
        )


class AttemptError(_Record):
    run_attempt: int
    seq: int | None
    step: str | None
    step_attempt: int | None
    type: str
    message: str
    traceback: str
    ts: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AttemptError:
        return cls(
            run_attempt=row["run_attempt"],
            seq=row["seq"],
            step=row["step"],
            step_attempt=row["step_attempt"],
            type=row["error_type"],
            message=row["message"],
            traceback=row["traceback"],
            ts=_ts(row["ts"]),
        )


class ApprovalDecision(_Record):
    """The outcome of ``ctx.wait_for_approval``; ``data`` is the approver's edit if any."""

    approved: bool
    status: Literal["approved", "rejected", "timed_out"]
    approver: str | None = None
    comment: str | None = None
    data: Any = None
    edited: bool = False
    digest: str | None = None
    decided_at: datetime | None = None


class ReceivedEvent(_Record):
    id: str
    name: str
    payload: Any
    received_at: datetime


class EventRecord(_Record):
    id: str
    name: str
    payload: Any
    created_at: datetime
    resumed_runs: int
    started_runs: int = 0
    errors: list[dict[str, Any]] = []
    duplicate: bool = False

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], *, duplicate: bool = False) -> EventRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            payload=loads(row["payload"]),
            created_at=_ts(row["created_at"]),
            resumed_runs=row["resumed_runs"],
            started_runs=row.get("started_runs") or 0,
            errors=loads(row.get("errors")) or [],
            duplicate=duplicate,
        )


class ChildResult(_Record):
    """One child's outcome in ``ctx.batch_trigger_and_wait``."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED
