"""Flow control costs: claiming with per-key concurrency on vs off, and an event fan-out.

* claim throughput: 1,000 one-step runs are queued first, then one worker (concurrency 50)
  drains them; runs/s with no concurrency key, and with keys over 50 customers (at most one
  run per key at a time, so every claim must check its key);
* event fan-out: 100 runs wait on ``ctx.wait_for_event("go")``; one ``send_event`` resolves
  all of them and re-queues them in one transaction. Reported: the ``send_event`` call, and
  the time until all 100 have completed.

Each measurement gets a fresh SQLite file or Postgres database. ``--help`` for options.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import sqlalchemy as sa

from agentflow import Engine, RunContext, RunStatus, workflow


async def noop() -> None:
    return None


@workflow(id="bench_claim", concurrency_limit=1)
async def one_step(ctx: RunContext, n: int) -> None:
    await ctx.step("noop", noop)


@workflow(id="bench_fanout")
async def waits_for_go(ctx: RunContext) -> None:
    await ctx.wait_for_event("go")


@asynccontextmanager
async def fresh_database(backend: str, pg_url: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    name = f"bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


async def claim_throughput(url: str, runs: int, keys: int) -> float:
    engine = Engine(url, [one_step])
    handles = [
        await engine.trigger(one_step, n, concurrency_key=f"customer-{n % keys}" if keys else None)
        for n in range(runs)
    ]
    async with anyio.create_task_group() as tg:
        started = time.perf_counter()
        worker = await tg.start(engine.worker(concurrency=50, poll_interval=0.01).run)
        for handle in handles:
            await handle.wait()
        elapsed = time.perf_counter() - started
        worker.stop()
    done = await engine.list_runs(workflow="bench_claim", status="completed", limit=runs + 1)
    assert len(done) == runs, f"only {len(done)} of {runs} runs completed"
    await engine.close()
    return runs / elapsed


async def fan_out(url: str, waiting: int) -> tuple[float, float]:
    engine = Engine(url, [waits_for_go])
    async with anyio.create_task_group() as tg:
        worker = await tg.start(engine.worker(concurrency=50, poll_interval=0.01).run)
        handles = [await engine.trigger(waits_for_go) for _ in range(waiting)]
        # The waits live in the database: poll until every run has parked on its wait.
        while len(await engine.list_waitpoints(kind="event", status="pending")) < waiting:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        started = time.perf_counter()
        event = await engine.send_event("go", {})
        sent = time.perf_counter() - started
        assert event.resumed_runs == waiting
        for handle in handles:
            await handle.wait()
        total = time.perf_counter() - started
        worker.stop()
    done = await engine.list_runs(status=RunStatus.COMPLETED, limit=waiting + 1)
    assert len(done) == waiting
    await engine.close()
    return sent, total


async def main(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    print("| backend | measurement | figure |\n|---|---|---:|")
    for backend in backends:
        for keys in (0, args.keys):
            async with fresh_database(backend, args.pg_url) as url:
                rate = await claim_throughput(url, args.runs, keys)
            label = f"claim {args.runs} runs, " + (f"{keys} keys (1 each)" if keys else "no key")
            print(f"| {backend} | {label} | {rate:,.0f} runs/s |")
        async with fresh_database(backend, args.pg_url) as url:
            sent, total = await fan_out(url, args.waiting)
        print(f"| {backend} | send_event resuming {args.waiting} waits | {sent * 1000:.1f} ms |")
        print(f"| {backend} | ...until all {args.waiting} completed | {total * 1000:.0f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=100)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    anyio.run(main, parser.parse_args())
