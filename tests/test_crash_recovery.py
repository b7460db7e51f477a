"""Process-level durability: a worker process killed (SIGKILL) or stopped (SIGTERM) mid-run.

The worker runs as a real subprocess (``tests/apps/crash_app.py``). Each step of the ``crash``
workflow appends ``<run_id>:step<i>`` to a side-effect file; step ``block_at`` first appends
``<run_id>:step<i>:entered`` and then blocks until the test creates a release file.

Kill point: the test waits until every run has printed its ``entered`` line (polling the file
under a deadline), checks in the database that steps ``1..block_at-1`` are journaled, and only
then kills the process. The kill therefore lands inside the blocking step, after the earlier
steps finished and committed, and before the blocked step had any effect.

Guarantees checked after recovery by another worker:

* completed (journaled) steps are exactly-once: their side effect appears exactly once;
* the step in flight at the kill is at-least-once: it is executed again from the start (its
  ``entered`` line appears twice), and since it was killed before its effect, the effect
  appears once;
* steps after the kill point run once, on the recovering worker.

Only the killed worker has a short lease (it decides how soon its runs come back). Workers
that stay alive get a long one: a live worker whose lease expires (a stalled heartbeat) may
re-claim and re-execute its own run, which is not what these tests are about.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from agentflow import Engine, RunStatus

from ._support import eventually, running_worker
from .apps.crash_app import (
    CrashJob,
    WorkerProcess,
    crash,
    deadline,
    spawn_worker,
)

pytestmark = pytest.mark.anyio

APP = "tests.apps.crash_app"
# The lease of the worker that gets killed: its runs come back this long after the kill.
KILLED_LEASE = "2.0"
# Workers that stay alive: no lease may expire while they hold a run (see the module notes).
LIVE_LEASE = 30.0


async def read_lines(path: Path) -> list[str]:
    file = anyio.Path(path)
    if not await file.exists():
        return []
    return (await file.read_text()).splitlines()


async def wait_entered(path: Path, run_ids: Sequence[str], step: Callable[[str], str]) -> None:
    """Wait until every run has entered its blocking step (``step(run_id)`` names it)."""

    async def probe() -> bool:
        lines = set(await read_lines(path))
        return all(f"{rid}:{step(rid)}:entered" in lines for rid in run_ids)

    await eventually(probe, timeout=20, what="runs to enter their blocking step")


def assert_effects(
    lines: list[str], run_id: str, steps: int, block_at: int, *, executions: int
) -> None:
    """Every step's effect exactly once; the blocking step entered ``executions`` times."""
    counts = Counter(line for line in lines if line.startswith(f"{run_id}:"))
    expected = Counter({f"{run_id}:step{i}": 1 for i in range(1, steps + 1)})
    expected[f"{run_id}:step{block_at}:entered"] = executions
    assert counts == expected


async def assert_journal(engine: Engine, run_id: str, steps: int) -> None:
    records = await engine.get_steps(run_id)
    assert [(s.seq, s.name, s.status, s.attempts) for s in records] == [
        (i, f"step{i}", "completed", 1) for i in range(1, steps + 1)
    ]


async def assert_journaled_before_kill(engine: Engine, run_id: str, block_at: int) -> None:
    records = await engine.get_steps(run_id)
    assert [s.name for s in records] == [f"step{i}" for i in range(1, block_at)]
    assert (await engine.get_run(run_id)).status is RunStatus.RUNNING


async def killed(worker: WorkerProcess) -> None:
    worker.kill()
    assert await worker.wait() == -signal.SIGKILL


