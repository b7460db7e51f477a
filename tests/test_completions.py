"""Waiting for runs: many waiters share one watcher; giving up never strands another waiter."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from agentflow._completions import Completions

pytestmark = pytest.mark.anyio


async def test_local_completion_hands_the_row_to_every_waiter() -> None:
    async def nothing_finished(ids: Sequence[str]) -> set[str]:
        return set()

    completions = Completions(nothing_finished, interval=0.01)
    rows: list[object] = []

    async def waiter() -> None:
        rows.append(await completions.wait("run_1"))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            completions.done("run_1", {"id": "run_1", "status": "completed"})
    assert rows == [{"id": "run_1", "status": "completed"}] * 2


async def test_remote_completion_is_found_by_one_batched_query() -> None:
    finished: set[str] = set()
    asked: list[list[str]] = []

    async def finished_among(ids: Sequence[str]) -> set[str]:
        asked.append(sorted(ids))
        return finished & set(ids)

    completions = Completions(finished_among, interval=0.01)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(completions.wait, f"run_{n}")
            await anyio.wait_all_tasks_blocked()
            finished.update({"run_0", "run_1", "run_2"})
    assert ["run_0", "run_1", "run_2"] in asked, "one query covers every watched run"


async def test_a_waiter_giving_up_does_not_strand_another() -> None:
    async def nothing_finished(ids: Sequence[str]) -> set[str]:
        return set()

    completions = Completions(nothing_finished, interval=0.01)
    got: list[object] = []

    async def patient() -> None:
        got.append(await completions.wait("run_1"))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            with anyio.move_on_after(0.02):  # an impatient waiter on the same run gives up
                await completions.wait("run_1")
            completions.done("run_1", {"id": "run_1"})
    assert got == [{"id": "run_1"}]
