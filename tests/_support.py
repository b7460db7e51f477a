"""Helpers for tests: a worker running for the length of a block, condition waits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa

from agentflow import Engine, Worker
from agentflow.storage.tables import metadata

T = TypeVar("T")


class FakeClock:
    """An engine clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def reset_postgres(url: str) -> None:
    """Empty every agentflow table (the schema stays, so migrations run once a session)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            names = [t.name for t in metadata.sorted_tables if sa.inspect(conn).has_table(t.name)]
            if names:
                conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
    finally:
        engine.dispose()


@asynccontextmanager
async def running_worker(engine: Engine, **options: Any) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("sweep_interval", 0.1)
    options.setdefault("shutdown_grace", 5.0)
    async with anyio.create_task_group() as tg:
        worker: Worker = await tg.start(engine.worker(**options).run)
        try:
            yield worker
        finally:
            worker.stop()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds.

    For state that lives in the database (another process, a timer): there is no in-process
    event to wait on, so this checks with a short, growing interval under a hard deadline.
    """
    delay = 0.005
    with anyio.move_on_after(timeout):
        while True:
            value = await probe()
            if value:
                return value
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its base URL.

    The socket says it is TCP so that asyncio sets TCP_NODELAY (no 40 ms delayed-ACK waits).
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])

        async def started() -> bool:
            return server.started

        await eventually(started, what="uvicorn to start")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
