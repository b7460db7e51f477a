"""The steps the store's transactions share; each takes the open connection ``conn``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .._serde import dumps, loads
from ..errors import NotFoundError, RunNotFoundError
from ..status import RunStatus, WaitpointStatus
from .database import CLAIMABLE_FLAG
from .records import LeaseLost, NewRun
from .statements import (
    CANCEL_WAITS,
    FENCE,
    FINISH,
    INSERT_ERROR,
    INSERT_LOG,
    INSERT_RUN,
    INSERT_STEP_FENCED,
    PENDING,
    RUN_BY_KEY,
    TERMINAL_VALUES,
    WAITING_ON,
)
from .tables import runs, waitpoints

__all__ = [
    "DriverStatement",
    "any_satisfied",
    "cancel_requested",
    "cancel_tree",
    "child_resolution",
    "claimable",
    "create_run",
    "fence",
    "find_approval",
    "finish",
    "journal_step",
    "matches",
    "resolved_message",
    "stop_reason",
    "wake",
    "write_side_rows",
]


def matches(pattern: Any, value: Any) -> bool:
    """True when every key of ``pattern`` (recursively) equals the same key of ``value``."""
    if pattern is None:
        return True
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(v, value[k]) for k, v in pattern.items()
        )
    return bool(pattern == value)


class DriverStatement:
    """A statement run once per step or per claim, handed straight to the driver.

    It skips SQLAlchemy's execution layer (about a third of the time per step for the
    journal insert): the SQL is compiled once per dialect, so it may not use expanding
    parameters, and the parameters must be plain str/int/float/None, which need no type
    processing.
    """

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Run it; the DBAPI cursor, which the caller must close."""
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            positions = statement.positiontup if dialect.paramstyle == "qmark" else None
            compiled = (str(statement), tuple(positions) if positions else None)
            self._compiled[dialect.name] = compiled
        sql, order = compiled
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params if order is None else tuple(params[k] for k in order))
        except BaseException:
            cursor.close()
            raise
        return cursor


_JOURNAL_STEP = DriverStatement(INSERT_STEP_FENCED)


def journal_step(conn: Connection, params: dict[str, Any]) -> bool:
    """Run ``INSERT_STEP_FENCED``; False when this worker no longer holds the run."""
    try:
        cursor = _JOURNAL_STEP.execute(conn, params)
    except conn.dialect.loaded_dbapi.IntegrityError:
        # The slot is taken: an execution whose lease lapsed while it was writing journaled
        # this step first. The journal entry stands; this execution yields.
        return False
    try:
        return cursor.fetchone() is not None
    finally:
        cursor.close()


def cancel_requested(conn: Connection, run_id: str) -> bool:
    query = sa.select(runs.c.cancel_requested).where(runs.c.id == run_id)
    return bool(conn.execute(query).scalar())


def stop_reason(conn: Connection, run_id: str, worker_id: str) -> str:
    """Why a write for a run this worker executes was refused: "cancel", or LeaseLost."""
    row = conn.execute(
        sa.select(runs.c.worker_id, runs.c.status, runs.c.cancel_requested).where(
            runs.c.id == run_id
        )
    ).first()
    held = row is not None and row.worker_id == worker_id and row.status == "running"
    if held and row is not None and row.cancel_requested:
        return "cancel"
    raise LeaseLost(run_id)


def cancel_tree(conn: Connection, roots: Sequence[str], now: float) -> list[str]:
    """Cancel these runs and their unfinished descendants; return the ones executing.

    A run not executing ends ``cancelled`` now; an executing one gets ``cancel_requested``
    and its worker stops it (and then cancels what it started since).
    """
    executing: list[str] = []
    frontier = list(roots)
    while frontier:
        live = conn.execute(
            sa.select(runs.c.id, runs.c.status).where(
                runs.c.id.in_(frontier), runs.c.status.not_in(TERMINAL_VALUES)
            )
        ).all()
        for r in live:
            if r.status == RunStatus.RUNNING.value:
                executing.append(r.id)
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == r.id)
                    .values(cancel_requested=True, updated_at=now)
                )
            else:
                finish(conn, r.id, RunStatus.CANCELLED.value, now)
        frontier = [
            c.id
            for c in conn.execute(
                sa.select(runs.c.id).where(
                    runs.c.parent_id.in_(frontier), runs.c.status.not_in(TERMINAL_VALUES)
                )
            )
        ]
    return executing


