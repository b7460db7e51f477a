"""Memory of a worker process while many runs are waiting.

Starts ``--runs`` runs (10,000 by default) of a workflow that immediately waits for an event
that never comes, with a worker running in this process, and reports this process's resident
memory (VmRSS from /proc/self/status) before any run, once 1,000 runs are waiting and once
all of them are. A waiting run is parked in the database and holds no task, no worker slot
and no memory in the worker, so the figure should stay flat.

Run ``python bench/waiting_memory.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from pathlib import Path

import anyio
import sqlalchemy as sa

from agentflow import Engine, RunContext, Worker, workflow


@workflow(id="bench_wait_forever")
async def wait_forever(ctx: RunContext, i: int) -> None:
    await ctx.wait_for_event("never", match={"i": i})


def proc_status(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


async def count_waiting(engine: Engine) -> int:
    query = sa.text("SELECT count(*) FROM agentflow_runs WHERE status = 'waiting'")
    return int(await engine.db.read(lambda conn: conn.execute(query).scalar_one()))


async def until_waiting(engine: Engine, n: int, timeout: float) -> float:
    started = time.perf_counter()
    with anyio.fail_after(timeout):
        while True:
            if await count_waiting(engine) >= n:
                break
            await anyio.sleep(0.05)
    return time.perf_counter() - started


def report(label: str, worker: Worker, waiting: int) -> tuple[str, int]:
    gc.collect()
    rss = proc_status("VmRSS")
    tasks = len(asyncio.all_tasks())
    print(
        f"{label:28} waiting={waiting:6d}  RSS {mib(rss)}  "
        f"active runs in worker={len(worker.active_runs):3d}  asyncio tasks={tasks}",
        flush=True,
    )
    return label, rss


async def measure(url: str, runs: int, checkpoint: int, concurrency: int, batch: int) -> None:
    engine = Engine(url, [wait_forever])
    async with anyio.create_task_group() as tg:
        worker: Worker = await tg.start(engine.worker(concurrency=concurrency).run)
        # Warm up the code paths so the baseline includes imports and compiled statements.
        await engine.trigger(wait_forever, -1)
        await until_waiting(engine, 1, 60)
        rows = [report("before (1 warm-up run)", worker, 1)]

        started = time.perf_counter()
        triggered = 0

        async def trigger_up_to(n: int) -> None:
            nonlocal triggered
            while triggered < n:
                k = min(batch, n - triggered)
                async with anyio.create_task_group() as g:
                    for j in range(k):
                        g.start_soon(engine.trigger, wait_forever, triggered + j)
                triggered += k

        for target in (checkpoint, runs):
            await trigger_up_to(target)
            await until_waiting(engine, target + 1, 600)
            rows.append(report(f"after {target:,} waiting", worker, target + 1))
        elapsed = time.perf_counter() - started
        worker.stop()
    await engine.close()

    base = rows[0][1]
    first, last = rows[1][1], rows[2][1]
    print(f"\n{runs:,} runs triggered and parked in {elapsed:.1f} s ({runs / elapsed:.0f} runs/s)")
    print(f"growth from before to {checkpoint:,} waiting: {mib(first - base)}")
    print(f"growth from {checkpoint:,} to {runs:,} waiting: {mib(last - first)}")
    per_run = (last - first) / max(1, runs - checkpoint)
    print(f"per additional waiting run: {per_run:,.0f} bytes")
    print(f"peak RSS (VmHWM): {mib(proc_status('VmHWM'))}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000, help="waiting runs (default 10000)")
    p.add_argument("--checkpoint", type=int, default=1_000, help="first report at (1000)")
    p.add_argument("--concurrency", type=int, default=50, help="worker concurrency (50)")
    p.add_argument("--batch", type=int, default=50, help="triggers in flight at once (50)")
    p.add_argument("--url", default=None, help="database URL (default: a fresh SQLite file)")
    p.add_argument("--dir", default=None, help="where the SQLite file goes (default: temp dir)")
    args = p.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="afmemory_", dir=args.dir))
    url = args.url or f"sqlite:///{folder / 'bench.db'}"
    try:
        anyio.run(measure, url, args.runs, args.checkpoint, args.concurrency, args.batch)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
