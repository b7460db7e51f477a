"""agentflow vs DBOS Transact on the same workloads, in one process run.

Workloads (each on a fresh SQLite file or a fresh Postgres database):

* sequential: one workflow of ``--steps`` trivial steps, started and awaited one at a time,
  ``--n-seq`` times (agentflow: ``engine.trigger`` + ``handle.result``, in-process worker;
  DBOS: a direct call of the ``@DBOS.workflow`` function, its normal synchronous path);
* queued: ``--n-queued`` such workflows put on a queue at once and run 50 at a time
  (agentflow: trigger them all, worker ``concurrency=50``, then wait for every result;
  DBOS: ``DBOS.register_queue(worker_concurrency=50)``, enqueue them all, then
  ``get_result`` on every handle).

Figures are steps per second of wall time and the wall time per step in microseconds (the
whole cost of a workflow divided by its steps, so starting and finishing runs is included).

Run ``python bench/engine_vs_dbos.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from dbos import DBOS

from agentflow import Engine, RunContext, workflow

Backend = Literal["sqlite", "postgres"]
Sync = Literal["normal", "full"]

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- the workload, once per framework ------------------------------------------------------


async def af_noop(i: int) -> int:
    return i


@workflow(id="bench_steps")
async def af_steps(ctx: RunContext, steps: int) -> int:
    for i in range(steps):
        await ctx.step(f"s{i}", af_noop, i)
    return steps


@DBOS.step()
def dbos_noop(i: int) -> int:
    return i


@DBOS.workflow()
def dbos_steps(steps: int) -> int:
    for i in range(steps):
        dbos_noop(i)
    return steps


@DBOS.step()
async def dbos_anoop(i: int) -> int:
    return i


@DBOS.workflow()
async def dbos_asteps(steps: int) -> int:
    for i in range(steps):
        await dbos_anoop(i)
    return steps


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    workload: str
    system: str
    workflows: int
    steps: int
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def us_per_step(self) -> float:
        return self.seconds / self.steps * 1e6


# -- fresh databases -------------------------------------------------------------------------


class Databases:
    """Hands out a fresh SQLite file or Postgres database per measurement."""

    def __init__(self, workdir: Path, pg_admin_url: str) -> None:
        self.workdir = workdir
        self.pg_admin_url = pg_admin_url
        self._count = 0

    @contextlib.contextmanager
    def fresh(self, backend: Backend, label: str, *, wal: bool = False) -> Iterator[str]:
        self._count += 1
        name = f"afbench_{os.getpid()}_{self._count}_{label}"
        if backend == "sqlite":
            with self._sqlite(name, wal) as url:
                yield url
        else:
            with self._postgres(name) as url:
                yield url

    @contextlib.contextmanager
    def _sqlite(self, name: str, wal: bool) -> Iterator[str]:
        folder = self.workdir / name
        folder.mkdir(parents=True)
        path = folder / "bench.db"
        if wal:  # journal_mode=WAL is stored in the file and kept by later connections
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        try:
            yield f"sqlite:///{path}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _postgres(self, name: str) -> Iterator[str]:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        base = self.pg_admin_url.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            gc.collect()
            with psycopg.connect(self.pg_admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- agentflow -------------------------------------------------------------------------------


def agentflow_run(
    url: str,
    *,
    mode: Literal["sequential", "queued"],
    n: int,
    steps: int,
    concurrency: int,
    warmup: int,
    sync: Sync,
) -> float:
    async def main() -> float:
        engine = Engine(url, [af_steps], sqlite_synchronous=sync)
        async with anyio.create_task_group() as tg:
            worker = await tg.start(engine.worker(concurrency=concurrency).run)
            for _ in range(warmup):
                await (await engine.trigger(af_steps, steps)).result(timeout=60)
            started = time.perf_counter()
            if mode == "sequential":
                for _ in range(n):
                    out = await (await engine.trigger(af_steps, steps)).result(timeout=60)
                    assert out == steps
            else:
                handles = [await engine.trigger(af_steps, steps) for _ in range(n)]
                for h in handles:
                    assert await h.result(timeout=600) == steps
            elapsed = time.perf_counter() - started
            worker.stop()
        await engine.close()
        return elapsed

    return anyio.run(main)


# -- DBOS ------------------------------------------------------------------------------------


@contextlib.contextmanager
def dbos_launched(url: str) -> Iterator[None]:
    DBOS(config={"name": "afbench", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()
        logging.getLogger("dbos").setLevel(logging.WARNING)


def dbos_run(
    url: str,
    *,
    mode: Literal["sequential", "queued"],
    n: int,
    steps: int,
    concurrency: int,
    warmup: int,
    style: Literal["sync", "async"],
    poll: float,
) -> float:
    with dbos_launched(url):
        if style == "sync":
            return _dbos_sync(mode, n, steps, concurrency, warmup, poll)
        return asyncio.run(_dbos_async(mode, n, steps, concurrency, warmup, poll))


def _dbos_sync(mode: str, n: int, steps: int, concurrency: int, warmup: int, poll: float) -> float:
    for _ in range(warmup):
        dbos_steps(steps)
    if mode == "sequential":
        started = time.perf_counter()
        for _ in range(n):
            assert dbos_steps(steps) == steps
        return time.perf_counter() - started
    queue = DBOS.register_queue(
        "afbench", worker_concurrency=concurrency, polling_interval_sec=poll
    )
    started = time.perf_counter()
    handles = [queue.enqueue(dbos_steps, steps) for _ in range(n)]
    for h in handles:
        assert h.get_result() == steps
    return time.perf_counter() - started


async def _dbos_async(
    mode: str, n: int, steps: int, concurrency: int, warmup: int, poll: float
) -> float:
    for _ in range(warmup):
        await dbos_asteps(steps)
    if mode == "sequential":
        started = time.perf_counter()
        for _ in range(n):
            assert await dbos_asteps(steps) == steps
        return time.perf_counter() - started
    queue = await DBOS.register_queue_async(
        "afbench", worker_concurrency=concurrency, polling_interval_sec=poll
    )
    started = time.perf_counter()
    handles = [await queue.enqueue_async(dbos_asteps, steps) for _ in range(n)]
    for h in handles:
        assert await h.get_result() == steps
    return time.perf_counter() - started


# -- driver ----------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 1)[0]
    except OSError:
        return "?"


def plan(args: argparse.Namespace) -> list[tuple[Backend, str, str, dict[str, Any]]]:
    """Every measurement to make: (backend, workload, label, options)."""
    backends: list[Backend] = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    workloads = ["sequential", "queued"] if args.workload == "all" else [args.workload]
    out: list[tuple[Backend, str, str, dict[str, Any]]] = []
    for backend in backends:
        for workload in workloads:
            syncs: list[str] = args.sqlite_sync if backend == "sqlite" else ["normal"]
            for sync in syncs:
                label = "agentflow" + (f" (sync={sync})" if backend == "sqlite" else "")
                out.append((backend, workload, label, {"system": "agentflow", "sync": sync}))
            if args.skip_dbos:
                continue
            for style in args.dbos_style:
                for wal in [False, True] if backend == "sqlite" and args.dbos_wal else [False]:
                    label = f"DBOS {style}"
                    if backend == "sqlite":
                        label += " (WAL)" if wal else " (journal=delete)"
                    if workload == "queued":
                        label += f" poll={args.dbos_poll:g}s"
                    options = {"system": "dbos", "style": style, "wal": wal}
                    out.append((backend, workload, label, options))
    return out


def run_all(args: argparse.Namespace) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="afbench_", dir=args.dir))
    dbs = Databases(workdir, args.pg_url)
    results: list[Result] = []
    failures: list[str] = []
    try:
        for rep in range(args.repeat):
            if args.repeat > 1:
                print(f"round {rep + 1}/{args.repeat} (load average {load_average()})", flush=True)
            for backend, workload, label, options in plan(args):
                n = args.n_seq if workload == "sequential" else args.n_queued
                common: dict[str, Any] = {
                    "mode": workload,
                    "n": n,
                    "steps": args.steps,
                    "concurrency": args.concurrency,
                    "warmup": args.warmup,
                }
                gc.collect()
                try:
                    if options["system"] == "agentflow":
                        with dbs.fresh(backend, "af") as url:
                            seconds = agentflow_run(url, sync=options["sync"], **common)
                    else:
                        with dbs.fresh(backend, "dbos", wal=options["wal"]) as url:
                            seconds = dbos_run(
                                url, style=options["style"], poll=args.dbos_poll, **common
                            )
                except Exception as exc:  # report it and go on with the other measurements
                    failure = f"{backend} {workload} {label}: {describe(exc)}"
                    failures.append(failure)
                    print(f"  FAILED {failure}", flush=True)
                    continue
                r = Result(backend, workload, label, n, n * args.steps, seconds)
                results.append(r)
                print(
                    f"  {backend:8} {workload:10} {label:40} {r.steps_per_s:7.0f} steps/s "
                    f"{r.us_per_step:7.0f} us/step",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print(f"\n{len(failures)} measurement(s) failed:")
        for f in failures:
            print(f"  {f}")
    return results


def describe(exc: BaseException) -> str:
    """The first real error inside an exception (group), on one line."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]


