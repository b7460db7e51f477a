"""Postgres only: a trigger from another process wakes idle workers through LISTEN/NOTIFY."""

from __future__ import annotations

import threading

import anyio
import pytest

from agentflow import Engine, RunContext, workflow

from ._support import reset_postgres, running_worker
from .conftest import PG_URL

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_URL is None, reason="AGENTFLOW_TEST_POSTGRES_URL is not set"),
]


@workflow(id="echo")
async def echo(ctx: RunContext, payload: dict[str, int]) -> int:
    return payload["n"]


async def test_notify_wakes_a_worker_that_would_otherwise_poll_for_a_minute(
    postgres_database: str,
) -> None:
    reset_postgres(postgres_database)
    worker_side = Engine(postgres_database, [echo])
    client_side = Engine(postgres_database, [echo])  # stands in for another process
    try:
        async with running_worker(worker_side, poll_interval=60, sweep_interval=60):
            for n in range(3):
                handle = await client_side.trigger(echo, {"n": n})
                assert await handle.result(timeout=10) == n
    finally:
        await worker_side.close()
        await client_side.close()


async def test_a_cancelled_worker_closes_its_listener(postgres_database: str) -> None:
    reset_postgres(postgres_database)
    engine = Engine(postgres_database, [echo])
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.worker(poll_interval=60).run)
            assert any(t.name == "agentflow-listen" for t in threading.enumerate())
            tg.cancel_scope.cancel()
    finally:
        await engine.close()
    assert not any(t.name == "agentflow-listen" for t in threading.enumerate())