@deadline(60)
async def test_sigkill_mid_run_resumes_without_repeating_completed_steps(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    effects, release = tmp_path / "effects.log", tmp_path / "release"
    job = CrashJob(side_effects=str(effects), release=str(release), steps=5, block_at=3)
    engine = make_engine([crash])
    await engine.start()

    async with spawn_worker(APP, database_url, tmp_path, "--lease", KILLED_LEASE) as worker:
        await worker.ready()
        handle = await engine.trigger(crash, job)
        await wait_entered(effects, [handle.id], lambda _: "step3")
        await assert_journaled_before_kill(engine, handle.id, block_at=3)
        await killed(worker)

    # The dead worker still holds the run: nothing finished it or handed it back.
    assert (await engine.get_run(handle.id)).status is RunStatus.RUNNING
    release.touch()
    async with running_worker(engine, lease=LIVE_LEASE):
        output = await handle.result(timeout=20)

    assert output == [f"{handle.id}:step{i}" for i in range(1, 6)]
    assert_effects(await read_lines(effects), handle.id, 5, 3, executions=2)
    await assert_journal(engine, handle.id, 5)


@deadline(60)
async def test_sigkill_with_many_runs_in_flight_recovered_by_another_process(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    """Five runs killed at five different points (first step .. last step) all complete."""
    effects, release = tmp_path / "effects.log", tmp_path / "release"
    steps = 5
    engine = make_engine([crash])
    await engine.start()
    block_at: dict[str, int] = {}

    async with spawn_worker(APP, database_url, tmp_path, "--lease", KILLED_LEASE) as worker:
        await worker.ready()
        for k in range(1, steps + 1):
            job = CrashJob(side_effects=str(effects), release=str(release), steps=steps, block_at=k)
            block_at[(await engine.trigger(crash, job)).id] = k
        await wait_entered(effects, list(block_at), lambda rid: f"step{block_at[rid]}")
        for run_id, k in block_at.items():
            await assert_journaled_before_kill(engine, run_id, k)
        await killed(worker)

    release.touch()
    options = ("--lease", str(LIVE_LEASE))
    async with spawn_worker(APP, database_url, tmp_path, *options) as recovery:
        await recovery.ready()
        for run_id in block_at:
            run = await engine.wait(run_id, timeout=20)
            assert run.status is RunStatus.COMPLETED, run.error
        assert await recovery.stop() == 0

    lines = await read_lines(effects)
    for run_id, k in block_at.items():
        assert_effects(lines, run_id, steps, k, executions=2)
        await assert_journal(engine, run_id, steps)


@deadline(60)
async def test_sigterm_hands_back_a_blocked_run_and_exits_cleanly(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    """Past the shutdown grace, the run is released at once (not left to lease expiry)."""
    effects, release = tmp_path / "effects.log", tmp_path / "release"
    job = CrashJob(side_effects=str(effects), release=str(release), steps=3, block_at=2)
    engine = make_engine([crash])
    await engine.start()

    # A long lease: if the run were not handed back, nobody could take it during this test.
    options = ("--lease", "60", "--shutdown-grace", "0.2")
    async with spawn_worker(APP, database_url, tmp_path, *options) as worker:
        await worker.ready()
        handle = await engine.trigger(crash, job)
        await wait_entered(effects, [handle.id], lambda _: "step2")
        worker.terminate()
        await worker.expect("STOPPING")
        await worker.expect("STOPPED")
        assert await worker.wait() == 0

    run = await engine.get_run(handle.id)
    assert run.status is RunStatus.QUEUED
    assert [s.name for s in await engine.get_steps(handle.id)] == ["step1"]

    release.touch()
    async with running_worker(engine, lease=LIVE_LEASE):
        output = await handle.result(timeout=20)
    assert output == [f"{handle.id}:step{i}" for i in range(1, 4)]
    assert_effects(await read_lines(effects), handle.id, 3, 2, executions=2)
    await assert_journal(engine, handle.id, 3)


@deadline(60)
async def test_sigterm_lets_the_running_step_finish_within_the_grace(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    """Within the shutdown grace, the stopping worker finishes its run itself, then exits 0."""
    effects, release = tmp_path / "effects.log", tmp_path / "release"
    job = CrashJob(side_effects=str(effects), release=str(release), steps=3, block_at=2)
    engine = make_engine([crash])
    await engine.start()

    options = ("--lease", str(LIVE_LEASE), "--shutdown-grace", "30")
    async with spawn_worker(APP, database_url, tmp_path, *options) as worker:
        await worker.ready()
        handle = await engine.trigger(crash, job)
        await wait_entered(effects, [handle.id], lambda _: "step2")
        worker.terminate()
        await worker.expect("STOPPING")
        release.touch()
        await worker.expect("STOPPED")
        assert await worker.wait() == 0

    # No other worker ever ran: the stopping one completed the run.
    run = await engine.get_run(handle.id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == [f"{handle.id}:step{i}" for i in range(1, 4)]
    assert_effects(await read_lines(effects), handle.id, 3, 2, executions=1)
    await assert_journal(engine, handle.id, 3)
