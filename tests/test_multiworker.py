"""Several worker processes draining one queue: no run lost, no step executed twice.

Three worker subprocesses (``tests/apps/drain_app.py``) share the test database. Each step of
the ``drain`` workflow appends ``<run_id>:<seq>:<pid>`` to one shared side-effect file (a
single ``O_APPEND`` write, so lines from different processes never interleave). On Postgres
the claims race through ``FOR UPDATE SKIP LOCKED``; on SQLite the processes serialise on the
database write lock (``BEGIN IMMEDIATE`` + ``busy_timeout``).
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from agentflow import Engine, RunStatus
from agentflow.storage.tables import runs

from ._support import eventually
from .apps.crash_app import WorkerProcess, deadline, spawn_worker
from .apps.drain_app import DrainJob, drain, keyed_drain

pytestmark = pytest.mark.anyio

APP = "tests.apps.drain_app"
RUNS = 300
WORKERS = 3
CONCURRENCY = "10"
STEPS = 3
# Seconds each step works (idle, like an API call). It bounds what one worker can do alone:
# 10 runs at a time x 3 steps x 50 ms, so 300 runs take one worker at least 4.5 s, while three
# workers that each claim every 50 ms share them. Without it, one SQLite process can take
# everything: SQLite's busy handler (sleep and retry) is not fair between processes.
WORK = 0.05
UNFINISHED = [RunStatus.QUEUED, RunStatus.DELAYED, RunStatus.RUNNING, RunStatus.WAITING]


@asynccontextmanager
async def worker_pool(
    database_url: str, log_dir: Path, count: int, *options: str
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` ready worker processes; any still alive are killed at exit."""
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(spawn_worker(APP, database_url, log_dir, *options))
            for _ in range(count)
        ]
        for worker in workers:
            await worker.ready()
        yield workers


async def trigger_runs(engine: Engine, job: DrainJob, count: int, ids: list[str]) -> None:
    """Trigger ``count`` runs, a few at a time (they share commits), adding their ids to ``ids``."""
    limiter = anyio.CapacityLimiter(8)

    async def one() -> None:
        async with limiter:
            ids.append((await engine.trigger(drain, job)).id)

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)


async def wait_drained(engine: Engine, count: int, timeout: float, workflow: str = "drain") -> None:
    async def probe() -> bool:
        left = await engine.list_runs(workflow=workflow, status=UNFINISHED, limit=count + 1)
        return not left

    await eventually(probe, timeout=timeout, what=f"{count} runs to finish")


async def effect_lines(path: Path) -> list[list[str]]:
    """The side-effect lines so far, each split into [run id, seq, pid]."""
    file = anyio.Path(path)
    if not await file.exists():
        return []
    return [line.rsplit(":", 2) for line in (await file.read_text()).splitlines()]


async def effects_by_step(path: Path) -> dict[tuple[str, int], list[int]]:
    """(run id, seq) -> pids of the processes that executed that step, in order."""
    found: dict[tuple[str, int], list[int]] = defaultdict(list)
    for run_id, seq, pid in await effect_lines(path):
        found[(run_id, int(seq))].append(int(pid))
    return found


async def runs_held_by(engine: Engine, worker_id: str) -> list[str]:
    # The lease owner is "<worker id>#<claim number>".
    query = sa.select(runs.c.id).where(
        runs.c.worker_id.startswith(f"{worker_id}#"), runs.c.status == RunStatus.RUNNING.value
    )
    return await engine.db.read(lambda conn: list(conn.scalars(query)))


async def assert_all_completed(engine: Engine, ids: list[str]) -> None:
    records = [await engine.get_run(run_id) for run_id in ids]
    unfinished = {
        r.id: (r.status.value, r.error, await engine.get_errors(r.id))
        for r in records
        if r.status is not RunStatus.COMPLETED
    }
    assert not unfinished, f"runs that did not complete: {unfinished}"
    for run_id in ids:
        steps = await engine.get_steps(run_id)
        assert [(s.seq, s.status) for s in steps] == [(i, "completed") for i in range(1, STEPS + 1)]