def claimable(conn: Connection) -> None:
    """Note that this transaction makes runs claimable, so workers elsewhere get woken."""
    conn.info[CLAIMABLE_FLAG] = True


def fence(conn: Connection, run_id: str, worker_id: str, now: float) -> None:
    params = {"_id": run_id, "_worker": worker_id, "_now": now}
    if conn.execute(FENCE, params).rowcount != 1:
        raise LeaseLost(run_id)


def write_side_rows(
    conn: Connection,
    log_rows: Sequence[dict[str, Any]],
    error_rows: Sequence[dict[str, Any]],
    run_id: str | None = None,
    metadata: str | None = None,
) -> None:
    if log_rows:
        conn.execute(INSERT_LOG, list(log_rows))
    if error_rows:
        conn.execute(INSERT_ERROR, list(error_rows))
    if metadata is not None and run_id is not None:
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(run_metadata=metadata))


def create_run(conn: Connection, spec: NewRun, now: float) -> tuple[Mapping[Any, Any], bool]:
    if spec.idempotency_key is not None:
        by_key = {"_workflow": spec.workflow_id, "_key": spec.idempotency_key}
        existing = conn.execute(RUN_BY_KEY, by_key).first()
        if existing is not None:
            expires = existing.idempotency_expires_at
            if expires is None or expires > now:
                return existing._mapping, False
            # The key expired: free it so the new run can take it.
            conn.execute(
                sa.update(runs).where(runs.c.id == existing.id).values(idempotency_key=None)
            )
    available = spec.available_at if spec.available_at is not None else now
    values = {
        "id": spec.id,
        "workflow_id": spec.workflow_id,
        "workflow_version": spec.workflow_version,
        "status": spec.status,
        "payload": spec.payload,
        "attempt": 1,
        "priority": spec.priority,
        "priority_aging": spec.priority_aging,
        "queue": spec.queue,
        "tags": dumps(list(spec.tags)),
        "run_metadata": dumps(spec.metadata),
        "parent_id": spec.parent_id,
        "idempotency_key": spec.idempotency_key,
        "idempotency_expires_at": (
            now + spec.idempotency_ttl
            if spec.idempotency_key is not None and spec.idempotency_ttl is not None
            else None
        ),
        "created_at": now,
        "updated_at": now,
        "available_at": available,
        "cancel_requested": False,
        "executed_seconds": 0.0,
        "concurrency_key": spec.concurrency_key,
        "concurrency_limit": spec.concurrency_limit,
        "expires_at": spec.expires_at,
        "schedule_id": spec.schedule_id,
        "scheduled_at": spec.scheduled_at,
    }
    if spec.status == RunStatus.QUEUED.value:
        claimable(conn)
    if spec.idempotency_key is None:
        conn.execute(INSERT_RUN, values)
    else:
        try:
            with conn.begin_nested():
                conn.execute(INSERT_RUN, values)
        except sa.exc.IntegrityError:
            # Another transaction created the run with this key first: that run is the answer.
            winner = conn.execute(
                RUN_BY_KEY, {"_workflow": spec.workflow_id, "_key": spec.idempotency_key}
            ).first()
            if winner is None:
                raise
            return winner._mapping, False
    unset = dict.fromkeys(("output", "error", "started_at", "finished_at", "worker_id"))
    return {**unset, "lease_expires_at": None, **values}, True


def child_resolution(child: RowMapping) -> str:
    return dumps(
        {
            "status": child["status"],
            "output": loads(child["output"]),
            "error": loads(child["error"]),
        }
    )


