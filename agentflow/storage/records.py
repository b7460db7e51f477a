"""The values the store takes and returns, and the signals it raises to a worker."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from .._serde import dumps
from ..status import RunStatus
from .tables import runs

__all__ = [
    "FORKED_FROM",
    "CancelRequested",
    "Journal",
    "LeaseLost",
    "NewRun",
    "NewWaitpoint",
    "RunFilter",
    "new_id",
]

# Metadata key marking a run created by Engine.fork: its journal exists before it starts.
FORKED_FROM = "forked_from"


class LeaseLost(Exception):
    """This worker no longer holds the run (its lease expired and another worker took it)."""


class CancelRequested(Exception):
    """The run this worker executes was asked to cancel; nothing more is written for it."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(16)}"


@dataclass(slots=True)
class NewRun:
    workflow_id: str
    workflow_version: str
    payload: str
    status: str = RunStatus.QUEUED.value
    available_at: float | None = None
    tags: Sequence[str] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    queue: str = "default"
    parent_id: str | None = None
    idempotency_key: str | None = None
    idempotency_ttl: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    expires_at: float | None = None
    schedule_id: str | None = None
    scheduled_at: float | None = None
    id: str = field(default_factory=lambda: new_id("run"))
    priority_aging: float = field(kw_only=True)
    """Seconds of waiting worth one priority level (the engine's ``priority_aging``)."""


@dataclass(slots=True)
class NewWaitpoint:
    seq: int
    kind: str
    name: str
    target: str | None = None
    data: str | None = None
    digest: str | None = None
    batch: int | None = None
    timeout_at: float | None = None


@dataclass(slots=True)
class Journal:
    steps: dict[int, RowMapping]
    waitpoints: dict[int, RowMapping]


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a bulk operation applies to; every field given must match."""

    workflow_id: str | None = None
    status: Sequence[str] = ()
    tag: str | None = None
    created_after: float | None = None
    created_before: float | None = None

    def apply(self, query: sa.Select[Any]) -> sa.Select[Any]:
        if self.workflow_id is not None:
            query = query.where(runs.c.workflow_id == self.workflow_id)
        if self.status:
            query = query.where(runs.c.status.in_(list(self.status)))
        if self.tag is not None:
            query = query.where(runs.c.tags.contains(dumps(self.tag)))
        if self.created_after is not None:
            query = query.where(runs.c.created_at >= self.created_after)
        if self.created_before is not None:
            query = query.where(runs.c.created_at < self.created_before)
        return query
