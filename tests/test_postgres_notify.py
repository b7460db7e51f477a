"""Postgres only: a trigger from another process wakes idle workers through LISTEN/NOTIFY."""

from __future__ import annotations

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
