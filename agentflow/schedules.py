"""Cron schedules: start a workflow's run at every tick of a cron expression, durably.

A schedule is declared on a workflow (``@workflow(schedule="0 9 * * 1-5",
timezone="Europe/Paris")``) or created at runtime (``await engine.schedules.create(...)``).
Schedules live in the database, so any number of workers can run the scheduler: each tick
starts exactly one run (see ``storage/schedule_store.py``). After downtime, the missed ticks
follow the schedule's ``missed`` policy:

* ``"latest"`` (the default): run the most recent missed tick once;
* ``"all"``: start a run for every missed tick (at most :attr:`Schedules.max_catchup`);
* ``"skip"``: run none; a tick runs only when it is picked up on time (within
  :attr:`Schedules.grace` seconds).

Every run a schedule starts has ``schedule_id`` and ``scheduled_at`` (the tick) set.
Cron expressions are evaluated by `cronsim <https://pypi.org/project/cronsim/>`_, which
follows Debian cron, including its handling of daylight saving time: a job at a fixed local
time runs once on the day the clocks go back, and at the first valid minute on the day they
go forward.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict

from ._serde import loads
from .errors import AgentflowError, ConflictError, NotFoundError
from .status import RunStatus
from .storage.records import NewRun, new_id
from .storage.schedule_store import DeclaredSchedule, ScheduleStore, TickPlan

if TYPE_CHECKING:
    from sqlalchemy.engine import RowMapping

    from .engine import Engine
    from .workflows import Workflow

__all__ = [
    "Missed",
    "Schedule",
    "ScheduleError",
    "ScheduleNotFoundError",
    "Schedules",
    "next_tick",
    "validate_cron",
    "validate_timezone",
]

log = logging.getLogger("agentflow.schedules")

Missed = Literal["skip", "latest", "all"]
_POLICIES: tuple[str, ...] = get_args(Missed)
DECLARED_SUFFIX = ":declared"
_MAX_ID = 150  # the run idempotency key "schedule:<id>:<epoch>" must fit in 200 characters
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(AgentflowError):
    """A schedule's cron expression, timezone, missed policy or id is invalid."""

    code = "invalid_schedule"


class ScheduleNotFoundError(NotFoundError):
    code = "schedule_not_found"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id {schedule_id!r}")
        self.schedule_id = schedule_id


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class Schedule(BaseModel):
    """A stored schedule. Times are timezone-aware (UTC); ticks are computed in ``timezone``.

    ``last_tick_at`` is the most recent tick the scheduler handled (its run started, or it was
    skipped by the ``missed`` policy); ``next_tick_at`` the next one due. ``declared`` marks
    the schedule of a ``@workflow(schedule=...)``, whose id is ``"<workflow id>:declared"``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    workflow_id: str
    cron: str
    timezone: str
    payload: Any = None
    missed: Missed
    paused: bool
    declared: bool
    next_tick_at: datetime
    last_tick_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Schedule:
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            cron=row["cron"],
            timezone=row["timezone"],
            payload=loads(row["payload"]),
            missed=row["missed"],
            paused=bool(row["paused"]),
            declared=bool(row["declared"]),
            next_tick_at=datetime.fromtimestamp(row["next_tick_at"], UTC),
            last_tick_at=_ts(row["last_tick_at"]),
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
        )


# -- cron arithmetic ------------------------------------------------------------------------


def validate_cron(cron: str) -> str:
    """Check a five-field cron expression (or a macro such as ``@daily``); return it tidied.

    Raises:
        ScheduleError: the expression does not parse, or never fires.
    """
    text = " ".join(str(cron).split())
    expr = _MACROS.get(text.lower(), text)
    if len(expr.split()) != 5:
        raise ScheduleError(
            f"invalid cron expression {cron!r}: expected 5 fields (minute hour day-of-month "
            "month day-of-week), or one of " + ", ".join(_MACROS)
        )
    try:
        next(CronSim(expr, datetime.now(UTC)))
    except (CronSimError, ValueError) as exc:
        raise ScheduleError(f"invalid cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise ScheduleError(f"cron expression {cron!r} never fires") from None
    return text


def validate_timezone(name: str) -> ZoneInfo:
    """The IANA timezone called ``name`` (e.g. ``"Europe/Paris"``).

    Raises:
        ScheduleError: no such timezone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def _cron(cron: str, zone: ZoneInfo, start: float, *, reverse: bool = False) -> CronSim:
    expr = _MACROS.get(cron.lower(), cron)
    return CronSim(expr, datetime.fromtimestamp(start, zone), reverse=reverse)


