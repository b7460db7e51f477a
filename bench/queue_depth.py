"""Claim cost against queue depth: does taking work stay cheap when a backlog builds up?

For each depth, a fresh database gets that many queued runs (three priorities, queued over
the last ~17 minutes, inserted in bulk), then a worker's claim (``Store.claim``, ten runs at
a time, what ``Worker`` calls in its loop) is timed 50 times. A last case puts 1,000 queued
runs behind 100,000 delayed ones (due in an hour or more), which a claim must not walk.
For reference, the same run also times claims made with the query used before the claim
index, which sorted every claimable run by its priority aged at claim time.

Postgres gets ``ANALYZE`` after the bulk insert, as autovacuum would do in production;
SQLite needs no statistics (the claim names its index). ``--help`` for options.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio
import sqlalchemy as sa
from flow_control import fresh_database  # type: ignore[import-not-found]

from agentflow import Engine, RunContext, workflow
from agentflow.storage.statements import CLAIM_SELECT
from agentflow.storage.tables import runs

CLAIMS = 50


@workflow(id="bench_depth")
async def queued(ctx: RunContext) -> None:
    return None


OLD_INDEX = "CREATE INDEX ix_agentflow_runs_claim ON agentflow_runs (status, available_at)"


def sorting_at_claim_time() -> sa.Select[Any]:
    """The claim query as it was before the claim index (commit ea7f111^): queued and delayed
    runs that are due, ordered by the priority aged at claim time, which no index can hold,
    so every claimable run is sorted. Read on the plain table, with its old index."""
    peers = runs.alias("peers")
    key_has_room = sa.or_(
        runs.c.concurrency_key.is_(None),
        sa.select(sa.func.count())
        .where(peers.c.concurrency_key == runs.c.concurrency_key, peers.c.status == "running")
        .scalar_subquery()
        < sa.func.coalesce(runs.c.concurrency_limit, 1),
    )
    aged = runs.c.priority + (sa.bindparam("_now") - runs.c.available_at) / 60.0
    return (
        sa.select(*(runs.c[c.name] for c in CLAIM_SELECT.selected_columns))
        .where(
            runs.c.status.in_(["queued", "delayed"]),
            runs.c.available_at <= sa.bindparam("_now"),
            runs.c.workflow_id.in_(sa.bindparam("_workflows", expanding=True)),
            sa.or_(runs.c.expires_at.is_(None), runs.c.expires_at > sa.bindparam("_now")),
            key_has_room,
        )
        .order_by(aged.desc(), runs.c.available_at)
        .limit(sa.bindparam("_limit"))
    )


def fill(conn: sa.Connection, depth: int, delayed: int, now: float) -> None:
    """``depth`` queued runs, then ``delayed`` runs due in an hour or more."""
    rows = [
        {
            "id": f"run_{n:09d}",
            "workflow_id": "bench_depth",
            "workflow_version": "1",
            "status": "queued" if n < depth else "delayed",
            "payload": "null",
            "attempt": 1,
            "priority": n % 3,
            "priority_aging": 60.0,
            "queue": "default",
            "tags": "[]",
            "run_metadata": "{}",
            "created_at": now,
            "updated_at": now,
            "available_at": now - (n % 1000) if n < depth else now + 3600 + n,
            "cancel_requested": False,
            "executed_seconds": 0.0,
        }
        for n in range(depth + delayed)
    ]
    for start in range(0, len(rows), 10_000):
        conn.execute(runs.insert(), rows[start : start + 10_000])


def ms(seconds: list[float], q: float) -> str:
    return f"{statistics.quantiles(seconds, n=100)[int(q) - 1] * 1000:.2f}"


async def measure(url: str, depth: int, delayed: int, select: sa.Select[Any] | None) -> list[float]:
    engine = Engine(url, [queued])
    await engine.start()
    now = engine.clock()
    await engine.db.write(lambda conn: fill(conn, depth, delayed, now))
    if engine.db.dialect.name == "postgresql":
        await engine.db.write(lambda conn: conn.exec_driver_sql("ANALYZE agentflow_runs"))
    store = engine._store
    if select is not None:  # with the index that query had
        store._claim_select = engine.db.dialect.for_update(select)
        await engine.db.write(lambda conn: conn.exec_driver_sql(OLD_INDEX))
    claims = []
    for _ in range(CLAIMS):
        started = time.perf_counter()
        taken = await store.claim("bench", 10, 60.0, ["bench_depth"])
        claims.append(time.perf_counter() - started)
        assert len(taken) == 10
    await engine.close()
    return claims


async def main(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    print(
        "| backend | queued runs | delayed runs | claim p50 (ms) | claim p99 (ms) |"
        " before the claim index: p50 (ms) | ratio |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    cases = [(depth, 0) for depth in args.depths] + [(1_000, args.delayed)]
    for backend in backends:
        for depth, delayed in cases:
            async with fresh_database(backend, args.pg_url) as url:
                claims = await measure(url, depth, delayed, None)
            async with fresh_database(backend, args.pg_url) as url:
                before = await measure(url, depth, delayed, sorting_at_claim_time())
            ratio = statistics.median(before) / statistics.median(claims)
            print(
                f"| {backend} | {depth:,} | {delayed:,} | {ms(claims, 50)} | {ms(claims, 99)} |"
                f" {ms(before, 50)} | {ratio:.1f}x |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--depths", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    anyio.run(main, parser.parse_args())