def finish(
    conn: Connection,
    run_id: str,
    status: str,
    now: float,
    *,
    has_waits: bool = True,
    output: str | None = None,
    error: str | None = None,
    executed_seconds: float | None = None,
) -> tuple[list[str], RowMapping]:
    """Set a final status, cancel the run's own pending waits, and wake a waiting parent.

    Returns the ids of parents woken and the finished run.
    """
    finished = (
        conn.execute(
            FINISH,
            {
                "_id": run_id,
                "_status": status,
                "_output": output,
                "_error": error,
                "_executed": executed_seconds,
                "_now": now,
            },
        )
        .one()
        ._mapping
    )
    if has_waits:
        conn.execute(CANCEL_WAITS, {"_id": run_id, "_now": now})
    if status == RunStatus.CANCELLED.value:
        children = conn.execute(
            sa.select(runs.c.id).where(
                runs.c.parent_id == run_id, runs.c.status.not_in(TERMINAL_VALUES)
            )
        ).scalars()
        cancel_tree(conn, list(children), now)
    # Any run may be waited on: a parent that reused an idempotency key waits on a run that
    # is not its child. The waiting runs are locked first (in id order), so that children of
    # one batch finishing at the same time see each other's resolutions and exactly one of
    # them wakes the parent (no write skew under READ COMMITTED).
    waiting = sorted(conn.execute(WAITING_ON, {"_target": run_id}).scalars())
    if not waiting:
        return [], finished
    conn.execute(
        sa.select(runs.c.id).where(runs.c.id.in_(waiting)).order_by(runs.c.id).with_for_update()
    ).all()
    parents = conn.execute(
        sa.select(waitpoints.c.id, waitpoints.c.run_id, waitpoints.c.batch).where(
            waitpoints.c.kind == "child",
            waitpoints.c.target == run_id,
            waitpoints.c.status == PENDING,
        )
    ).all()
    resolution = child_resolution(finished)
    woken: list[str] = []
    for wp in parents:
        conn.execute(
            sa.update(waitpoints)
            .where(waitpoints.c.id == wp.id)
            .values(status=WaitpointStatus.COMPLETED.value, resolution=resolution, resolved_at=now)
        )
        if wake(conn, wp.run_id, wp.batch, now):
            woken.append(wp.run_id)
    return woken, finished


def wake(conn: Connection, run_id: str, batch: int | None, now: float) -> bool:
    """Re-queue a waiting run whose wait is satisfied (a whole batch, for batch waits).

    The run's row is locked first, even when it is still running: a run suspending at the
    same moment then either sees this resolution, or is already ``waiting`` and re-queued
    here. Without the lock, a resolution committed just after the suspending transaction
    read the waits would find the run ``running``, change nothing, and be lost.
    """
    conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id).with_for_update()).all()
    if batch is not None:
        pending = conn.execute(
            sa.select(sa.func.count())
            .select_from(waitpoints)
            .where(
                waitpoints.c.run_id == run_id,
                waitpoints.c.batch == batch,
                waitpoints.c.status == PENDING,
            )
        ).scalar_one()
        if pending:
            return False
    woken = conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.WAITING.value)
        .values(status=RunStatus.QUEUED.value, available_at=now, updated_at=now)
    ).rowcount
    if woken:
        claimable(conn)
    return bool(woken)


def any_satisfied(conn: Connection, run_id: str, awaited: Sequence[int]) -> bool:
    if not awaited:
        return False
    rows = conn.execute(
        sa.select(waitpoints.c.status, waitpoints.c.batch).where(
            waitpoints.c.run_id == run_id, waitpoints.c.seq.in_(list(awaited))
        )
    ).all()
    batches: dict[int, bool] = {}
    for r in rows:
        done = r.status != PENDING
        if r.batch is None:
            if done:
                return True
        else:
            batches[r.batch] = batches.get(r.batch, True) and done
    return any(batches.values())


def find_approval(
    conn: Connection, *, run_id: str | None, name: str | None, token: str | None
) -> RowMapping:
    query = sa.select(waitpoints).where(waitpoints.c.kind == "approval")
    if token is not None:
        row = conn.execute(query.where(waitpoints.c.token == token)).first()
        if row is None:
            raise NotFoundError("no approval with that token")
        return row._mapping
    if run_id is None or name is None:
        raise ValueError("approve/reject needs either a token, or a run id and an approval name")
    if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
        raise RunNotFoundError(run_id)
    rows = [
        r._mapping
        for r in conn.execute(
            query.where(waitpoints.c.run_id == run_id).order_by(waitpoints.c.seq.desc())
        )
    ]
    named = [r for r in rows if r["name"] == name]
    pending = [r for r in named if r["status"] == PENDING]
    if pending:
        return pending[0]
    if named:
        return named[0]
    open_names = sorted({r["name"] for r in rows if r["status"] == PENDING})
    raise NotFoundError(
        f"run {run_id} has no approval named {name!r}; pending approvals: "
        + (", ".join(open_names) or "none (the run may not have reached its approval yet)"),
        run_id=run_id,
    )


def resolved_message(wp: RowMapping) -> str:
    decision = loads(wp["resolution"]) or {}
    who = decision.get("approver")
    by = f" by {who}" if who else ""
    return f"approval {wp['name']!r} of run {wp['run_id']} was already {wp['status']}{by}"
