"""Connections, each owned by a dedicated thread, behind an async call interface.

Why not ``anyio.to_thread``: a hop through anyio's thread pool costs about 180 us here, a
dedicated thread fed by a queue about 50 us, and the step journal pays one hop per step.

Writes are group-committed: a writer thread takes every job already queued (up to
``max_batch``) and runs them in one transaction; if any job fails, the batch is rolled back and
its jobs run again one transaction each, so one failing job never fails another. A job's result
is delivered only after the commit, so a caller never proceeds on an unsaved write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import StorageUnavailableError
from .dialects import Dialect, dialect_for

# Set in ``conn.info`` by a job whose transaction makes runs claimable (``transactions.py``).
CLAIMABLE_FLAG = "agentflow_claimable"

__all__ = ["Database", "normalize_url"]

T = TypeVar("T")
Job = Callable[[Connection], Any]
Synchronous = Literal["normal", "full"]


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``postgres://`` URLs and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url() -> str:
    env = os.environ.get("AGENTFLOW_DATABASE_URL")
    if env:
        return env
    path = Path.cwd() / ".agentflow" / "agentflow.db"
    return f"sqlite:///{path}"


_TRANSIENT_RETRIES = 3
# Postgres SQLSTATEs that mean "try the transaction again": deadlock, serialization failure.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def _is_transient(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


@dataclass(slots=True)
class _Call:
    fn: Job
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    result: Any = None
    error: BaseException | None = None
    done: threading.Event | None = field(default=None)
    one_statement: bool = False
    """The job writes with one statement (which is atomic on its own)."""


def _deliver(call: _Call) -> None:
    fut = call.future
    if fut is None or fut.done():
        return
    if call.error is not None:
        fut.set_exception(call.error)
    else:
        fut.set_result(call.result)


class _Lane:
    """A queue served by ``threads`` threads, each holding one connection."""

    def __init__(
        self,
        name: str,
        engine: sa.Engine,
        threads: int,
        max_batch: int,
        before_commit: Callable[[Connection], None],
        *,
        autocommit_alone: bool = False,
    ) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._autocommit_alone = autocommit_alone
        self._engine = engine
        self._before_commit = before_commit
        self._max_batch = max_batch
        self._threads = [
            threading.Thread(target=self._serve, name=f"agentflow-db-{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, call: _Call) -> None:
        self._queue.put(call)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)

    def _serve(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                call = self._queue.get()
                if call is None:
                    return
                if conn is None:
                    try:
                        conn = self._engine.connect()
                    except Exception as exc:  # unreachable database: answer, don't hang
                        url = self._engine.url.render_as_string(hide_password=True)
                        call.error = StorageUnavailableError(url, exc)
                        self._deliver([call])
                        continue
                batch = [call]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
                self._run(conn, batch)
                if conn.invalidated:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _run(self, conn: Connection, batch: list[_Call]) -> None:
        if not self._execute(conn, batch) and len(batch) > 1:
            # Some job failed and took the shared transaction down with it: run each job on
            # its own so that only the failing one fails. Jobs only touch the database, so
            # running one again after a rollback is safe.
            for call in batch:
                call.error = None
                self._execute(conn, [call])
        for call in batch:
            # A deadlock or serialization failure is the database asking for a retry.
            for _ in range(_TRANSIENT_RETRIES):
                if call.error is None or not _is_transient(call.error):
                    break
                call.error = None
                self._execute(conn, [call])
        self._deliver(batch)

    def _deliver(self, batch: list[_Call]) -> None:
        for call in batch:
            if call.loop is not None:
                # RuntimeError: the caller's event loop is closed, so nobody is waiting.
                with contextlib.suppress(RuntimeError):
                    call.loop.call_soon_threadsafe(_deliver, call)
            elif call.done is not None:
                call.done.set()

    def _execute(self, conn: Connection, batch: list[_Call]) -> bool:
        """Run the jobs in one transaction; False if it failed (errors set on the calls)."""
        if self._autocommit_alone and len(batch) == 1 and batch[0].one_statement:
            return self._execute_alone(conn, batch[0])
        try:
            with conn.begin():
                for call in batch:
                    call.result = call.fn(conn)
                if conn.info.pop(CLAIMABLE_FLAG, False):
                    self._before_commit(conn)
        except Exception as exc:  # delivered to the callers that sent these jobs
            conn.info.pop(CLAIMABLE_FLAG, None)
            if conn.invalidated:
                conn.rollback()
            for call in batch:
                call.error = exc
            return False
        return True

    def _execute_alone(self, conn: Connection, call: _Call) -> bool:
        """Run a one-statement job with the driver in autocommit mode: its statement commits
        by itself, sparing the BEGIN and COMMIT round trips (on Postgres, about half the time
        of a step write when steps come one at a time). Batched, the same job shares the
        batch's transaction instead."""
        raw: Any = conn.connection.dbapi_connection
        try:
            raw.autocommit = True
            call.result = call.fn(conn)
            if conn.info.pop(CLAIMABLE_FLAG, False):
                self._before_commit(conn)
            if conn.in_transaction():  # SQLAlchemy autobegan, but the driver sent no BEGIN
                conn.commit()
        except Exception as exc:  # delivered to the caller
            call.error = exc
            # Close SQLAlchemy's side first: an invalidated connection refuses everything
            # (even its info) until rolled back.
            with contextlib.suppress(Exception):
                if conn.in_transaction() or conn.invalidated:
                    conn.rollback()
            with contextlib.suppress(Exception):
                conn.info.pop(CLAIMABLE_FLAG, None)
            return False
        finally:
            try:
                raw.autocommit = False
            except Exception:
                # A connection left in autocommit would split the next batch's transaction:
                # drop it (the lane reconnects).
                conn.invalidate()
        return True


