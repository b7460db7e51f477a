"""The SQL of cron schedules: one transaction per public method, like ``store.py``.

The cron arithmetic lives in ``agentflow.schedules``; the tick transaction takes it as a
``plan`` callback so that deciding which ticks to start and starting them happen under the
same row lock. Two guarantees make a tick start exactly once:

* due schedules are selected ``FOR UPDATE SKIP LOCKED`` (Postgres; SQLite has one writer at a
  time), and ``next_tick_at`` moves past ``now`` in the same transaction that creates the runs;
* every tick's run carries the idempotency key ``schedule:<id>:<tick epoch>``, which never
  expires, so even a scheduler working from a stale row cannot start a tick twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .database import Database
from .records import NewRun
from .tables import schedules
from .transactions import create_run

__all__ = ["DeclaredSchedule", "ScheduleStore", "TickPlan", "TickResult"]

Clock = Callable[[], float]

_BY_ID = sa.select(schedules).where(schedules.c.id == sa.bindparam("_id"))
_ACTIVE = sa.and_(
    schedules.c.paused == sa.false(),
    schedules.c.workflow_id.in_(sa.bindparam("_workflows", expanding=True)),
)
_NEXT_DUE = sa.select(sa.func.min(schedules.c.next_tick_at)).where(_ACTIVE)
_DUE = (
    sa.select(schedules)
    .where(_ACTIVE, schedules.c.next_tick_at <= sa.bindparam("_now"))
    .order_by(schedules.c.next_tick_at, schedules.c.id)
    .limit(sa.bindparam("_limit"))
)
_ADVANCE = (
    sa.update(schedules)
    .where(schedules.c.id == sa.bindparam("_id"))
    .values(
        last_tick_at=sa.bindparam("_last", type_=sa.Float),
        next_tick_at=sa.bindparam("_next", type_=sa.Float),
        updated_at=sa.bindparam("_now", type_=sa.Float),
    )
)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What one due schedule does now: the ticks to start, and where it moves to."""

    ticks: Sequence[float]
    last_tick_at: float | None
    next_tick_at: float


@dataclass(frozen=True, slots=True)
class TickResult:
    started: int  # runs created (ticks already started elsewhere are not counted)
    due: int  # due schedules handled in this transaction
    next_due: float | None  # the earliest next tick of the active schedules, after this one


@dataclass(frozen=True, slots=True)
class DeclaredSchedule:
    """A schedule declared in code (``@workflow(schedule=...)``), as it should be stored."""

    id: str
    workflow_id: str
    cron: str
    timezone: str
    payload: str
    missed: str
    next_tick_at: float  # used when the row is created, or its cron or timezone changed


Planner = Callable[[RowMapping, float], TickPlan]
RunFactory = Callable[[RowMapping, float, float], NewRun]  # (schedule, tick, now) -> run


class ScheduleStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._due = db.dialect.for_update(_DUE, skip_locked=True)

    async def insert(self, values: Mapping[str, Any]) -> RowMapping | None:
        """Insert a schedule; None when one with the same id exists."""
        now = self.clock()
        row = {**values, "created_at": now, "updated_at": now, "last_tick_at": None}

        def job(conn: Connection) -> RowMapping | None:
            try:
                with conn.begin_nested():
                    conn.execute(schedules.insert(), row)
            except sa.exc.IntegrityError:
                return None
            return conn.execute(_BY_ID, {"_id": row["id"]}).one()._mapping

        return await self.db.write(job)

    async def get(self, schedule_id: str) -> RowMapping | None:
        row = await self.db.read(lambda conn: conn.execute(_BY_ID, {"_id": schedule_id}).first())
        return None if row is None else row._mapping

    async def rows(self, workflow_id: str | None = None) -> list[RowMapping]:
        query = sa.select(schedules).order_by(schedules.c.workflow_id, schedules.c.id)
        if workflow_id is not None:
            query = query.where(schedules.c.workflow_id == workflow_id)
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def update(self, schedule_id: str, **values: Any) -> RowMapping | None:
        """Set columns of one schedule; None when there is no such schedule."""
        now = self.clock()
        statement = (
            sa.update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(**values, updated_at=now)
            .returning(*schedules.c)
        )

        def job(conn: Connection) -> RowMapping | None:
            row = conn.execute(statement).first()
            return None if row is None else row._mapping

        return await self.db.write(job)

    async def delete(self, schedule_id: str) -> bool:
        statement = sa.delete(schedules).where(schedules.c.id == schedule_id)
        return await self.db.write(lambda conn: conn.execute(statement).rowcount > 0)

    async def sync_declared(
        self, declared: Sequence[DeclaredSchedule], workflow_ids: Sequence[str]
    ) -> None:
        """Make the declared rows of ``workflow_ids`` match ``declared``, in one transaction.

        A row is created when missing; its cron and timezone (which restart the schedule from
        now) or its payload and missed policy are updated when the code changed them; declared
        rows of those workflows that are no longer declared are deleted. Whether a declared
        schedule is paused is left alone: pausing is an operator's decision.
        """
        now = self.clock()
        wanted = {d.id: d for d in declared}

        def job(conn: Connection) -> None:
            stored = {
                r.id: r._mapping
                for r in conn.execute(
                    sa.select(schedules).where(
                        schedules.c.declared == sa.true(),
                        schedules.c.workflow_id.in_(list(workflow_ids)),
                    )
                )
            }
            for sid in sorted(set(stored) - set(wanted)):
                conn.execute(sa.delete(schedules).where(schedules.c.id == sid))
            for sid, want in sorted(wanted.items()):
                row = stored.get(sid)
                if row is None:
                    _insert_declared(conn, want, now)
                    continue
                changes = _declared_changes(row, want)
                if changes:
                    conn.execute(
                        sa.update(schedules)
                        .where(schedules.c.id == sid)
                        .values(**changes, updated_at=now)
                    )

        await self.db.write(job)

    async def next_due(self, workflow_ids: Sequence[str]) -> float | None:
        """The earliest next tick among the active schedules of these workflows."""
        params = {"_workflows": list(workflow_ids)}
        return await self.db.read(lambda conn: conn.execute(_NEXT_DUE, params).scalar())

    async def tick(
        self,
        now: float,
        workflow_ids: Sequence[str],
        plan: Planner,
        make_run: RunFactory,
        *,
        limit: int = 100,
    ) -> TickResult:
        """Start the due ticks of up to ``limit`` schedules and advance them, atomically."""
        select = self._due
        params = {"_now": now, "_limit": limit, "_workflows": list(workflow_ids)}

        def job(conn: Connection) -> TickResult:
            due = [r._mapping for r in conn.execute(select, params)]
            started = 0
            advances: list[dict[str, Any]] = []
            for row in due:
                decided = plan(row, now)
                for tick in decided.ticks:
                    _run, created = create_run(conn, make_run(row, tick, now), now)
                    started += created
                advances.append(
                    {
                        "_id": row["id"],
                        "_last": decided.last_tick_at,
                        "_next": decided.next_tick_at,
                        "_now": now,
                    }
                )
            if advances:
                conn.execute(_ADVANCE, advances)
            next_due = conn.execute(_NEXT_DUE, {"_workflows": params["_workflows"]}).scalar()
            return TickResult(started=started, due=len(due), next_due=next_due)

        return await self.db.write(job)


def _insert_declared(conn: Connection, want: DeclaredSchedule, now: float) -> None:
    values = {
        "id": want.id,
        "workflow_id": want.workflow_id,
        "cron": want.cron,
        "timezone": want.timezone,
        "payload": want.payload,
        "missed": want.missed,
        "paused": False,
        "declared": True,
        "next_tick_at": want.next_tick_at,
        "last_tick_at": None,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with conn.begin_nested():
            conn.execute(schedules.insert(), values)
    except sa.exc.IntegrityError:
        # Another engine declared it at the same moment (same code, same row), or a runtime
        # schedule already uses the id: either way the stored row stands.
        pass


def _declared_changes(row: RowMapping, want: DeclaredSchedule) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if (row["cron"], row["timezone"]) != (want.cron, want.timezone):
        changes.update(cron=want.cron, timezone=want.timezone, next_tick_at=want.next_tick_at)
    if row["missed"] != want.missed:
        changes["missed"] = want.missed
    if row["payload"] != want.payload:
        changes["payload"] = want.payload
    return changes
