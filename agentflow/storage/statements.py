"""The SQL the store runs, built once at import time so that the compiled form is cached."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from ..status import TERMINAL, RunStatus, WaitpointStatus
from .tables import (
    CLAIM_INDEX,
    DELAYED_INDEX,
    attempt_errors,
    logs,
    runs,
    steps,
    stream_chunks,
    waitpoints,
)

__all__ = [
    "CANCEL_WAITS",
    "CLAIM_SELECT",
    "CLAIM_UPDATE",
    "DUE_DELAYED",
    "FENCE",
    "FINISH",
    "INSERT_CHUNK",
    "INSERT_ERROR",
    "INSERT_LOG",
    "INSERT_RUN",
    "INSERT_STEP",
    "INSERT_STEP_FENCED",
    "INSERT_WAITPOINT",
    "PENDING",
    "RUN_BY_ID",
    "RUN_BY_KEY",
    "STEPS_OF_RUN",
    "TERMINAL_VALUES",
    "WAITING_ON",
    "WAITPOINTS_OF_RUN",
    "queue_due",
]

TERMINAL_VALUES = [s.value for s in TERMINAL]
PENDING = WaitpointStatus.PENDING.value

FENCE = (
    sa.update(runs)
    .where(
        runs.c.id == sa.bindparam("_id"),
        runs.c.worker_id == sa.bindparam("_worker"),
        runs.c.status == RunStatus.RUNNING.value,
    )
    .values(updated_at=sa.bindparam("_now"))
)
INSERT_STEP = steps.insert()
# The hot path: journal a step only while this worker still holds the run, in one statement
# (run by ``transactions.journal_step``).
INSERT_STEP_FENCED = (
    steps.insert()
    .from_select(
        [c.name for c in steps.c],
        sa.select(*[sa.bindparam(c.name, type_=c.type) for c in steps.c]).where(
            sa.exists().where(
                runs.c.id == sa.bindparam("run_id"),
                runs.c.worker_id == sa.bindparam("_worker"),
                runs.c.status == sa.bindparam("_running"),
                runs.c.cancel_requested.is_(False),
            )
        ),
    )
    .returning(steps.c.seq)
)
INSERT_LOG = logs.insert()
INSERT_CHUNK = stream_chunks.insert()
INSERT_ERROR = attempt_errors.insert()
INSERT_RUN = runs.insert()
INSERT_WAITPOINT = waitpoints.insert()
RUN_BY_ID = sa.select(runs).where(runs.c.id == sa.bindparam("_id"))
RUN_BY_KEY = sa.select(runs).where(
    runs.c.workflow_id == sa.bindparam("_workflow"),
    runs.c.idempotency_key == sa.bindparam("_key"),
)


class _Indexed(sa.sql.Alias):
    """The runs table read through one named index.

    Postgres picks indexes from its statistics; SQLite, which has none unless someone runs
    ANALYZE, would rather take an equality index and then read every row of that status, so
    on SQLite these aliases say ``INDEXED BY`` (which also makes a query that cannot use its
    index fail loudly instead of slowing down).
    """

    inherit_cache = True
    index: str


def _through(index: str, name: str) -> _Indexed:
    alias = _Indexed._construct(runs, name=name)
    alias.index = index
    return alias


@compiles(_Indexed, "sqlite")
def _indexed_by(element: _Indexed, compiler: SQLCompiler, **kw: Any) -> str:
    text: str = compiler.visit_alias(element, **kw)  # type: ignore[no-untyped-call]
    return f"{text} INDEXED BY {element.index}" if kw.get("asfrom") else text


_claimable = _through(CLAIM_INDEX, "claimable")
_due = _through(DELAYED_INDEX, "due")
_peers = runs.alias("peers")
# Runs whose concurrency key is already at its limit are left out here, so that a busy key
# never fills the candidate list and blocks other keys; admission.py settles the rest.
_KEY_HAS_ROOM = sa.or_(
    _claimable.c.concurrency_key.is_(None),
    sa.select(sa.func.count())
    .where(_peers.c.concurrency_key == _claimable.c.concurrency_key, _peers.c.status == "running")
    .scalar_subquery()
    < sa.func.coalesce(_claimable.c.concurrency_limit, 1),
)
# Statuses are inlined (not bound) so that the planner sees partial indexes' predicates.
_QUEUED = sa.literal_column(f"'{RunStatus.QUEUED.value}'", sa.String)
_DELAYED = sa.literal_column(f"'{RunStatus.DELAYED.value}'", sa.String)
DUE_DELAYED = sa.select(_due.c.id).where(
    _due.c.status == _DELAYED, _due.c.available_at <= sa.bindparam("_now")
)
"""Delayed runs whose time has come (read through ``ix_agentflow_runs_delayed``)."""
CLAIM_SELECT = (
    # Only what admission needs: the full rows are read for the admitted runs alone.
    sa.select(
        _claimable.c.id,
        _claimable.c.queue,
        _claimable.c.concurrency_key,
        _claimable.c.concurrency_limit,
        _claimable.c.started_at,
        _claimable.c.cancel_requested,
    )
    .where(
        _claimable.c.status == _QUEUED,  # all due: see queue_due
        _claimable.c.workflow_id.in_(sa.bindparam("_workflows", expanding=True)),
        sa.or_(_claimable.c.expires_at.is_(None), _claimable.c.expires_at > sa.bindparam("_now")),
        _KEY_HAS_ROOM,
    )
    # Higher priority first, aged by waiting: see tables.CLAIM_RANK_SQL. The claim index
    # holds this order, so a claim reads a few index entries however deep the queue is.
    .order_by(_claimable.c.claim_rank, _claimable.c.available_at)
    .limit(sa.bindparam("_limit"))
)


def queue_due(due: sa.Select[tuple[str]]) -> sa.Update:
    """Queue the delayed runs ``due`` selects (the store passes it through the dialect's row
    locking, so that claimers on Postgres skip the rows another claimer is queueing). A claim
    runs this first: delayed runs leave the claim index's way until they are due, and join it
    then with the rank their time gives them."""
    return (
        sa.update(runs)
        .where(runs.c.id.in_(due.scalar_subquery()))
        .values(status=_QUEUED, updated_at=sa.bindparam("_now"))
    )


CLAIM_UPDATE = (
    sa.update(runs)
    .where(runs.c.id.in_(sa.bindparam("_ids", expanding=True)))
    .values(
        status=RunStatus.RUNNING.value,
        worker_id=sa.bindparam("_owner"),
        lease_expires_at=sa.bindparam("_lease"),
        started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("_now")),
        updated_at=sa.bindparam("_now"),
    )
    .returning(*runs.c)
)
FINISH = (
    sa.update(runs)
    .where(runs.c.id == sa.bindparam("_id"))
    .values(
        status=sa.bindparam("_status"),
        output=sa.bindparam("_output"),
        error=sa.bindparam("_error"),
        executed_seconds=sa.func.coalesce(
            sa.bindparam("_executed", type_=sa.Float), runs.c.executed_seconds
        ),
        finished_at=sa.bindparam("_now"),
        updated_at=sa.bindparam("_now"),
        worker_id=None,
        lease_expires_at=None,
    )
    .returning(*runs.c)
)
CANCEL_WAITS = (
    sa.update(waitpoints)
    .where(waitpoints.c.run_id == sa.bindparam("_id"), waitpoints.c.status == "pending")
    .values(status=WaitpointStatus.CANCELLED.value, resolved_at=sa.bindparam("_now"))
)
WAITING_ON = (
    sa.select(waitpoints.c.run_id)
    .where(
        waitpoints.c.kind == "child",
        waitpoints.c.target == sa.bindparam("_target"),
        waitpoints.c.status == PENDING,
    )
    .distinct()
)
"""The runs waiting for run ``_target`` to end (run once per finished run)."""
STEPS_OF_RUN = sa.select(steps).where(steps.c.run_id == sa.bindparam("_id"))
WAITPOINTS_OF_RUN = sa.select(waitpoints).where(waitpoints.c.run_id == sa.bindparam("_id"))
