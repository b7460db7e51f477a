"""Bounded reads of a run: a page of its logs, its newest logs, the newest journal step, log
entry and stream chunk (what the watcher fingerprints), and the approvals holding it up.

Each is one indexed query (the approvals one per level of child runs): ``agentflow_steps`` is
keyed by (run_id, seq), logs and stream chunks are indexed by (run_id, id), waitpoints by
(run_id, seq), so none of them reads more rows than it returns.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentflow.models import LogEntry, WaitpointRecord
from agentflow.status import WaitpointStatus
from agentflow.storage.tables import logs, runs, steps, stream_chunks, waitpoints

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = [
    "Activity",
    "approvals_of",
    "awaited_activity",
    "latest_activity",
    "log_page",
    "recent_logs",
]

MAX_CHILD_DEPTH = 8
"""How many levels of child runs are searched for the approvals a run waits on."""

Activity = tuple[int | None, int | None, int | None]
"""The run's last journal step seq, last log entry id and last stream chunk id."""


async def latest_activity(engine: Engine, run_id: str) -> Activity:
    """What a run appended last: changes whenever a step, log entry or chunk is added."""

    def last(column: sa.ColumnElement[int], run: sa.ColumnElement[str]) -> sa.ScalarSelect[int]:
        return sa.select(sa.func.max(column)).where(run == run_id).scalar_subquery()

    query = sa.select(
        last(steps.c.seq, steps.c.run_id),
        last(logs.c.id, logs.c.run_id),
        last(stream_chunks.c.id, stream_chunks.c.run_id),
    )

    def read(conn: Connection) -> Activity:
        step, log, chunk = conn.execute(query).one()
        return step, log, chunk

    return await engine.db.read(read)


def _awaited_children() -> sa.CTE:
    """The runs a run waits for through pending child waits, and theirs (UNION: no cycles)."""
    first = sa.select(waitpoints.c.target.label("id")).where(
        waitpoints.c.run_id == sa.bindparam("_id"),
        waitpoints.c.kind == "child",
        waitpoints.c.status == WaitpointStatus.PENDING.value,
    )
    tree = first.cte("awaited", recursive=True)
    deeper = waitpoints.alias("deeper")
    return tree.union(
        sa.select(deeper.c.target).where(
            deeper.c.run_id == tree.c.id,
            deeper.c.kind == "child",
            deeper.c.status == WaitpointStatus.PENDING.value,
        )
    )


_AWAITED = _awaited_children()
_AWAITED_ACTIVITY = sa.select(sa.func.count(), sa.func.max(runs.c.updated_at)).where(
    runs.c.id.in_(sa.select(_AWAITED.c.id))
)


async def awaited_activity(engine: Engine, run_id: str) -> tuple[int, float | None]:
    """How many child runs a run waits for (at any depth) and when the latest of them last
    changed: a child stopping for an approval shows here while the parent itself sits still."""

    def read(conn: Connection) -> tuple[int, float | None]:
        count, latest = conn.execute(_AWAITED_ACTIVITY, {"_id": run_id}).one()
        return count, latest

    return await engine.db.read(read)


async def log_page(
    engine: Engine, run_id: str, *, after_id: int, limit: int
) -> tuple[list[LogEntry], bool]:
    """Up to ``limit`` log entries with an id above ``after_id``, oldest first, and whether
    more follow."""
    entries = await engine.get_logs(run_id, after_id=after_id, limit=limit + 1)
    return entries[:limit], len(entries) > limit


async def recent_logs(engine: Engine, run_id: str, *, limit: int) -> tuple[list[LogEntry], bool]:
    """The newest ``limit`` log entries, oldest first, and whether older ones were left out."""
    query = sa.select(logs).where(logs.c.run_id == run_id).order_by(logs.c.id.desc())
    rows = await engine.db.read(
        lambda conn: [r._mapping for r in conn.execute(query.limit(limit + 1))]
    )
    return [LogEntry.from_row(r) for r in reversed(rows[:limit])], len(rows) > limit


async def approvals_of(
    engine: Engine, run_id: str, *, pending: bool = True
) -> list[WaitpointRecord]:
    """The approvals a run waits on: its own, then those of the child runs it waits for (and
    of theirs, up to :data:`MAX_CHILD_DEPTH` levels), oldest first within each level.

    A workflow that runs a child workflow and waits for it is held up by the child's approval
    as much as by its own, so that is where a caller is sent to answer it (each approval
    names its run). ``pending=False`` also returns decided approvals, of every child the
    run ever waited for. One indexed query per level of children.
    """
    query = waitpoints.select().where(
        waitpoints.c.run_id.in_(sa.bindparam("_runs", expanding=True)),
        waitpoints.c.kind.in_(("approval", "child")),
    )
    if pending:
        query = query.where(waitpoints.c.status == WaitpointStatus.PENDING.value)
    query = query.order_by(waitpoints.c.created_at, waitpoints.c.seq)
    found: list[WaitpointRecord] = []
    seen = {run_id}
    level = [run_id]

    def read(conn: Connection, run_ids: list[str]) -> list[WaitpointRecord]:
        return [
            WaitpointRecord.from_row(r._mapping) for r in conn.execute(query, {"_runs": run_ids})
        ]

    for _ in range(MAX_CHILD_DEPTH + 1):
        records = await engine.db.read(functools.partial(read, run_ids=level))
        found += [wp for wp in records if wp.kind == "approval"]
        children = [
            wp.target
            for wp in records
            if wp.kind == "child" and wp.target is not None and wp.target not in seen
        ]
        seen.update(children)
        if not children:
            break
        level = children
    return found