def next_tick(cron: str, zone: ZoneInfo, after: float) -> float:
    """The first tick strictly after ``after`` (Unix seconds), as Unix seconds.

    Raises:
        ScheduleError: the expression never fires again.
    """
    it = _cron(cron, zone, after)
    try:
        for _ in range(1000):  # a tick at or before `after` can only come from a DST fix-up
            tick = next(it).timestamp()
            if tick > after:
                return tick
    except StopIteration:
        pass
    raise ScheduleError(f"cron expression {cron!r} never fires after {_ts(after)}")


def _latest_tick(cron: str, zone: ZoneInfo, first: float, now: float) -> float:
    """The most recent tick at or before ``now``; ``first`` is known to be one."""
    try:
        tick = next(_cron(cron, zone, math.floor(now) + 1, reverse=True)).timestamp()
    except StopIteration:
        return first
    return tick if first <= tick <= now else first


def _due_ticks(cron: str, zone: ZoneInfo, first: float, now: float, cap: int) -> list[float]:
    """Every tick from ``first`` to ``now``, oldest first; the latest ``cap`` if more."""
    ticks = [first]
    it = _cron(cron, zone, first)
    try:
        while True:
            tick = next(it).timestamp()
            if tick > now:
                return ticks
            if tick > ticks[-1]:
                ticks.append(tick)
            if len(ticks) > cap:
                break
    except StopIteration:
        return ticks
    # Too many: count back from now instead of walking forward through all of them.
    latest: list[float] = []
    it = _cron(cron, zone, math.floor(now) + 1, reverse=True)
    try:
        while len(latest) < cap:
            tick = next(it).timestamp()
            if tick < first:
                break
            if tick <= now and (not latest or tick < latest[-1]):
                latest.append(tick)
    except StopIteration:
        pass
    return latest[::-1]


def plan_ticks(row: Mapping[Any, Any], now: float, *, grace: float, max_catchup: int) -> TickPlan:
    """Which ticks of a due schedule to start now under its missed policy, and its next tick.

    Raises:
        ScheduleError: the stored timezone or cron expression no longer works.
    """
    cron = row["cron"]
    zone = validate_timezone(row["timezone"])
    first = float(row["next_tick_at"])
    ticks: list[float]
    if row["missed"] == "all":
        ticks = _due_ticks(cron, zone, first, now, max_catchup)
        if ticks[0] > first:
            log.warning(
                "schedule %s missed more than %d ticks; starting the latest %d only",
                row["id"],
                max_catchup,
                len(ticks),
            )
        latest = ticks[-1]
    else:
        latest = _latest_tick(cron, zone, first, now)
        on_time = now - latest <= grace
        ticks = [latest] if row["missed"] == "latest" or on_time else []
    return TickPlan(ticks=ticks, last_tick_at=latest, next_tick_at=next_tick(cron, zone, now))


# -- the public API -------------------------------------------------------------------------


