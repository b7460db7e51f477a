"""The claim query is served by the claim index, so claiming costs the same at any queue
depth: the planner can use the index (its predicate is in the query literally, so even a
generic Postgres plan qualifies), and the order the index holds is the priority order with
aging (see test_flow_control for the order itself)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentflow import Engine, RunContext, workflow

pytestmark = pytest.mark.anyio


_PG_TYPES = {float: "float8", int: "int8", str: "text", bool: "boolean"}


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@workflow(id="work")
async def work(ctx: RunContext) -> None:
    return None


async def test_the_claim_query_uses_the_claim_index(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([work])
    for priority in (0, 5, 1):
        await engine.trigger(work, priority=priority)
    captured: list[tuple[str, Any]] = []

    def capture(conn: Connection, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "ORDER BY claimable.claim_rank" in statement:
            captured.append((statement, parameters))

    sa.event.listen(sa.Engine, "before_cursor_execute", capture)
    try:
        [claimed] = await engine._store.claim("probe", 1, 60.0, ["work"])
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", capture)
    assert claimed["priority"] == 5
    [(statement, parameters)] = captured
    postgres = engine.db.dialect.name == "postgresql"

    def explain(conn: Connection) -> list[str]:
        if not postgres:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return [r[3] for r in plan]
        # The plan a prepared statement gets once Postgres caches a generic plan (psycopg
        # prepares statements it runs often): the index must be usable without knowing the
        # parameters. Sequential scans are off so that a tiny table does not hide the answer.
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", statement)
        values = tuple(parameters[name] for name in names)
        types = [_PG_TYPES[type(v)] for v in values]
        conn.exec_driver_sql(f"PREPARE claim_probe({', '.join(types)}) AS {numbered}")
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        literals = ", ".join(_literal(v) for v in values)  # EXECUTE takes no parameters
        plan = conn.exec_driver_sql(f"EXPLAIN EXECUTE claim_probe({literals})")
        lines = [r[0] for r in plan]
        conn.exec_driver_sql("DEALLOCATE claim_probe")
        return lines

    plan = "\n".join(await engine.db.write(explain))
    assert "ix_agentflow_runs_claim_rank" in plan, (statement, plan)
