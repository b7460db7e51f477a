"""Claims are served by indexes, so claiming costs the same at any queue depth: queued runs
are read in claim order from a partial index (its predicate is in the query literally, so
even a generic Postgres plan qualifies), and delayed runs are queued by a claim once due,
found through their own index, never by walking the ones still waiting. The order is the
priority order with aging (see test_flow_control for more of it)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentflow import Engine, RunContext, RunStatus, workflow

from ._support import FakeClock

pytestmark = pytest.mark.anyio

_PG_TYPES = {float: "float8", int: "int8", str: "text", bool: "boolean"}


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@workflow(id="work")
async def work(ctx: RunContext) -> None:
    return None


def _explain(postgres: bool, statement: str, parameters: Any) -> Callable[[Connection], str]:
    def explain(conn: Connection) -> str:
        if not postgres:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(r[3] for r in plan)
        # The plan a prepared statement gets once Postgres caches a generic plan (psycopg
        # prepares statements it runs often): the index must be usable without knowing the
        # parameters. Sequential scans are off so that a tiny table does not hide the answer.
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", statement)
        values = tuple(parameters[name] for name in names)
        types = [_PG_TYPES[type(v)] for v in values]
        conn.exec_driver_sql(f"PREPARE probe({', '.join(types)}) AS {numbered}")
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        literals = ", ".join(_literal(v) for v in values)  # EXECUTE takes no parameters
        lines = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN EXECUTE probe({literals})")]
        conn.exec_driver_sql("DEALLOCATE probe")
        return "\n".join(lines)

    return explain


async def test_claims_read_the_claim_and_delayed_indexes(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([work])
    for priority in (0, 5, 1):
        await engine.trigger(work, priority=priority)
    # Delayed runs that outrank everything once due: a claim must not take (or walk) them.
    for _ in range(3):
        await engine.trigger(work, priority=1000, delay=3600)
    captured: list[tuple[str, Any]] = []

    def capture(conn: Connection, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "AS claimable" in statement or "AS due" in statement:
            captured.append((statement, parameters))

    sa.event.listen(sa.Engine, "before_cursor_execute", capture)
    try:
        [claimed] = await engine._store.claim("probe", 1, 60.0, ["work"])
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", capture)
    assert claimed["priority"] == 5
    delayed = await engine.list_runs(status="delayed")
    assert [r.priority for r in delayed] == [1000] * 3
    [(select, select_params)] = captured
    postgres = engine.db.dialect.name == "postgresql"
    plan = await engine.db.write(_explain(postgres, select, select_params))
    assert "ix_agentflow_runs_claim_rank" in plan, (select, plan)

    # Queueing the due delayed runs goes to the driver directly: explain the SQL it sends.
    def compiled(conn: Connection) -> tuple[str, Any]:
        statement = engine._store._queue_due.statement.compile(dialect=conn.dialect)
        values = {"_now": time.time()}
        if conn.dialect.paramstyle == "qmark":
            return str(statement), tuple(values[k] for k in statement.positiontup or ())
        return str(statement), values

    queue_due, due_params = await engine.db.read(compiled)
    plan = await engine.db.write(_explain(postgres, queue_due, due_params))
    assert "ix_agentflow_runs_delayed" in plan, (queue_due, plan)


async def test_a_delayed_run_is_claimed_in_rank_order_once_due(
    make_engine: Callable[..., Engine],
) -> None:
    clock = FakeClock()
    engine = make_engine([work], clock=clock, priority_aging=60)
    queued = await engine.trigger(work, priority=0)
    later = await engine.trigger(work, priority=5, delay=30)
    store = engine._store
    [first] = await store.claim("probe", 1, 60.0, ["work"])
    assert first["id"] == queued.id  # the other is not due yet
    assert (await engine.get_run(later.id)).status is RunStatus.DELAYED

    queued = await engine.trigger(work, priority=0)
    clock.offset += 60
    # Due since 30 s, priority 5: it ranks as if queued 300 s before its time, so before a
    # priority-0 run queued a minute ago.
    [second] = await store.claim("probe", 1, 60.0, ["work"])
    assert second["id"] == later.id
    [third] = await store.claim("probe", 1, 60.0, ["work"])
    assert third["id"] == queued.id


@pytest.mark.parametrize("aging", [0, -1, math.inf, math.nan, 1e300])
def test_priority_aging_must_be_a_positive_finite_duration(aging: float) -> None:
    with pytest.raises(ValueError, match="priority_aging must be a positive number of seconds"):
        Engine("sqlite://", priority_aging=aging)
