"""A worker process for the multi-worker tests: ``python -m tests.apps.drain_app URL [options]``.

Same process protocol and options as ``crash_app`` (READY / STOPPING / STOPPED on stdout).
It runs the ``drain`` workflow: ``steps`` steps; step ``i`` works for ``work`` seconds (like a
call to a slow API: the worker sits idle, holding the run but not the database), then appends
``<run_id>:<i>:<pid>`` to the shared side-effect file with one ``O_APPEND`` write (atomic for a
short line, so lines from several processes never interleave) and returns the pid.
"""

from __future__ import annotations

import os
import time

import anyio
from pydantic import BaseModel

from agentflow import RunContext, workflow

from .crash_app import append_line, main


class DrainJob(BaseModel):
    side_effects: str
    steps: int = 3
    work: float = 0.0


async def _effect(job: DrainJob, line: str) -> int:
    if job.work:
        await anyio.sleep(job.work)
    await anyio.to_thread.run_sync(append_line, job.side_effects, line)
    return os.getpid()


@workflow(id="drain")
async def drain(ctx: RunContext, job: DrainJob) -> list[int]:
    return [
        await ctx.step(f"step{i}", _effect, job, f"{ctx.run_id}:{i}:{os.getpid()}")
        for i in range(1, job.steps + 1)
    ]


async def _hold(job: DrainJob, key: str) -> None:
    # Wall-clock marks, comparable across processes on one machine.
    await anyio.to_thread.run_sync(append_line, job.side_effects, f"enter {key} {time.time()!r}")
    await anyio.sleep(job.work)
    await anyio.to_thread.run_sync(append_line, job.side_effects, f"exit {key} {time.time()!r}")


@workflow(id="keyed_drain", concurrency_limit=2)
async def keyed_drain(ctx: RunContext, job: DrainJob) -> None:
    """Holds its concurrency key for ``work`` seconds, marking when it entered and left."""
    await ctx.step("hold", _hold, job, ctx.concurrency_key)


if __name__ == "__main__":
    main([drain, keyed_drain])
