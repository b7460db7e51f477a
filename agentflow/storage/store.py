"""Every read and write agentflow makes, one transaction per public method.

Each method builds a job ``fn(conn)`` that runs on a database thread (see ``database.py``).
Statements are SQLAlchemy Core on the SQLModel tables, built once at import time so the
compiled form is cached. The invariants the rest of the engine relies on live here:

* a worker writes to a run only while it holds the run's lease (``_fence``); a worker that
  lost its lease gets ``LeaseLost`` and abandons the run;
* resolving a waitpoint and re-queuing its run happen in the same transaction (``_wake``);
* a run that finishes resolves the waitpoints of a parent waiting on it, in the same
  transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .._serde import dumps, loads
from ..errors import ApprovalError, ConflictError, NotFoundError, RunNotFoundError
from ..flow import Queue
from ..status import CLAIMABLE, TERMINAL, RunStatus, WaitpointStatus
from .admission import admit
from .database import CLAIMABLE_FLAG, Database
from .migrate import upgrade
from .tables import attempt_errors, events, logs, runs, steps, waitpoints

__all__ = ["CancelRequested", "LeaseLost", "NewRun", "NewWaitpoint", "RunFilter", "Store"]

Clock = Callable[[], float]
_TERMINAL = [s.value for s in TERMINAL]
# Metadata key marking a run created by Engine.fork: its journal exists before it starts.
FORKED_FROM = "forked_from"
_PENDING = WaitpointStatus.PENDING.value


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


# -- statements built once ------------------------------------------------------------------

_FENCE = (
    sa.update(runs)
    .where(
        runs.c.id == sa.bindparam("_id"),
        runs.c.worker_id == sa.bindparam("_worker"),
        runs.c.status == RunStatus.RUNNING.value,
    )
    .values(updated_at=sa.bindparam("_now"))
)
_INSERT_STEP = steps.insert()
# The hot path: journal a step only while this worker still holds the run, in one statement.
_INSERT_STEP_FENCED = (
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
_INSERT_LOG = logs.insert()
_INSERT_ERROR = attempt_errors.insert()
_INSERT_RUN = runs.insert()
_INSERT_WAITPOINT = waitpoints.insert()
_RUN_BY_ID = sa.select(runs).where(runs.c.id == sa.bindparam("_id"))
_RUNS_BY_IDS = sa.select(runs).where(runs.c.id.in_(sa.bindparam("_ids", expanding=True)))
_RUN_BY_KEY = sa.select(runs).where(
    runs.c.workflow_id == sa.bindparam("_workflow"),
    runs.c.idempotency_key == sa.bindparam("_key"),
)
_peers = runs.alias("peers")
# Runs whose concurrency key is already at its limit are left out here, so that a busy key
# never fills the candidate list and blocks other keys; admission.py settles the rest.
_KEY_HAS_ROOM = sa.or_(
    runs.c.concurrency_key.is_(None),
    sa.select(sa.func.count())
    .where(_peers.c.concurrency_key == runs.c.concurrency_key, _peers.c.status == "running")
    .scalar_subquery()
    < sa.func.coalesce(runs.c.concurrency_limit, 1),
)
# Higher priority first; waiting raises a run's priority by one per `_aging` seconds, so that
# low priorities are not starved forever by a stream of high ones.
_EFFECTIVE_PRIORITY = runs.c.priority + (
    sa.bindparam("_now", type_=sa.Float) - runs.c.available_at
) / sa.bindparam("_aging", type_=sa.Float)
_CLAIM_SELECT = (
    # Only what admission needs: the full rows are read for the admitted runs alone.
    sa.select(
        runs.c.id,
        runs.c.queue,
        runs.c.concurrency_key,
        runs.c.concurrency_limit,
        runs.c.started_at,
        runs.c.cancel_requested,
    )
    .where(
        runs.c.status.in_([s.value for s in CLAIMABLE]),
        runs.c.available_at <= sa.bindparam("_now"),
        runs.c.workflow_id.in_(sa.bindparam("_workflows", expanding=True)),
        sa.or_(runs.c.expires_at.is_(None), runs.c.expires_at > sa.bindparam("_now")),
        _KEY_HAS_ROOM,
    )
    .order_by(_EFFECTIVE_PRIORITY.desc(), runs.c.available_at)
    .limit(sa.bindparam("_limit"))
)
_CLAIM_UPDATE = (
    sa.update(runs)
    .where(runs.c.id.in_(sa.bindparam("_ids", expanding=True)))
    .values(
        status=RunStatus.RUNNING.value,
        worker_id=sa.bindparam("_owner"),
        lease_expires_at=sa.bindparam("_lease"),
        started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("_now")),
        updated_at=sa.bindparam("_now"),
    )
)
_FINISH = (
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
_CANCEL_WAITS = (
    sa.update(waitpoints)
    .where(waitpoints.c.run_id == sa.bindparam("_id"), waitpoints.c.status == "pending")
    .values(status=WaitpointStatus.CANCELLED.value, resolved_at=sa.bindparam("_now"))
)
_STEPS_OF_RUN = sa.select(steps).where(steps.c.run_id == sa.bindparam("_id"))
_WAITPOINTS_OF_RUN = sa.select(waitpoints).where(waitpoints.c.run_id == sa.bindparam("_id"))


class Store:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._claim_select = db.dialect.for_update(_CLAIM_SELECT)

    # -- schema --------------------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> str | None:
        dialect = self.db.dialect
        return await self.db.write(lambda conn: upgrade(conn, dialect, revision))

    # -- runs ----------------------------------------------------------------------------

    async def create_run(self, spec: NewRun) -> tuple[Mapping[Any, Any], bool]:
        """Insert a run; with an idempotency key still alive, return the existing run instead."""
        now = self.clock()
        return await self.db.write(lambda conn: _create_run(conn, spec, now))

    async def get_run(self, run_id: str) -> RowMapping:
        row = await self.db.read(lambda conn: conn.execute(_RUN_BY_ID, {"_id": run_id}).first())
        if row is None:
            raise RunNotFoundError(run_id)
        return row._mapping

    async def list_runs(
        self,
        filters: RunFilter,
        *,
        parent_id: str | None = None,
        limit: int = 50,
        before_key: tuple[float, str] | None = None,
    ) -> list[RowMapping]:
        """Runs newest first; ``before_key`` = (created_at, id) of the last run already seen."""
        newest_first = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc())
        query = filters.apply(newest_first.limit(limit))
        if parent_id is not None:
            query = query.where(runs.c.parent_id == parent_id)
        if before_key is not None:
            created_at, run_id = before_key
            query = query.where(
                sa.or_(
                    runs.c.created_at < created_at,
                    sa.and_(runs.c.created_at == created_at, runs.c.id < run_id),
                )
            )
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def finished_among(self, run_ids: Sequence[str]) -> set[str]:
        """Which of these runs have ended."""
        ids = list(run_ids)

        def job(conn: Connection) -> set[str]:
            done: set[str] = set()
            for i in range(0, len(ids), 500):
                query = sa.select(runs.c.id).where(
                    runs.c.id.in_(ids[i : i + 500]), runs.c.status.in_(_TERMINAL)
                )
                done.update(conn.execute(query).scalars())
            return done

        return await self.db.read(job)

    async def get_steps(self, run_id: str) -> list[RowMapping]:
        query = _STEPS_OF_RUN.order_by(steps.c.seq)
        return await self.db.read(
            lambda conn: [r._mapping for r in conn.execute(query, {"_id": run_id})]
        )

    async def get_waitpoints(
        self, *, run_id: str | None = None, kind: str | None = None, status: str | None = None
    ) -> list[RowMapping]:
        query = sa.select(waitpoints).order_by(waitpoints.c.created_at, waitpoints.c.seq)
        if run_id is not None:
            query = query.where(waitpoints.c.run_id == run_id)
        if kind is not None:
            query = query.where(waitpoints.c.kind == kind)
        if status is not None:
            query = query.where(waitpoints.c.status == status)
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def get_logs(self, run_id: str, *, after_id: int = 0) -> list[RowMapping]:
        query = (
            sa.select(logs).where(logs.c.run_id == run_id, logs.c.id > after_id).order_by(logs.c.id)
        )
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def get_attempt_errors(self, run_id: str) -> list[RowMapping]:
        query = (
            sa.select(attempt_errors)
            .where(attempt_errors.c.run_id == run_id)
            .order_by(attempt_errors.c.id)
        )
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    # -- worker side ---------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: float,
        workflow_ids: Sequence[str],
        *,
        queues: Mapping[str, Queue] | None = None,
        worker_free: Mapping[str, int] | None = None,
        priority_aging: float = 60.0,
    ) -> list[RowMapping]:
        """Take up to ``limit`` runnable runs of the given workflows under a lease.

        Concurrency keys, the limits of ``queues`` and the per-queue free places of this
        worker (``worker_free``) decide which of the runnable runs may start.
        """
        now = self.clock()
        select = self._claim_select
        dialect = self.db.dialect
        # Fetch more than needed: some candidates may be held back by a limit.
        params = {
            "_now": now,
            "_limit": limit * 4,
            "_workflows": list(workflow_ids),
            "_aging": priority_aging,
        }

        def job(conn: Connection) -> list[RowMapping]:
            candidates = []
            for r in conn.execute(select, params).all():
                if r.cancel_requested:  # asked to cancel while it was being handed back
                    _finish(conn, r.id, RunStatus.CANCELLED.value, now)
                else:
                    candidates.append(r._mapping)
            rows = admit(
                conn,
                dialect,
                candidates,
                limit=limit,
                now=now,
                queues=queues or {},
                worker_free=worker_free or {},
            )
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            full = [r._mapping for r in conn.execute(_RUNS_BY_IDS, {"_ids": ids})]
            conn.execute(
                _CLAIM_UPDATE,
                {"_ids": ids, "_owner": worker_id, "_lease": now + lease, "_now": now},
            )
            return full

        return await self.db.write(job)

    async def load_journal(self, run_id: str) -> Journal:
        def job(conn: Connection) -> Journal:
            params = {"_id": run_id}
            return Journal(
                steps={r.seq: r._mapping for r in conn.execute(_STEPS_OF_RUN, params)},
                waitpoints={r.seq: r._mapping for r in conn.execute(_WAITPOINTS_OF_RUN, params)},
            )

        return await self.db.read(job)

    async def save_step(
        self,
        run_id: str,
        worker_id: str,
        step: dict[str, Any],
        *,
        logs: Sequence[dict[str, Any]] = (),
        metadata: str | None = None,
        errors: Sequence[dict[str, Any]] = (),
        children: Sequence[NewRun] = (),
        single: bool = True,
    ) -> None:
        """Journal one step result under the lease.

        For a ``trigger`` step, the child runs are created in the same transaction and the
        step's output becomes the child run id (``single``) or the list of ids.
        """
        now = self.clock()

        def job(conn: Connection) -> None:
            if children or not single:
                _fence(conn, run_id, worker_id, now)
                if conn.execute(
                    sa.select(runs.c.cancel_requested).where(runs.c.id == run_id)
                ).scalar():
                    raise CancelRequested(run_id)
                ids = [_create_run(conn, child, now)[0]["id"] for child in children]
                step["output"] = dumps(ids[0] if single else ids)
                conn.execute(_INSERT_STEP, step)
            elif not _journal_step(conn, {**step, "_worker": worker_id, "_running": "running"}):
                _stop_reason(conn, run_id, worker_id)
                raise CancelRequested(run_id)
            _write_side_rows(conn, logs, errors, run_id, metadata)

        await self.db.write(job)

    async def save_pending(
        self,
        run_id: str,
        worker_id: str,
        errors: Sequence[dict[str, Any]],
        *,
        logs: Sequence[dict[str, Any]] = (),
        metadata: str | None = None,
    ) -> None:
        """Save attempt errors and logs of a run this worker holds."""
        now = self.clock()

        def job(conn: Connection) -> None:
            _fence(conn, run_id, worker_id, now)
            _write_side_rows(conn, logs, errors, run_id, metadata)

        await self.db.write(job)

    async def suspend(
        self,
        run_id: str,
        worker_id: str,
        *,
        new_waitpoints: Sequence[NewWaitpoint],
        awaited: Sequence[int],
        executed_seconds: float,
        logs: Sequence[dict[str, Any]] = (),
        errors: Sequence[dict[str, Any]] = (),
        metadata: str | None = None,
    ) -> str:
        """Park the run on its waitpoints. Returns the run's new status.

        The status is ``queued`` when one of the awaited waitpoints was resolved while the run
        was executing (so no wake-up is lost), and ``cancel`` when a cancel was requested.
        """
        now = self.clock()
        dialect = self.db.dialect

        def job(conn: Connection) -> str:
            row = conn.execute(
                sa.select(runs.c.worker_id, runs.c.status, runs.c.cancel_requested).where(
                    runs.c.id == run_id
                )
            ).first()
            if row is None or row.worker_id != worker_id or row.status != "running":
                raise LeaseLost(run_id)
            if row.cancel_requested:
                return "cancel"
            # Lock the children awaited before this run's own row: a finishing child locks
            # itself, then its parent, and the same order here rules out a deadlock.
            child_ids = sorted(
                {wp.target for wp in new_waitpoints if wp.kind == "child" and wp.target}
            )
            children = {
                c.id: c._mapping
                for c in conn.execute(
                    dialect.for_update(
                        sa.select(runs.c.id, runs.c.status, runs.c.output, runs.c.error)
                        .where(runs.c.id.in_(child_ids))
                        .order_by(runs.c.id),
                        skip_locked=False,
                    )
                )
            }
            parked = conn.execute(
                sa.update(runs)
                .where(
                    runs.c.id == run_id,
                    runs.c.worker_id == worker_id,
                    runs.c.status == RunStatus.RUNNING.value,
                    runs.c.cancel_requested.is_(False),
                )
                .values(
                    status=RunStatus.WAITING.value,
                    worker_id=None,
                    lease_expires_at=None,
                    updated_at=now,
                    executed_seconds=executed_seconds,
                )
            ).rowcount
            if parked != 1:  # a cancel or a reclaim got in since the check above
                return _stop_reason(conn, run_id, worker_id)
            _write_side_rows(conn, logs, errors, run_id, metadata)
            for wp in new_waitpoints:
                values: dict[str, Any] = {
                    "id": new_id("wp"),
                    "run_id": run_id,
                    "seq": wp.seq,
                    "kind": wp.kind,
                    "name": wp.name,
                    "target": wp.target,
                    "data": wp.data,
                    "digest": wp.digest,
                    "batch": wp.batch,
                    "timeout_at": wp.timeout_at,
                    "created_at": now,
                    "status": _PENDING,
                    "token": new_id("tok") if wp.kind == "approval" else None,
                }
                child = children.get(wp.target or "") if wp.kind == "child" else None
                if child is not None and child["status"] in _TERMINAL:
                    values["status"] = WaitpointStatus.COMPLETED.value
                    values["resolved_at"] = now
                    values["resolution"] = _child_resolution(child)
                conn.execute(_INSERT_WAITPOINT, values)
            if _any_satisfied(conn, run_id, awaited):
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == run_id)
                    .values(status=RunStatus.QUEUED.value, available_at=now)
                )
                _claimable(conn)
                return RunStatus.QUEUED.value
            return RunStatus.WAITING.value

        return await self.db.write(job)

    async def finish(
        self,
        run_id: str,
        worker_id: str | None,
        *,
        status: str,
        output: str | None = None,
        error: dict[str, Any] | None = None,
        executed_seconds: float | None = None,
        logs: Sequence[dict[str, Any]] = (),
        metadata: str | None = None,
        errors: Sequence[dict[str, Any]] = (),
        has_waits: bool = True,
    ) -> tuple[list[str], RowMapping]:
        """End a run. Returns the ids of parent runs this woke up, and the finished run.

        ``has_waits=False`` (the run never created a waitpoint) skips cancelling its waits.
        """
        now = self.clock()

        def job(conn: Connection) -> tuple[list[str], RowMapping]:
            if worker_id is not None:
                _fence(conn, run_id, worker_id, now)
            _write_side_rows(conn, logs, errors, run_id, metadata)
            return _finish(
                conn,
                run_id,
                status,
                now,
                has_waits=has_waits,
                output=output,
                error=None if error is None else dumps(error),
                executed_seconds=executed_seconds,
            )

        return await self.db.write(job)

    async def retry(
        self,
        run_id: str,
        worker_id: str,
        *,
        delay: float,
        executed_seconds: float,
        logs: Sequence[dict[str, Any]] = (),
        metadata: str | None = None,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Schedule the next attempt of a failed run; failed steps run again, completed stay."""
        now = self.clock()

        def job(conn: Connection) -> None:
            _fence(conn, run_id, worker_id, now)
            _write_side_rows(conn, logs, errors, run_id, metadata)
            if _cancel_requested(conn, run_id):
                _finish(conn, run_id, RunStatus.CANCELLED.value, now)
                return
            conn.execute(
                sa.delete(steps).where(steps.c.run_id == run_id, steps.c.status == "failed")
            )
            _claimable(conn)
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=RunStatus.DELAYED.value if delay > 0 else RunStatus.QUEUED.value,
                    available_at=now + delay,
                    attempt=runs.c.attempt + 1,
                    worker_id=None,
                    lease_expires_at=None,
                    executed_seconds=executed_seconds,
                    updated_at=now,
                )
            )

        await self.db.write(job)

    async def release(self, run_ids: Sequence[str], worker_id: str) -> None:
        """Hand runs back to the queue at once (graceful shutdown), keeping their journal."""
        if not run_ids:
            return
        now = self.clock()

        def job(conn: Connection) -> None:
            for run_id in run_ids:
                if _cancel_requested(conn, run_id):
                    _finish(conn, run_id, RunStatus.CANCELLED.value, now)
            _claimable(conn)
            conn.execute(
                sa.update(runs)
                .where(
                    runs.c.id.in_(list(run_ids)),
                    runs.c.worker_id == worker_id,
                    runs.c.status == RunStatus.RUNNING.value,
                )
                .values(
                    status=RunStatus.QUEUED.value,
                    worker_id=None,
                    lease_expires_at=None,
                    available_at=now,
                    updated_at=now,
                )
            )

        await self.db.write(job)

    async def heartbeat(self, owners: Mapping[str, str], lease: float) -> tuple[set[str], set[str]]:
        """Extend the leases of runs, given as ``{run_id: lease owner}``.

        Returns ``(cancel_requested, lost)``: runs whose cancellation was asked for, and runs
        this owner no longer holds. Rows another transaction has locked are skipped rather
        than waited for (their lease is extended at the next beat), so a heartbeat never
        takes part in a lock-order deadlock.
        """
        now = self.clock()
        ids = list(owners)
        dialect = self.db.dialect

        def job(conn: Connection) -> tuple[set[str], set[str]]:
            if not ids:
                return set(), set()
            held = dialect.for_update(
                sa.select(runs.c.id)
                .where(
                    runs.c.id.in_(ids),
                    runs.c.worker_id.in_(set(owners.values())),
                    runs.c.status == RunStatus.RUNNING.value,
                )
                .order_by(runs.c.id)
            )
            conn.execute(
                sa.update(runs)
                .where(runs.c.id.in_(held.scalar_subquery()))
                .values(lease_expires_at=now + lease)
            )
            rows = conn.execute(
                sa.select(
                    runs.c.id, runs.c.worker_id, runs.c.status, runs.c.cancel_requested
                ).where(runs.c.id.in_(ids))
            ).all()
            mine = {r.id: r for r in rows if r.worker_id == owners[r.id] and r.status == "running"}
            return {i for i, r in mine.items() if r.cancel_requested}, set(ids) - set(mine)

        return await self.db.write(job)

    async def sweep(self, *, batch: int = 500) -> tuple[int, int]:
        """Fire due timers (sleeps, wait timeouts) and reclaim runs whose lease expired.

        Returns ``(timers_fired, runs_reclaimed)``.
        """
        now = self.clock()
        dialect = self.db.dialect

        def job(conn: Connection) -> tuple[int, int]:
            due = conn.execute(
                dialect.for_update(
                    sa.select(
                        waitpoints.c.id, waitpoints.c.run_id, waitpoints.c.kind, waitpoints.c.batch
                    )
                    .where(waitpoints.c.status == _PENDING, waitpoints.c.timeout_at <= now)
                    .order_by(waitpoints.c.timeout_at)
                    .limit(batch)
                )
            ).all()
            for wp in due:
                fired = (
                    WaitpointStatus.COMPLETED if wp.kind == "sleep" else WaitpointStatus.TIMED_OUT
                )
                resolution = None if wp.kind == "sleep" else dumps({"timed_out_at": now})
                conn.execute(
                    sa.update(waitpoints)
                    .where(waitpoints.c.id == wp.id, waitpoints.c.status == _PENDING)
                    .values(status=fired.value, resolved_at=now, resolution=resolution)
                )
            for run_id, wp_batch in {(wp.run_id, wp.batch) for wp in due}:
                _wake(conn, run_id, wp_batch, now)
            lapsed = conn.execute(
                dialect.for_update(
                    sa.select(runs.c.id, runs.c.cancel_requested)
                    .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_expires_at < now)
                    .order_by(runs.c.id)
                    .limit(batch)
                )
            ).all()
            for run in lapsed:
                if run.cancel_requested:  # its worker died before it could stop it
                    _finish(conn, run.id, RunStatus.CANCELLED.value, now)
            reclaimed = conn.execute(
                sa.update(runs)
                .where(runs.c.id.in_([r.id for r in lapsed if not r.cancel_requested]))
                .values(
                    status=RunStatus.QUEUED.value,
                    worker_id=None,
                    lease_expires_at=None,
                    available_at=now,
                    updated_at=now,
                )
            ).rowcount
            if reclaimed:
                _claimable(conn)
            expired = conn.execute(
                dialect.for_update(
                    sa.select(runs.c.id, runs.c.expires_at)
                    .where(
                        runs.c.status.in_([s.value for s in CLAIMABLE]),
                        runs.c.expires_at < now,
                    )
                    .order_by(runs.c.id)
                    .limit(batch)
                )
            ).all()
            for run in expired:
                error = {
                    "type": "RunExpired",
                    "message": "the run was still queued when its time-to-live ran out",
                    "traceback": "",
                }
                _finish(conn, run.id, RunStatus.EXPIRED.value, now, error=dumps(error))
            return len(due) + len(expired), reclaimed

        return await self.db.write(job)

    # -- operations ----------------------------------------------------------------------

    async def cancel(self, run_id: str) -> tuple[RowMapping, list[str]]:
        """Cancel a run and every unfinished descendant.

        Runs not executing are cancelled at once; executing ones get ``cancel_requested`` and
        their worker stops them at the next await. Returns the run and the executing ids.

        Raises:
            RunNotFoundError: no such run.
            ConflictError: the run already finished.
        """
        now = self.clock()

        def job(conn: Connection) -> tuple[RowMapping, list[str]]:
            row = conn.execute(_RUN_BY_ID, {"_id": run_id}).first()
            if row is None:
                raise RunNotFoundError(run_id)
            if row.status in _TERMINAL:
                raise ConflictError(
                    f"run {run_id} already ended with status {row.status}; nothing to cancel",
                    run_id=run_id,
                )
            executing = _cancel_tree(conn, [run_id], now)
            updated = conn.execute(_RUN_BY_ID, {"_id": run_id}).one()
            return updated._mapping, executing

        return await self.db.write(job)

    async def cancel_where(self, filters: RunFilter) -> tuple[list[str], list[str]]:
        """Cancel every unfinished run matching ``filters`` (and their descendants).

        Returns ``(cancelled_or_requested_ids, executing_ids)``.
        """
        now = self.clock()

        def job(conn: Connection) -> tuple[list[str], list[str]]:
            query = filters.apply(sa.select(runs.c.id)).where(runs.c.status.not_in(_TERMINAL))
            ids = list(conn.execute(query.order_by(runs.c.id)).scalars())
            return ids, _cancel_tree(conn, ids, now)

        return await self.db.write(job)

    async def fork(self, source_id: str, before_seq: int, spec: NewRun) -> Mapping[Any, Any]:
        """Create ``spec`` as a new run whose journal is the source's below ``before_seq``.

        Raises:
            RunNotFoundError: no such source run.
            ConflictError: a wait in the kept part of the journal never resolved.
        """
        now = self.clock()

        def job(conn: Connection) -> Mapping[Any, Any]:
            if conn.execute(sa.select(runs.c.id).where(runs.c.id == source_id)).first() is None:
                raise RunNotFoundError(source_id)
            kept_steps = conn.execute(
                sa.select(steps).where(steps.c.run_id == source_id, steps.c.seq < before_seq)
            ).all()
            kept_waits = conn.execute(
                sa.select(waitpoints).where(
                    waitpoints.c.run_id == source_id, waitpoints.c.seq < before_seq
                )
            ).all()
            unresolved = [w for w in kept_waits if w.status in (_PENDING, "cancelled")]
            if unresolved:
                w = unresolved[0]
                raise ConflictError(
                    f"cannot keep the journal up to step #{before_seq}: the {w.kind} wait "
                    f"{w.name!r} at #{w.seq} never resolved; fork from #{w.seq} or earlier",
                    run_id=source_id,
                )
            row, _ = _create_run(conn, spec, now)
            if kept_steps:
                conn.execute(_INSERT_STEP, [{**s._mapping, "run_id": spec.id} for s in kept_steps])
            if kept_waits:
                conn.execute(
                    _INSERT_WAITPOINT,
                    [
                        {**w._mapping, "id": new_id("wp"), "run_id": spec.id, "token": None}
                        for w in kept_waits
                    ],
                )
            return row

        return await self.db.write(job)

    async def resolve_approval(
        self,
        *,
        approved: bool,
        run_id: str | None,
        name: str | None,
        token: str | None,
        approver: str | None,
        comment: str | None,
        data: Any,
        has_data: bool,
    ) -> tuple[RowMapping, dict[str, Any]]:
        """Approve or reject one pending approval, and re-queue its run, in one transaction.

        Raises:
            RunNotFoundError, NotFoundError: no such run, or no approval by that name/token.
            ApprovalError: the approval was already resolved, or the run already ended.
        """
        now = self.clock()

        def job(conn: Connection) -> tuple[RowMapping, dict[str, Any]]:
            wp = _find_approval(conn, run_id=run_id, name=name, token=token)
            run = conn.execute(_RUN_BY_ID, {"_id": wp["run_id"]}).one()
            if run.status in _TERMINAL:
                raise ApprovalError(
                    f"run {run.id} already ended with status {run.status}; its approval "
                    f"{wp['name']!r} can no longer be resolved",
                    run_id=run.id,
                )
            if wp["status"] != _PENDING:
                raise ApprovalError(_resolved_message(wp), run_id=run.id)
            original = loads(wp["data"])
            decision = {
                "approved": approved,
                "status": "approved" if approved else "rejected",
                "approver": approver,
                "comment": comment,
                "data": data if has_data else original,
                "edited": has_data,
                "digest": wp["digest"],
                "decided_at": now,
            }
            status = WaitpointStatus.APPROVED if approved else WaitpointStatus.REJECTED
            updated = conn.execute(
                sa.update(waitpoints)
                .where(waitpoints.c.id == wp["id"], waitpoints.c.status == _PENDING)
                .values(status=status.value, resolution=dumps(decision), resolved_at=now)
            ).rowcount
            if updated != 1:
                raise ApprovalError(f"approval {wp['name']!r} was resolved concurrently")
            _wake(conn, run.id, wp["batch"], now)
            return wp, decision

        return await self.db.write(job)

    async def send_event(
        self,
        name: str,
        payload: str,
        event_id: str | None,
        payload_value: Any,
        *,
        start: Sequence[NewRun] = (),
        errors: Sequence[dict[str, Any]] = (),
    ) -> tuple[RowMapping, bool, list[str]]:
        """Store an event, start the runs of subscribed workflows (``start``) and resume every
        run waiting for it whose filter matches, all in one transaction. ``errors`` records
        subscribers whose payload model rejected the event.

        Returns ``(event, created, resumed_run_ids)``; a re-sent event id changes nothing.
        """
        now = self.clock()
        eid = event_id or new_id("evt")

        def job(conn: Connection) -> tuple[RowMapping, bool, list[str]]:
            # Insert first: the primary key settles a race between two sends of one id.
            try:
                with conn.begin_nested():
                    conn.execute(
                        events.insert().values(
                            id=eid, name=name, payload=payload, created_at=now, resumed_runs=0
                        )
                    )
            except sa.exc.IntegrityError:
                existing = conn.execute(sa.select(events).where(events.c.id == eid)).one()
                return existing._mapping, False, []
            waiting = conn.execute(
                sa.select(
                    waitpoints.c.id, waitpoints.c.run_id, waitpoints.c.data, waitpoints.c.batch
                ).where(
                    waitpoints.c.kind == "event",
                    waitpoints.c.target == name,
                    waitpoints.c.status == _PENDING,
                )
            ).all()
            resolution = dumps(
                {"id": eid, "name": name, "payload": payload_value, "received_at": now}
            )
            resumed: list[str] = []
            for wp in waiting:
                if not matches(loads(wp.data), payload_value):
                    continue
                resolved = conn.execute(
                    sa.update(waitpoints)
                    .where(waitpoints.c.id == wp.id, waitpoints.c.status == _PENDING)
                    .values(
                        status=WaitpointStatus.COMPLETED.value,
                        resolution=resolution,
                        resolved_at=now,
                    )
                ).rowcount
                if resolved == 1:  # not timed out or resolved by someone else meanwhile
                    _wake(conn, wp.run_id, wp.batch, now)
                    resumed.append(wp.run_id)
            started = [_create_run(conn, spec, now)[1] for spec in start]
            conn.execute(
                sa.update(events)
                .where(events.c.id == eid)
                .values(
                    resumed_runs=len(resumed),
                    started_runs=sum(started),
                    errors=dumps(list(errors)) if errors else None,
                )
            )
            row = conn.execute(sa.select(events).where(events.c.id == eid)).one()
            return row._mapping, True, resumed

        return await self.db.write(job)

    async def list_events(self, *, name: str | None = None, limit: int = 50) -> list[RowMapping]:
        query = sa.select(events).order_by(events.c.created_at.desc()).limit(limit)
        if name is not None:
            query = query.where(events.c.name == name)
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])


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