class Database:
    """The connections of one agentflow engine to one database."""

    def __init__(
        self,
        url: str | None = None,
        *,
        sqlite_synchronous: Synchronous | None = None,
        pool_size: int = 4,
    ) -> None:
        self.url = normalize_url(url or default_url())
        sync = sqlite_synchronous or os.environ.get("AGENTFLOW_SQLITE_SYNCHRONOUS", "normal")
        if sync not in ("normal", "full"):
            raise ValueError(f"sqlite synchronous must be 'normal' or 'full', not {sync!r}")
        self.dialect: Dialect = dialect_for(self.url, synchronous=sync)  # type: ignore[arg-type]
        self._pool_size = pool_size
        self._writer: _Lane | None = None
        self._reader: _Lane | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return self.dialect.name

    def _lanes(self) -> tuple[_Lane, _Lane]:
        if self._writer is None or self._reader is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the database has been closed")
                if self._writer is None or self._reader is None:
                    self.dialect.prepare()
                    notify = self.dialect.notify_work
                    if self.dialect.single_writer:
                        self._writer = _Lane("w", self.dialect.engine(write=True), 1, 64, notify)
                        self._reader = _Lane("r", self.dialect.engine(write=False), 1, 1, notify)
                    else:
                        writer = self.dialect.engine(write=True)
                        reader = self.dialect.engine(write=False)
                        self._writer = _Lane(
                            "w", writer, self._pool_size, 32, notify, autocommit_alone=True
                        )
                        self._reader = _Lane("r", reader, 2, 1, notify)
        return self._writer, self._reader

    async def write(self, fn: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``fn`` in a write transaction on a database thread and return its result.

        ``one_statement``: ``fn`` writes with a single statement, so where the database
        allows, it may run without an explicit transaction when nothing else is waiting.
        """
        return await self._submit(self._lanes()[0], fn, one_statement)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await self._submit(self._lanes()[1], fn)

    async def _submit(
        self, lane: _Lane, fn: Callable[[Connection], T], one_statement: bool = False
    ) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        lane.submit(_Call(fn, loop, fut, one_statement=one_statement))
        return await fut

    def write_blocking(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction from synchronous code (CLI, migrations)."""
        done = threading.Event()
        call = _Call(fn, None, None, done=done)
        self._lanes()[0].submit(call)
        done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            lanes = {id(x): x for x in (self._writer, self._reader) if x is not None}
            self._writer = self._reader = None
        for lane in lanes.values():
            lane.close()
        self.dialect.dispose()
