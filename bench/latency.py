"""Trigger-to-first-step latency of agentflow with an idle in-process worker.

Each sample: the worker is idle and waiting for work; the clock starts just before
``engine.trigger`` and stops when the body of the run's first step function starts. The run
is then awaited (its result latency is reported too) and the worker left idle for a moment
before the next sample, so every sample starts from an idle worker. Samples are sequential.

Run ``python bench/latency.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from agentflow import Engine, RunContext, workflow

_first_step_at: list[float] = []


async def first(i: int) -> int:
    _first_step_at.append(time.perf_counter())
    return i


@workflow(id="bench_latency")
async def one_step(ctx: RunContext, i: int) -> int:
    return await ctx.step("first", first, i)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(name: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (
        f"{name:24} p50 {percentile(ms, 50):7.2f} ms   p90 {percentile(ms, 90):7.2f} ms   "
        f"p99 {percentile(ms, 99):7.2f} ms   mean {statistics.fmean(ms):7.2f} ms   "
        f"max {max(ms):7.2f} ms"
    )


async def measure(url: str, samples: int, idle: float, warmup: int, sync: str) -> None:
    engine = Engine(url, [one_step], sqlite_synchronous=sync)  # type: ignore[arg-type]
    to_first: list[float] = []
    to_result: list[float] = []
    async with anyio.create_task_group() as tg:
        worker = await tg.start(engine.worker(concurrency=50).run)
        for i in range(warmup + samples):
            # A jittered pause leaves the worker idle in its claim loop, waiting for work.
            await anyio.sleep(idle * random.uniform(0.5, 1.5))
            _first_step_at.clear()
            started = time.perf_counter()
            handle = await engine.trigger(one_step, i)
            assert await handle.result(timeout=30) == i
            done = time.perf_counter()
            if i >= warmup:
                to_first.append(_first_step_at[0] - started)
                to_result.append(done - started)
        worker.stop()
    await engine.close()
    print(summary("trigger -> first step", to_first))
    print(summary("trigger -> result", to_result))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=500, help="timed samples (default 500)")
    p.add_argument("--warmup", type=int, default=20, help="untimed samples first (default 20)")
    p.add_argument(
        "--idle", type=float, default=0.02, help="mean idle pause between samples, s (0.02)"
    )
    p.add_argument("--sync", choices=["normal", "full"], default="normal", help="SQLite sync")
    p.add_argument("--url", default=None, help="database URL (default: a fresh SQLite file)")
    p.add_argument("--dir", default=None, help="where the SQLite file goes (default: temp dir)")
    args = p.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="aflatency_", dir=args.dir))
    url = args.url or f"sqlite:///{folder / 'bench.db'}"
    print(f"{args.samples} sequential samples on {url.split('://')[0]}, sync={args.sync}")
    try:
        anyio.run(measure, url, args.samples, args.idle, args.warmup, args.sync)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
