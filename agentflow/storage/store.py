"""Every read and write agentflow makes, one transaction per public method.

Each method builds a job ``fn(conn)`` that runs on a database thread (see ``database.py``).
Statements are SQLAlchemy Core on the SQLModel tables, built once at import time so the
compiled form is cached (``statements.py``); the steps jobs share are in ``transactions.py``.
The invariants the rest of the engine relies on live here:

* a worker writes to a run only while it holds the run's lease (``tx.fence``); a worker that
  lost its lease gets ``LeaseLost`` and abandons the run;
* resolving a waitpoint and re-queuing its run happen in the same transaction (``tx.wake``);
* a run that finishes resolves the waitpoints of a parent waiting on it, in the same
  transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .._serde import dumps, loads
from ..errors import ApprovalError, ConflictError, RunNotFoundError
from ..flow import Queue
from ..status import CLAIMABLE, RunStatus, WaitpointStatus
from . import transactions as tx
from .admission import admit
from .database import Database
from .migrate import upgrade
from .records import (
    CancelRequested,
    Journal,
    LeaseLost,
    NewRun,
    NewWaitpoint,
    RunFilter,
    new_id,
)
from .statements import (
    CLAIM_SELECT,
    CLAIM_UPDATE,
    DUE_DELAYED,
    INSERT_CHUNK,
    INSERT_STEP,
    INSERT_WAITPOINT,
    PENDING,
    RUN_BY_ID,
    STEPS_OF_RUN,
    TERMINAL_VALUES,
    WAITPOINTS_OF_RUN,
    queue_due,
)
from .tables import attempt_errors, events, logs, runs, steps, stream_chunks, waitpoints

# Also re-exported: the engine, worker, context and schedules import these value types from here.
__all__ = ["Store"]

Clock = Callable[[], float]


class Store:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._claim_select = db.dialect.for_update(CLAIM_SELECT)
        self._queue_due = tx.DriverStatement(queue_due(db.dialect.for_update(DUE_DELAYED)))

    # -- schema --------------------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> str | None:
        dialect = self.db.dialect
        return await self.db.write(lambda conn: upgrade(conn, dialect, revision))

    # -- runs ----------------------------------------------------------------------------

    async def create_run(self, spec: NewRun) -> tuple[Mapping[Any, Any], bool]:
        """Insert a run; with an idempotency key still alive, return the existing run instead."""
        now = self.clock()
        return await self.db.write(lambda conn: tx.create_run(conn, spec, now))

    async def get_run(self, run_id: str) -> RowMapping:
        row = await self.db.read(lambda conn: conn.execute(RUN_BY_ID, {"_id": run_id}).first())
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

    async def changed_runs(
        self, filters: RunFilter, *, after: tuple[float, str], limit: int = 500
    ) -> list[RowMapping]:
        """Runs whose (updated_at, id) comes after ``after``, oldest change first."""
        updated_at, run_id = after
        query = filters.apply(
            sa.select(runs)
            .where(
                sa.or_(
                    runs.c.updated_at > updated_at,
                    sa.and_(runs.c.updated_at == updated_at, runs.c.id > run_id),
                )
            )
            .order_by(runs.c.updated_at, runs.c.id)
            .limit(limit)
        )
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def finished_among(self, run_ids: Sequence[str]) -> set[str]:
        """Which of these runs have ended."""
        ids = list(run_ids)

        def job(conn: Connection) -> set[str]:
            done: set[str] = set()
            for i in range(0, len(ids), 500):
                query = sa.select(runs.c.id).where(
                    runs.c.id.in_(ids[i : i + 500]), runs.c.status.in_(TERMINAL_VALUES)
                )
                done.update(conn.execute(query).scalars())
            return done

        return await self.db.read(job)

    async def get_steps(
        self, run_id: str, *, finished_after: float | None = None
    ) -> list[RowMapping]:
        query = STEPS_OF_RUN.order_by(steps.c.seq)
        if finished_after is not None:
            query = query.where(steps.c.finished_at > finished_after)
        return await self.db.read(
            lambda conn: [r._mapping for r in conn.execute(query, {"_id": run_id})]
        )

    async def get_waitpoints(
        self,
        *,
        run_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        token: str | None = None,
    ) -> list[RowMapping]:
        query = sa.select(waitpoints).order_by(waitpoints.c.created_at, waitpoints.c.seq)
        if token is not None:
            query = query.where(waitpoints.c.token == token)
        if run_id is not None:
            query = query.where(waitpoints.c.run_id == run_id)
        if kind is not None:
            query = query.where(waitpoints.c.kind == kind)
        if status is not None:
            query = query.where(waitpoints.c.status == status)
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def get_logs(
        self, run_id: str, *, after_id: int = 0, limit: int | None = None
    ) -> list[RowMapping]:
        query = (
            sa.select(logs)
            .where(logs.c.run_id == run_id, logs.c.id > after_id)
            .order_by(logs.c.id)
            .limit(limit)
        )
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def append_stream(self, run_id: str, stream: str, data: str) -> None:
        row = {"run_id": run_id, "stream": stream, "data": data, "ts": self.clock()}
        await self.db.write(lambda conn: conn.execute(INSERT_CHUNK, row))

    async def get_stream(
        self, run_id: str, *, stream: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[RowMapping]:
        query = (
            sa.select(stream_chunks)
            .where(stream_chunks.c.run_id == run_id, stream_chunks.c.id > after_id)
            .order_by(stream_chunks.c.id)
            .limit(limit)
        )
        if stream is not None:
            query = query.where(stream_chunks.c.stream == stream)
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
    ) -> list[dict[str, Any]]:
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
        }

        queue_due_runs = self._queue_due

        def job(conn: Connection) -> list[dict[str, Any]]:
            queue_due_runs.execute(conn, {"_now": now}).close()
            candidates = []
            for r in conn.execute(select, params).all():
                if r.cancel_requested:  # asked to cancel while it was being handed back
                    tx.finish(conn, r.id, RunStatus.CANCELLED.value, now)
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
            taken = conn.execute(
                CLAIM_UPDATE,
                {"_ids": ids, "_owner": worker_id, "_lease": now + lease, "_now": now},
            )
            # The rows as claimed, in claim order, except that ``started_at`` is the one read
            # before the claim (the worker tells a first start from a resumed run by it).
            by_id = {r.id: r._mapping for r in taken}
            return [{**by_id[r["id"]], "started_at": r["started_at"]} for r in rows]

        return await self.db.write(job)

    async def load_journal(self, run_id: str) -> Journal:
        def job(conn: Connection) -> Journal:
            params = {"_id": run_id}
            return Journal(
                steps={r.seq: r._mapping for r in conn.execute(STEPS_OF_RUN, params)},
                waitpoints={r.seq: r._mapping for r in conn.execute(WAITPOINTS_OF_RUN, params)},
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
                tx.fence(conn, run_id, worker_id, now)
                if conn.execute(
                    sa.select(runs.c.cancel_requested).where(runs.c.id == run_id)
                ).scalar():
                    raise CancelRequested(run_id)
                ids = [tx.create_run(conn, child, now)[0]["id"] for child in children]
                step["output"] = dumps(ids[0] if single else ids)
                conn.execute(INSERT_STEP, step)
            elif not tx.journal_step(conn, {**step, "_worker": worker_id, "_running": "running"}):
                tx.stop_reason(conn, run_id, worker_id)
                raise CancelRequested(run_id)
            tx.write_side_rows(conn, logs, errors, run_id, metadata)

        # The common case, a step and nothing else, is the one fenced insert.
        alone = single and not (children or logs or errors or metadata is not None)
        await self.db.write(job, one_statement=alone)

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
            tx.fence(conn, run_id, worker_id, now)
            tx.write_side_rows(conn, logs, errors, run_id, metadata)

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
                return tx.stop_reason(conn, run_id, worker_id)
            tx.write_side_rows(conn, logs, errors, run_id, metadata)
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
                    "status": PENDING,
                    "token": new_id("tok") if wp.kind == "approval" else None,
                }
                child = children.get(wp.target or "") if wp.kind == "child" else None
                if child is not None and child["status"] in TERMINAL_VALUES:
                    values["status"] = WaitpointStatus.COMPLETED.value
                    values["resolved_at"] = now
                    values["resolution"] = tx.child_resolution(child)
                conn.execute(INSERT_WAITPOINT, values)
            if tx.any_satisfied(conn, run_id, awaited):
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == run_id)
                    .values(status=RunStatus.QUEUED.value, available_at=now)
                )
                tx.claimable(conn)
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
                tx.fence(conn, run_id, worker_id, now)
            tx.write_side_rows(conn, logs, errors, run_id, metadata)
            return tx.finish(
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
            tx.fence(conn, run_id, worker_id, now)
            tx.write_side_rows(conn, logs, errors, run_id, metadata)
            if tx.cancel_requested(conn, run_id):
                tx.finish(conn, run_id, RunStatus.CANCELLED.value, now)
                return
            conn.execute(
                sa.delete(steps).where(steps.c.run_id == run_id, steps.c.status == "failed")
            )
            tx.claimable(conn)
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
                if tx.cancel_requested(conn, run_id):
                    tx.finish(conn, run_id, RunStatus.CANCELLED.value, now)
            tx.claimable(conn)
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
                    .where(waitpoints.c.status == PENDING, waitpoints.c.timeout_at <= now)
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
                    .where(waitpoints.c.id == wp.id, waitpoints.c.status == PENDING)
                    .values(status=fired.value, resolved_at=now, resolution=resolution)
                )
            for run_id, wp_batch in {(wp.run_id, wp.batch) for wp in due}:
                tx.wake(conn, run_id, wp_batch, now)
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
                    tx.finish(conn, run.id, RunStatus.CANCELLED.value, now)
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
                tx.claimable(conn)
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
                tx.finish(conn, run.id, RunStatus.EXPIRED.value, now, error=dumps(error))
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
            row = conn.execute(RUN_BY_ID, {"_id": run_id}).first()
            if row is None:
                raise RunNotFoundError(run_id)
            if row.status in TERMINAL_VALUES:
                raise ConflictError(
                    f"run {run_id} already ended with status {row.status}; nothing to cancel",
                    run_id=run_id,
                )
            executing = tx.cancel_tree(conn, [run_id], now)
            updated = conn.execute(RUN_BY_ID, {"_id": run_id}).one()
            return updated._mapping, executing

        return await self.db.write(job)

    async def cancel_where(self, filters: RunFilter) -> tuple[list[str], list[str]]:
        """Cancel every unfinished run matching ``filters`` (and their descendants).

        Returns ``(cancelled_or_requested_ids, executing_ids)``.
        """
        now = self.clock()

        def job(conn: Connection) -> tuple[list[str], list[str]]:
            query = filters.apply(sa.select(runs.c.id)).where(runs.c.status.not_in(TERMINAL_VALUES))
            ids = list(conn.execute(query.order_by(runs.c.id)).scalars())
            return ids, tx.cancel_tree(conn, ids, now)

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
            unresolved = [w for w in kept_waits if w.status in (PENDING, "cancelled")]
            if unresolved:
                w = unresolved[0]
                raise ConflictError(
                    f"cannot keep the journal up to step #{before_seq}: the {w.kind} wait "
                    f"{w.name!r} at #{w.seq} never resolved; fork from #{w.seq} or earlier",
                    run_id=source_id,
                )
            row, _ = tx.create_run(conn, spec, now)
            if kept_steps:
                conn.execute(INSERT_STEP, [{**s._mapping, "run_id": spec.id} for s in kept_steps])
            if kept_waits:
                conn.execute(
                    INSERT_WAITPOINT,
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
            wp = tx.find_approval(conn, run_id=run_id, name=name, token=token)
            run = conn.execute(RUN_BY_ID, {"_id": wp["run_id"]}).one()
            if run.status in TERMINAL_VALUES:
                raise ApprovalError(
                    f"run {run.id} already ended with status {run.status}; its approval "
                    f"{wp['name']!r} can no longer be resolved",
                    run_id=run.id,
                )
            if wp["status"] != PENDING:
                raise ApprovalError(tx.resolved_message(wp), run_id=run.id)
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
                .where(waitpoints.c.id == wp["id"], waitpoints.c.status == PENDING)
                .values(status=status.value, resolution=dumps(decision), resolved_at=now)
            ).rowcount
            if updated != 1:
                raise ApprovalError(f"approval {wp['name']!r} was resolved concurrently")
            tx.wake(conn, run.id, wp["batch"], now)
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
                    waitpoints.c.status == PENDING,
                )
            ).all()
            resolution = dumps(
                {"id": eid, "name": name, "payload": payload_value, "received_at": now}
            )
            resumed: list[str] = []
            for wp in waiting:
                if not tx.matches(loads(wp.data), payload_value):
                    continue
                resolved = conn.execute(
                    sa.update(waitpoints)
                    .where(waitpoints.c.id == wp.id, waitpoints.c.status == PENDING)
                    .values(
                        status=WaitpointStatus.COMPLETED.value,
                        resolution=resolution,
                        resolved_at=now,
                    )
                ).rowcount
                if resolved == 1:  # not timed out or resolved by someone else meanwhile
                    tx.wake(conn, wp.run_id, wp.batch, now)
                    resumed.append(wp.run_id)
            started = [tx.create_run(conn, spec, now)[1] for spec in start]
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