class Schedules:
    """The engine's cron schedules (``engine.schedules``); also the scheduler workers run.

    ``grace`` is how late (in seconds) a tick may be picked up and still count as on time for
    the ``"skip"`` policy; ``max_catchup`` caps the runs one ``"all"`` schedule starts after
    downtime (the latest ticks are kept).
    """

    grace: float = 60.0
    max_catchup: int = 1000
    batch: int = 100

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = ScheduleStore(engine.db, engine.clock)
        self._synced = False
        self._sync_lock: anyio.Lock | None = None

    async def create(
        self,
        workflow: Workflow[Any, Any] | str,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        missed: Missed = "latest",
        id: str | None = None,
    ) -> Schedule:
        """Start ``workflow`` with ``payload`` at every tick of ``cron`` in ``timezone``.

        The first tick is the first one after now. ``id`` defaults to a generated one.

        Raises:
            WorkflowNotFoundError: the workflow is not registered on this engine.
            ScheduleError: invalid cron expression, timezone, missed policy or id.
            PayloadValidationError: the payload does not match the workflow's model.
            ConflictError: a schedule with this id already exists.
        """
        wf = self._engine.get_workflow(workflow)
        expr = validate_cron(cron)
        zone = validate_timezone(timezone)
        _check_missed(missed)
        sid = new_id("sch") if id is None else _check_id(id)
        value = wf.validate_payload(payload)
        await self._ready()
        row = await self._store.insert(
            {
                "id": sid,
                "workflow_id": wf.id,
                "cron": expr,
                "timezone": timezone,
                "payload": wf.dump_payload(value),
                "missed": missed,
                "paused": False,
                "declared": False,
                "next_tick_at": next_tick(expr, zone, self._engine.clock()),
            }
        )
        if row is None:
            raise ConflictError(f"a schedule with id {sid!r} already exists")
        return Schedule.from_row(row)

    async def get(self, id: str) -> Schedule:
        """Raises: ScheduleNotFoundError (a NotFoundError)."""
        await self._ready()
        row = await self._store.get(id)
        if row is None:
            raise ScheduleNotFoundError(id)
        return Schedule.from_row(row)

    async def list(
        self, workflow: Workflow[Any, Any] | str | None = None
    ) -> builtins.list[Schedule]:
        """Every stored schedule (of ``workflow`` if given), by workflow and id."""
        await self._ready()
        workflow_id = workflow if workflow is None or isinstance(workflow, str) else workflow.id
        return [Schedule.from_row(r) for r in await self._store.rows(workflow_id)]

    async def pause(self, id: str) -> Schedule:
        """Stop starting runs until :meth:`resume`. Pausing a paused schedule is a no-op.

        Raises:
            ScheduleNotFoundError: no such schedule.
        """
        await self._ready()
        row = await self._store.update(id, paused=True)
        if row is None:
            raise ScheduleNotFoundError(id)
        return Schedule.from_row(row)

    async def resume(self, id: str) -> Schedule:
        """Start ticking again from now: ticks that fell while it was paused are not run.

        Raises:
            ScheduleNotFoundError: no such schedule.
        """
        current = await self.get(id)
        if not current.paused:
            return current
        zone = validate_timezone(current.timezone)
        upcoming = next_tick(current.cron, zone, self._engine.clock())
        row = await self._store.update(id, paused=False, next_tick_at=upcoming)
        if row is None:
            raise ScheduleNotFoundError(id)
        return Schedule.from_row(row)

    async def delete(self, id: str) -> None:
        """Delete a schedule. Runs it already started are not affected.

        Raises:
            ScheduleNotFoundError: no such schedule.
            ConflictError: it is declared by a workflow of this engine (pause it instead, or
                remove ``schedule=`` from the workflow).
        """
        current = await self.get(id)
        wf = self._engine.workflows.get(current.workflow_id)
        if current.declared and wf is not None and wf.schedule:
            raise ConflictError(
                f"schedule {id!r} is declared by workflow {wf.id!r} and would come back at the "
                "next start; pause it, or remove schedule= from the workflow"
            )
        if not await self._store.delete(id):
            raise ScheduleNotFoundError(id)

    async def sync_declared(self) -> builtins.list[Schedule]:
        """Store the schedules declared by this engine's workflows (done on first use).

        Creates missing rows (id ``"<workflow id>:declared"``), applies changed cron
        expressions and timezones (the schedule restarts from now), and deletes the declared
        rows of registered workflows that no longer declare a schedule.

        Raises:
            ScheduleError: some declared schedules are invalid (the valid ones are stored).
        """
        await self._engine.start()
        now = self._engine.clock()
        declared: builtins.list[DeclaredSchedule] = []
        problems: builtins.list[str] = []
        owners: builtins.list[str] = []
        for wf in self._engine.workflows.values():
            try:
                if wf.schedule:
                    declared.append(_declared(wf, now))
                owners.append(wf.id)
            except AgentflowError as exc:
                problems.append(f"workflow {wf.id!r}: {exc.message}")
        await self._store.sync_declared(declared, owners)
        self._synced = True
        if problems:
            raise ScheduleError("invalid declared schedules: " + "; ".join(problems))
        return [s for s in await self.list() if s.declared and s.workflow_id in owners]

    async def tick(self) -> float | None:
        """Start the runs of due ticks; return when the next tick is due (Unix seconds).

        Workers call this at every sweep, and sleep until the returned time at most. Only
        schedules of workflows registered on this engine are considered. Returns None when
        there is no active schedule.
        """
        await self._ready()
        workflow_ids = builtins.list(self._engine.workflows)
        if not workflow_ids:
            return None
        now = self._engine.clock()
        next_due = await self._store.next_due(workflow_ids)
        if next_due is None or next_due > now:  # the common case: one read, no write lock
            return next_due
        started = 0
        while True:
            result = await self._store.tick(
                now, workflow_ids, self._plan, self._run_for, limit=self.batch
            )
            started += result.started
            if result.due < self.batch:
                break
        if started:
            self._engine._notify_work()
        return result.next_due

    # -- internals ---------------------------------------------------------------------

    async def _ready(self) -> None:
        """Open the engine and store the declared schedules, once."""
        await self._engine.start()
        if self._synced:
            return
        if self._sync_lock is None:
            self._sync_lock = anyio.Lock()
        async with self._sync_lock:
            if not self._synced:
                try:
                    await self.sync_declared()
                except ScheduleError as exc:
                    log.error("%s", exc.message)

    def _plan(self, row: RowMapping, now: float) -> TickPlan:
        try:
            return plan_ticks(row, now, grace=self.grace, max_catchup=self.max_catchup)
        except Exception:  # a broken schedule must not hold up the others
            log.exception("schedule %s cannot compute its ticks; retrying in a minute", row["id"])
            return TickPlan(ticks=(), last_tick_at=row["last_tick_at"], next_tick_at=now + 60)

    def _run_for(self, row: RowMapping, tick: float, now: float) -> NewRun:
        wf = self._engine.get_workflow(row["workflow_id"])
        return NewRun(
            workflow_id=wf.id,
            workflow_version=wf.version,
            payload=row["payload"],
            status=RunStatus.QUEUED.value,
            available_at=now,
            priority=wf.priority,
            queue=wf.queue,
            idempotency_key=f"schedule:{row['id']}:{int(tick)}",
            idempotency_ttl=None,  # never expires: a tick starts once, ever
            priority_aging=self._engine.priority_aging,
            concurrency_key=wf.concurrency_key,
            concurrency_limit=wf.concurrency_limit,
            expires_at=None if wf.ttl is None else now + wf.ttl,
            schedule_id=row["id"],
            scheduled_at=tick,
        )