# -- helpers that run inside a transaction --------------------------------------------------


def matches(pattern: Any, value: Any) -> bool:
    """True when every key of ``pattern`` (recursively) equals the same key of ``value``."""
    if pattern is None:
        return True
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(v, value[k]) for k, v in pattern.items()
        )
    return bool(pattern == value)


_HOT_SQL: dict[str, tuple[str, tuple[str, ...] | None]] = {}


def _journal_step(conn: Connection, params: dict[str, Any]) -> bool:
    """Run ``_INSERT_STEP_FENCED``; False when this worker no longer holds the run.

    This runs once per step, so it skips SQLAlchemy's execution layer and hands the SQL,
    compiled once per dialect, straight to the driver (about a third of the time per step).
    All parameters are plain str/int/float/None, which need no type processing.
    """
    dialect = conn.dialect
    compiled = _HOT_SQL.get(dialect.name)
    if compiled is None:
        statement = _INSERT_STEP_FENCED.compile(dialect=dialect)
        positions = statement.positiontup if dialect.paramstyle == "qmark" else None
        compiled = (str(statement), tuple(positions) if positions else None)
        _HOT_SQL[dialect.name] = compiled
    sql, order = compiled
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params if order is None else tuple(params[k] for k in order))
        return cursor.fetchone() is not None
    except dialect.loaded_dbapi.IntegrityError:
        # The slot is taken: an execution whose lease lapsed while it was writing journaled
        # this step first. The journal entry stands; this execution yields.
        return False
    finally:
        cursor.close()