@deadline(60)
async def test_three_worker_processes_drain_runs_exactly_once(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    job = DrainJob(side_effects=str(effects), steps=STEPS, work=WORK)
    count = RUNS
    engine = make_engine([drain])
    await engine.start()

    # A lease far longer than the test: no run may be reclaimed, so any repeat is a bug.
    options = ("--concurrency", CONCURRENCY, "--lease", "60")
    async with worker_pool(database_url, tmp_path, WORKERS, *options) as workers:
        ids: list[str] = []
        await trigger_runs(engine, job, count, ids)
        await wait_drained(engine, count, timeout=60)
        for worker in workers:
            assert await worker.stop() == 0

    await assert_all_completed(engine, ids)
    found = await effects_by_step(effects)
    assert set(found) == {(run_id, seq) for run_id in ids for seq in range(1, STEPS + 1)}
    repeated = {key: pids for key, pids in found.items() if len(pids) != 1}
    assert not repeated, f"steps executed more than once: {repeated}"
    per_worker = Counter(pids[0] for pids in found.values())
    assert set(per_worker) <= {w.pid for w in workers}
    assert len(per_worker) >= 2, f"only one worker did any work: {per_worker}"
    # A run executes in one process at a time, and no process gave a run away here.
    for run_id in ids:
        assert len({found[(run_id, seq)][0] for seq in range(1, STEPS + 1)}) == 1


@deadline(60)
async def test_killing_one_worker_during_drain_loses_no_run(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of three workers mid-drain: its runs are reclaimed and finished by the rest.

    Completed steps are never repeated. A step the killed process was executing may have had
    its effect without its journal commit (at-least-once), so it may appear twice: once from
    the killed process, then once from the process that took the run over.
    """
    effects = tmp_path / "effects.log"
    job = DrainJob(side_effects=str(effects), steps=STEPS, work=WORK)
    count = RUNS
    engine = make_engine([drain])
    await engine.start()

    # A short lease so the victim's runs come back quickly, long enough that a busy but
    # alive worker keeps its runs (its heartbeat renews every lease / 3).
    options = ("--concurrency", CONCURRENCY, "--lease", "3")
    async with worker_pool(database_url, tmp_path, WORKERS, *options) as workers:

        async def busy_worker() -> WorkerProcess | None:
            # One that has done some work and holds runs right now (when runs arrive slower
            # than they drain, a worker can be momentarily idle: killing it then tests nothing).
            done = Counter(int(pid) for _, _, pid in await effect_lines(effects))
            for w in workers:
                if done[w.pid] >= 25 and len(await runs_held_by(engine, w.worker_id)) >= 2:
                    return w
            return None

        ids: list[str] = []
        async with anyio.create_task_group() as tg:
            # Kill while runs are still arriving, so the drain is in full swing. The victim is
            # whichever worker has done some work first.
            tg.start_soon(trigger_runs, engine, job, count, ids)
            victim = await eventually(busy_worker, timeout=30, what="a worker to do some work")
            victim.kill()
            assert await victim.wait() == -signal.SIGKILL
            # Until its lease (3 s) expires, the dead worker still holds the runs it had.
            held = await runs_held_by(engine, victim.worker_id)
            assert held, "the victim held no run when it was killed"
        await wait_drained(engine, count, timeout=60)
        for worker in workers:
            if worker is not victim:
                assert await worker.stop() == 0

    await assert_all_completed(engine, ids)
    found = await effects_by_step(effects)
    assert set(found) == {(run_id, seq) for run_id in ids for seq in range(1, STEPS + 1)}
    for (run_id, seq), pids in found.items():
        if len(pids) == 1:
            continue
        # Only the step in flight at the kill repeats, once, first in the victim.
        assert run_id in held, (run_id, seq, pids)
        assert len(pids) == 2, (run_id, seq, pids)
        assert pids[0] == victim.pid != pids[1], (run_id, seq, pids)
        later = [found[(run_id, s)] for s in range(seq + 1, STEPS + 1)]
        assert all(p == [pids[1]] for p in later), (run_id, seq, pids, later)


def peak_overlap(lines: list[str]) -> Counter[str]:
    """The most runs of each key inside their section at one time, from enter/exit marks."""
    marks = sorted(
        (float(ts), 1 if kind == "enter" else -1, key)
        for kind, key, ts in (line.split() for line in lines)
    )
    inside: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for _, delta, key in marks:  # at equal times an exit (-1) sorts before an enter (+1)
        inside[key] += delta
        peak[key] = max(peak[key], inside[key])
    return peak


@deadline(60)
async def test_per_key_concurrency_holds_across_worker_processes(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    effects = tmp_path / "marks.log"
    job = DrainJob(side_effects=str(effects), work=0.02)
    engine = make_engine([drain, keyed_drain])
    await engine.start()
    keys = [f"customer-{n}" for n in range(6)]
    count = 120
    async with worker_pool(database_url, tmp_path, WORKERS, "--concurrency", "8") as workers:
        ids = [
            (await engine.trigger(keyed_drain, job, concurrency_key=keys[n % len(keys)])).id
            for n in range(count)
        ]
        await wait_drained(engine, count, timeout=60, workflow="keyed_drain")
        for worker in workers:
            assert await worker.stop() == 0
    assert {(await engine.get_run(i)).status for i in ids} == {RunStatus.COMPLETED}
    lines = (await anyio.Path(effects).read_text()).splitlines()
    assert len(lines) == 2 * count
    peak = peak_overlap(lines)
    print(f"observed per-key maximum: {dict(peak)}")
    assert set(peak) == set(keys)
    assert max(peak.values()) <= 2, f"a key ran more than 2 at once: {dict(peak)}"
