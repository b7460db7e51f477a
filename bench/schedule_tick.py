"""The cost of a schedule tick: what ``engine.schedules.tick()`` takes per started run.

Three figures per backend, on a fresh database with a fake clock (nothing waits for a real
minute to pass):

* **idle**: a tick with nothing due, what every worker pays at every sweep (one read);
* **one due**: a single ``* * * * *`` schedule, the clock moved one minute per call: one
  transaction that locks the schedule, starts its run and advances it;
* **batch**: ``--schedules`` such schedules due at once, one minute per call; reported per
  started run (schedules are handled 100 to a transaction).

Run ``python bench/schedule_tick.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

from agentflow import Engine, RunContext, workflow

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@workflow(id="bench_scheduled")
async def scheduled(ctx: RunContext) -> None:
    return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_735_689_630.0  # 2025-01-01 00:00:30 UTC

    def __call__(self) -> float:
        return self.now


async def measure(url: str, schedules: int, rounds: int) -> dict[str, float]:
    """Microseconds per tick for the idle, one-due and batch cases."""
    clock = FakeClock()
    figures: dict[str, float] = {}
    async with Engine(url, [scheduled], clock=clock) as engine:
        first = await engine.schedules.create(scheduled, "* * * * *", id="one")
        await engine.schedules.tick()  # the declared-schedule sync and warm caches

        started = time.perf_counter()
        for _ in range(rounds * 10):
            await engine.schedules.tick()
        figures["idle"] = (time.perf_counter() - started) / (rounds * 10) * 1e6

        elapsed = 0.0
        for _ in range(rounds):
            clock.now += 60
            started = time.perf_counter()
            await engine.schedules.tick()
            elapsed += time.perf_counter() - started
        figures["one due"] = elapsed / rounds * 1e6

        await engine.schedules.pause(first.id)
        for i in range(schedules):
            await engine.schedules.create(scheduled, "* * * * *", id=f"s{i:05d}")
        elapsed = 0.0
        for _ in range(rounds):
            clock.now += 60
            started = time.perf_counter()
            await engine.schedules.tick()
            elapsed += time.perf_counter() - started
        figures["batch"] = elapsed / (rounds * schedules) * 1e6
        runs = await engine.list_runs(limit=1_000_000)
        assert len(runs) == rounds * (schedules + 1), "every tick must start exactly one run"
    return figures


@contextlib.contextmanager
def database(backend: str, admin_url: str) -> Iterator[str]:
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="afschedule_"))
        try:
            yield f"sqlite:///{folder / 'bench.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"afbench_schedule_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    p.add_argument("--schedules", type=int, default=200, help="schedules in the batch (200)")
    p.add_argument("--rounds", type=int, default=50, help="timed ticks per case (50)")
    p.add_argument("--pg-admin-url", default=PG_ADMIN, help=f"Postgres server ({PG_ADMIN})")
    args = p.parse_args(argv)

    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    print(f"µs per schedule tick ({args.rounds} rounds, batch of {args.schedules} schedules)")
    print(f"{'backend':10} {'idle':>10} {'one due':>10} {'batch':>10}")
    for backend in backends:
        try:
            with database(backend, args.pg_admin_url) as url:
                figures = anyio.run(measure, url, args.schedules, args.rounds)
        except Exception as exc:
            print(f"{backend:10} skipped: {type(exc).__name__}: {exc}")
            continue
        row = " ".join(f"{figures[k]:10.0f}" for k in ("idle", "one due", "batch"))
        print(f"{backend:10} {row}")


if __name__ == "__main__":
    main()