def _cancel_requested(conn: Connection, run_id: str) -> bool:
    query = sa.select(runs.c.cancel_requested).where(runs.c.id == run_id)
    return bool(conn.execute(query).scalar())


def _stop_reason(conn: Connection, run_id: str, worker_id: str) -> str:
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


def _cancel_tree(conn: Connection, roots: Sequence[str], now: float) -> list[str]:
    """Cancel these runs and their unfinished descendants; return the ones executing.

    A run not executing ends ``cancelled`` now; an executing one gets ``cancel_requested``
    and its worker stops it (and then cancels what it started since).
    """
    executing: list[str] = []
    frontier = list(roots)
    while frontier:
        live = conn.execute(
            sa.select(runs.c.id, runs.c.status).where(
                runs.c.id.in_(frontier), runs.c.status.not_in(_TERMINAL)
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
                _finish(conn, r.id, RunStatus.CANCELLED.value, now)
        frontier = [
            c.id
            for c in conn.execute(
                sa.select(runs.c.id).where(
                    runs.c.parent_id.in_(frontier), runs.c.status.not_in(_TERMINAL)
                )
            )
        ]
    return executing


def _claimable(conn: Connection) -> None:
    """Note that this transaction makes runs claimable, so workers elsewhere get woken."""
    conn.info[CLAIMABLE_FLAG] = True


def _fence(conn: Connection, run_id: str, worker_id: str, now: float) -> None:
    params = {"_id": run_id, "_worker": worker_id, "_now": now}
    if conn.execute(_FENCE, params).rowcount != 1:
        raise LeaseLost(run_id)


def _write_side_rows(
    conn: Connection,
    log_rows: Sequence[dict[str, Any]],
    error_rows: Sequence[dict[str, Any]],
    run_id: str | None = None,
    metadata: str | None = None,
) -> None:
    if log_rows:
        conn.execute(_INSERT_LOG, list(log_rows))
    if error_rows:
        conn.execute(_INSERT_ERROR, list(error_rows))
    if metadata is not None and run_id is not None:
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(run_metadata=metadata))


def _create_run(conn: Connection, spec: NewRun, now: float) -> tuple[Mapping[Any, Any], bool]:
    if spec.idempotency_key is not None:
        by_key = {"_workflow": spec.workflow_id, "_key": spec.idempotency_key}
        existing = conn.execute(_RUN_BY_KEY, by_key).first()
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
        _claimable(conn)
    if spec.idempotency_key is None:
        conn.execute(_INSERT_RUN, values)
    else:
        try:
            with conn.begin_nested():
                conn.execute(_INSERT_RUN, values)
        except sa.exc.IntegrityError:
            # Another transaction created the run with this key first: that run is the answer.
            winner = conn.execute(
                _RUN_BY_KEY, {"_workflow": spec.workflow_id, "_key": spec.idempotency_key}
            ).first()
            if winner is None:
                raise
            return winner._mapping, False
    unset = dict.fromkeys(("output", "error", "started_at", "finished_at", "worker_id"))
    return {**unset, "lease_expires_at": None, **values}, True


def _child_resolution(child: RowMapping) -> str:
    return dumps(
        {
            "status": child["status"],
            "output": loads(child["output"]),
            "error": loads(child["error"]),
        }
    )


def _finish(
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
            _FINISH,
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
        conn.execute(_CANCEL_WAITS, {"_id": run_id, "_now": now})
    if status == RunStatus.CANCELLED.value:
        children = conn.execute(
            sa.select(runs.c.id).where(runs.c.parent_id == run_id, runs.c.status.not_in(_TERMINAL))
        ).scalars()
        _cancel_tree(conn, list(children), now)
    # Any run may be waited on: a parent that reused an idempotency key waits on a run that
    # is not its child. The waiting runs are locked first (in id order), so that children of
    # one batch finishing at the same time see each other's resolutions and exactly one of
    # them wakes the parent (no write skew under READ COMMITTED).
    waiting = sorted(
        conn.execute(
            sa.select(waitpoints.c.run_id)
            .where(
                waitpoints.c.kind == "child",
                waitpoints.c.target == run_id,
                waitpoints.c.status == _PENDING,
            )
            .distinct()
        ).scalars()
    )
    if not waiting:
        return [], finished
    conn.execute(
        sa.select(runs.c.id).where(runs.c.id.in_(waiting)).order_by(runs.c.id).with_for_update()
    ).all()
    parents = conn.execute(
        sa.select(waitpoints.c.id, waitpoints.c.run_id, waitpoints.c.batch).where(
            waitpoints.c.kind == "child",
            waitpoints.c.target == run_id,
            waitpoints.c.status == _PENDING,
        )
    ).all()
    resolution = _child_resolution(finished)
    woken: list[str] = []
    for wp in parents:
        conn.execute(
            sa.update(waitpoints)
            .where(waitpoints.c.id == wp.id)
            .values(status=WaitpointStatus.COMPLETED.value, resolution=resolution, resolved_at=now)
        )
        if _wake(conn, wp.run_id, wp.batch, now):
            woken.append(wp.run_id)
    return woken, finished


def _wake(conn: Connection, run_id: str, batch: int | None, now: float) -> bool:
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
                waitpoints.c.status == _PENDING,
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
        _claimable(conn)
    return bool(woken)


def _any_satisfied(conn: Connection, run_id: str, awaited: Sequence[int]) -> bool:
    if not awaited:
        return False
    rows = conn.execute(
        sa.select(waitpoints.c.status, waitpoints.c.batch).where(
            waitpoints.c.run_id == run_id, waitpoints.c.seq.in_(list(awaited))
        )
    ).all()
    batches: dict[int, bool] = {}
    for r in rows:
        done = r.status != _PENDING
        if r.batch is None:
            if done:
                return True
        else:
            batches[r.batch] = batches.get(r.batch, True) and done
    return any(batches.values())


def _find_approval(
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
    pending = [r for r in named if r["status"] == _PENDING]
    if pending:
        return pending[0]
    if named:
        return named[0]
    open_names = sorted({r["name"] for r in rows if r["status"] == _PENDING})
    raise NotFoundError(
        f"run {run_id} has no approval named {name!r}; pending approvals: "
        + (", ".join(open_names) or "none (the run may not have reached its approval yet)"),
        run_id=run_id,
    )


def _resolved_message(wp: RowMapping) -> str:
    decision = loads(wp["resolution"]) or {}
    who = decision.get("approver")
    by = f" by {who}" if who else ""
    return f"approval {wp['name']!r} of run {wp['run_id']} was already {wp['status']}{by}"