def _check_missed(missed: str) -> None:
    if missed not in _POLICIES:
        raise ScheduleError(f"missed must be 'skip', 'latest' or 'all', not {missed!r}")


def _check_id(sid: str) -> str:
    if not sid or len(sid) > _MAX_ID or any(c.isspace() for c in sid):
        raise ScheduleError(
            f"invalid schedule id {sid!r}: use 1 to {_MAX_ID} characters without spaces"
        )
    if sid.endswith(DECLARED_SUFFIX):
        raise ScheduleError(f"schedule ids ending in {DECLARED_SUFFIX!r} are reserved")
    return sid


def _declared(wf: Workflow[Any, Any], now: float) -> DeclaredSchedule:
    """The stored form of ``@workflow(schedule=...)``. Raises: ScheduleError."""
    assert wf.schedule is not None
    expr = validate_cron(wf.schedule)
    zone = validate_timezone(wf.timezone)
    _check_missed(wf.missed)
    return DeclaredSchedule(
        id=f"{wf.id}{DECLARED_SUFFIX}",
        workflow_id=wf.id,
        cron=expr,
        timezone=wf.timezone,
        payload=wf.dump_payload(_default_payload(wf)),
        missed=wf.missed,
        next_tick_at=next_tick(expr, zone, now),
    )


def _default_payload(wf: Workflow[Any, Any]) -> Any:
    """A declared schedule has no payload: ``None``, or ``{}`` for a model with defaults."""
    candidates: tuple[Any, ...] = (None, {})
    for candidate in candidates:
        try:
            return wf.validate_payload(candidate)
        except AgentflowError:
            continue
    raise ScheduleError(
        "its payload model has required fields, but a declared schedule has no payload; "
        "give the fields defaults, or create the schedule at runtime with a payload"
    )