def best_of(results: list[Result]) -> list[tuple[Result, float]]:
    """The fastest run of each measurement, with the median steps/s over its repeats."""
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.backend, r.workload, r.system), []).append(r)
    return [
        (min(rs, key=lambda r: r.seconds), statistics.median(r.steps_per_s for r in rs))
        for rs in groups.values()
    ]


def print_table(results: list[Result]) -> None:
    rows = best_of(results)
    print()
    header = (
        f"| {'backend':8} | {'workload':10} | {'system':40} | {'workflows':>9} | "
        f"{'steps/s':>8} | {'median':>8} | {'us/step':>8} | {'agentflow / DBOS':>16} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r, median in rows:
        dbos = [
            x.steps_per_s
            for x, _ in rows
            if x.backend == r.backend and x.workload == r.workload and x.system.startswith("DBOS")
        ]
        ratio = ""
        if r.system.startswith("agentflow") and dbos:
            ratio = f"{r.steps_per_s / max(dbos):.1f}x"
        print(
            f"| {r.backend:8} | {r.workload:10} | {r.system:40} | {r.workflows:9d} | "
            f"{r.steps_per_s:8.0f} | {median:8.0f} | {r.us_per_step:8.0f} | {ratio:>16} |"
        )
    print(
        "\nsteps/s and us/step: the fastest of the repeats; median: over the repeats; "
        "agentflow / DBOS: against the fastest DBOS row of the same backend and workload."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    p.add_argument("--workload", choices=["sequential", "queued", "all"], default="all")
    p.add_argument("--n-seq", type=int, default=200, help="sequential workflows (default 200)")
    p.add_argument("--n-queued", type=int, default=1000, help="queued workflows (default 1000)")
    p.add_argument("--steps", type=int, default=10, help="steps per workflow (default 10)")
    p.add_argument("--concurrency", type=int, default=50, help="queue concurrency (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed workflows first (default 5)")
    p.add_argument(
        "--sqlite-sync",
        type=lambda s: s.split(","),
        default=["normal", "full"],
        help="agentflow SQLite synchronous settings to run, comma separated (default normal,full)",
    )
    p.add_argument(
        "--dbos-style",
        type=lambda s: s.split(","),
        default=["sync"],
        help="DBOS workflow styles to run: sync, async or sync,async (default sync, its fastest)",
    )
    p.add_argument(
        "--dbos-poll",
        type=float,
        default=0.1,
        help="DBOS queue polling interval in seconds (default 0.1; DBOS's own default is 1.0)",
    )
    p.add_argument(
        "--dbos-wal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run DBOS on a SQLite file switched to WAL mode beforehand (DBOS leaves\n"
        "SQLite in its default rollback journal; WAL is faster for it). Default: on",
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds; the table keeps the best")
    p.add_argument("--skip-dbos", action="store_true")
    p.add_argument(
        "--pg-url", default=DEFAULT_PG, help=f"Postgres admin URL (default {DEFAULT_PG})"
    )
    p.add_argument("--dir", default=None, help="where SQLite files go (default: the temp dir)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.steps} steps/workflow; "
        f"sequential n={args.n_seq}, queued n={args.n_queued} at concurrency {args.concurrency}",
        flush=True,
    )
    print(f"load average at start: {load_average()}", flush=True)
    results = run_all(args)
    print(f"load average at end: {load_average()}")
    print_table(results)
    if args.json:
        payload: list[dict[str, Any]] = [
            {**asdict(r), "steps_per_s": r.steps_per_s, "us_per_step": r.us_per_step}
            for r in results
        ]
        Path(args.json).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
