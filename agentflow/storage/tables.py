"""SQLModel table definitions: the schema every store and migration is written against.

Times are Unix seconds (float) so that SQLite and Postgres compare and index them alike;
JSON values are text encoded by agentflow itself.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ..status import RunStatus

__all__ = [
    "CLAIM_INDEX",
    "CLAIM_RANK_SQL",
    "DELAYED_INDEX",
    "DELAYED_SQL",
    "QUEUED_SQL",
    "ApiKeyRow",
    "AttemptErrorRow",
    "EventRow",
    "LogRow",
    "RunRow",
    "ScheduleRow",
    "SettingRow",
    "StepRow",
    "StreamChunkRow",
    "WaitpointRow",
    "WebhookSourceRow",
    "api_keys",
    "attempt_errors",
    "events",
    "logs",
    "metadata",
    "runs",
    "schedules",
    "settings",
    "steps",
    "stream_chunks",
    "waitpoints",
    "webhook_sources",
]


QUEUED_SQL = f"status = '{RunStatus.QUEUED.value}'"
"""The runs a worker claims from: queued runs are all due (a run queued for later is
``delayed`` until a claim finds it due and queues it). The predicate of the claim index; the
claim query repeats it literally, so that SQLite and Postgres both see the index applies."""

DELAYED_SQL = f"status = '{RunStatus.DELAYED.value}'"
"""Runs waiting for their time: indexed by ``available_at`` to find the due ones."""

CLAIM_INDEX = "ix_agentflow_runs_claim_rank"
"""Queued runs in claim order (a partial index on ``CLAIM_RANK_SQL``)."""

DELAYED_INDEX = "ix_agentflow_runs_delayed"
"""Delayed runs by the time they are due (a partial index on ``available_at``)."""

CLAIM_RANK_SQL = "available_at - priority * priority_aging"
"""Claim order, earliest first: a run ranks as if it had been queued ``priority_aging``
seconds earlier per priority level. Waiting ``priority_aging`` seconds is thus worth one
level, and the order never changes with time, so an index serves it at any queue depth."""


class RunRow(SQLModel, table=True):
    __tablename__ = "agentflow_runs"
    __table_args__ = (
        sa.Index("ix_agentflow_runs_workflow", "workflow_id", "created_at"),
        sa.Index("ix_agentflow_runs_created", "created_at"),
        sa.Index("ix_agentflow_runs_parent", "parent_id"),
        sa.Index("ix_agentflow_runs_worker", "worker_id"),
        sa.Index("ux_agentflow_runs_idempotency", "workflow_id", "idempotency_key", unique=True),
        sa.Index("ix_agentflow_runs_key", "concurrency_key", "status"),
        sa.Index("ix_agentflow_runs_queue_started", "queue", "started_at"),
        sa.Index("ix_agentflow_runs_expiry", "status", "expires_at"),
        sa.Index("ix_agentflow_runs_updated", "updated_at"),
        sa.Index(
            CLAIM_INDEX,
            "claim_rank",
            "available_at",
            postgresql_where=sa.text(QUEUED_SQL),
            sqlite_where=sa.text(QUEUED_SQL),
        ),
        sa.Index(
            DELAYED_INDEX,
            "available_at",
            postgresql_where=sa.text(DELAYED_SQL),
            sqlite_where=sa.text(DELAYED_SQL),
        ),
    )

    id: str = Field(primary_key=True, max_length=64)
    workflow_id: str = Field(max_length=200)
    workflow_version: str = Field(default="1", max_length=64)
    status: str = Field(max_length=16)
    payload: str
    output: str | None = None
    error: str | None = None
    attempt: int = 1
    priority: int = 0
    queue: str = Field(default="default", max_length=200)
    tags: str = "[]"
    run_metadata: str = "{}"
    parent_id: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    idempotency_expires_at: float | None = None
    created_at: float
    updated_at: float
    available_at: float
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = Field(default=None, max_length=100)
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    executed_seconds: float = 0.0
    concurrency_key: str | None = Field(default=None, max_length=200)
    concurrency_limit: int | None = None
    expires_at: float | None = None
    schedule_id: str | None = Field(default=None, max_length=200)
    scheduled_at: float | None = None
    priority_aging: float = Field(default=60.0, sa_column_kwargs={"server_default": "60"})
    claim_rank: float | None = Field(
        default=None, sa_column=sa.Column(sa.Float, sa.Computed(CLAIM_RANK_SQL))
    )


class StepRow(SQLModel, table=True):
    __tablename__ = "agentflow_steps"

    run_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="step", max_length=16)
    status: str = Field(max_length=16)
    output: str | None = None
    error: str | None = None
    attempts: int = 1
    started_at: float
    finished_at: float
    info: str | None = None


class WaitpointRow(SQLModel, table=True):
    __tablename__ = "agentflow_waitpoints"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "seq", name="ux_agentflow_waitpoints_run_seq"),
        sa.Index("ix_agentflow_waitpoints_due", "status", "timeout_at"),
        sa.Index("ix_agentflow_waitpoints_target", "kind", "target", "status"),
    )

    id: str = Field(primary_key=True, max_length=64)
    run_id: str = Field(max_length=64)
    seq: int
    kind: str = Field(max_length=16)
    name: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=16)
    target: str | None = Field(default=None, max_length=200)
    token: str | None = Field(default=None, max_length=100, unique=True)
    data: str | None = None
    digest: str | None = Field(default=None, max_length=64)
    batch: int | None = None
    timeout_at: float | None = None
    resolution: str | None = None
    created_at: float
    resolved_at: float | None = None


class EventRow(SQLModel, table=True):
    __tablename__ = "agentflow_events"
    __table_args__ = (sa.Index("ix_agentflow_events_name", "name", "created_at"),)

    id: str = Field(primary_key=True, max_length=200)
    name: str = Field(max_length=200)
    payload: str
    created_at: float
    resumed_runs: int = 0
    started_runs: int = 0
    errors: str | None = None


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "agentflow_schedules"
    __table_args__ = (sa.Index("ix_agentflow_schedules_due", "paused", "next_tick_at"),)

    id: str = Field(primary_key=True, max_length=200)
    workflow_id: str = Field(max_length=200)
    cron: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    payload: str = "null"
    missed: str = Field(default="latest", max_length=16)
    paused: bool = False
    declared: bool = False
    next_tick_at: float
    last_tick_at: float | None = None
    created_at: float
    updated_at: float


class LogRow(SQLModel, table=True):
    __tablename__ = "agentflow_logs"
    __table_args__ = (sa.Index("ix_agentflow_logs_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    seq: int | None = None
    level: str = Field(max_length=10)
    message: str
    fields: str = "{}"
    ts: float


class AttemptErrorRow(SQLModel, table=True):
    __tablename__ = "agentflow_attempt_errors"
    __table_args__ = (sa.Index("ix_agentflow_attempt_errors_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    run_attempt: int
    seq: int | None = None
    step: str | None = Field(default=None, max_length=200)
    step_attempt: int | None = None
    error_type: str = Field(max_length=200)
    message: str
    traceback: str
    ts: float


class StreamChunkRow(SQLModel, table=True):
    """Live output of a run (e.g. model token deltas): shown while it happens, never replayed."""

    __tablename__ = "agentflow_stream_chunks"
    __table_args__ = (sa.Index("ix_agentflow_stream_chunks_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    stream: str = Field(max_length=200)
    data: str
    ts: float


class ApiKeyRow(SQLModel, table=True):
    """An API key: only a SHA-256 hash of the secret is kept."""

    __tablename__ = "agentflow_api_keys"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=32)
    secret_hash: str = Field(max_length=64, unique=True)
    scope: str = Field(max_length=16)
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


class WebhookSourceRow(SQLModel, table=True):
    """A webhook sender and the shared secret its signatures are checked with."""

    __tablename__ = "agentflow_webhook_sources"

    name: str = Field(primary_key=True, max_length=200)
    secret: str = Field(max_length=200)
    event: str | None = Field(default=None, max_length=200)
    created_at: float


class SettingRow(SQLModel, table=True):
    """Installation-wide values, e.g. the key that signs approval completion URLs."""

    __tablename__ = "agentflow_settings"

    name: str = Field(primary_key=True, max_length=200)
    value: str
    created_at: float


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


runs = _table(RunRow)
steps = _table(StepRow)
waitpoints = _table(WaitpointRow)
events = _table(EventRow)
logs = _table(LogRow)
attempt_errors = _table(AttemptErrorRow)
schedules = _table(ScheduleRow)
stream_chunks = _table(StreamChunkRow)
api_keys = _table(ApiKeyRow)
webhook_sources = _table(WebhookSourceRow)
settings = _table(SettingRow)
metadata = SQLModel.metadata
