"""The thin per-database parts: connection setup, locking clauses, migration locks."""

from __future__ import annotations

import logging
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["Dialect", "Listener", "PostgresDialect", "SQLiteDialect", "dialect_for"]

log = logging.getLogger("agentflow.storage")
WORK_CHANNEL = "agentflow_work"

# Any 64-bit constant works: it only has to be the same in every agentflow process.
_MIGRATION_LOCK_KEY = 0x6167656E74666C6F


class Dialect(ABC):
    name: str
    single_writer: bool = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._engines: list[sa.Engine] = []

    def prepare(self) -> None:
        """Create what the database needs before the first connection (e.g. a directory)."""
        return None  # nothing to do by default

    @abstractmethod
    def engine(self, *, write: bool) -> sa.Engine:
        """A SQLAlchemy engine for one database thread's connection."""

    def for_update(self, select: sa.Select[Any], *, skip_locked: bool = True) -> sa.Select[Any]:
        """Lock the selected rows (skipping rows other transactions hold, for claims)."""
        return select

    def migration_lock(self, conn: Connection) -> AbstractContextManager[None]:
        return nullcontext()

    def lock_names(self, conn: Connection, names: list[str]) -> None:
        """Take transaction-scoped locks on these names (SQLite serialises writers anyway)."""
        return None  # nothing to do by default

    def notify_work(self, conn: Connection) -> None:
        """Tell listening workers in other processes that runs became claimable."""
        return None  # nothing to do by default

    def listen(self, on_work: Callable[[], None]) -> Listener | None:
        """Call ``on_work`` whenever another process signals claimable runs (if supported)."""
        return None

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()
        self._engines.clear()


class SQLiteDialect(Dialect):
    """SQLite in WAL mode; writers take the lock up front (``BEGIN IMMEDIATE``).

    ``synchronous=normal`` survives a killed process (the WAL is intact); ``full`` also
    survives a power cut, at about five times the cost per commit.
    """

    name = "sqlite"
    single_writer = True

    def __init__(self, url: str, synchronous: Literal["normal", "full"]) -> None:
        super().__init__(url)
        self.synchronous = synchronous

    @property
    def path(self) -> Path | None:
        database = sa.make_url(self.url).database
        if not database or database == ":memory:":
            return None
        return Path(database)

    def prepare(self) -> None:
        if self.path is None:
            raise ValueError(
                "an in-memory SQLite database cannot be shared between threads and processes; "
                "use a file URL such as sqlite:///agentflow.db"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def engine(self, *, write: bool) -> sa.Engine:
        engine = sa.create_engine(
            self.url, poolclass=sa.pool.NullPool, connect_args={"check_same_thread": False}
        )
        synchronous = self.synchronous
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            dbapi.isolation_level = None
            cursor = dbapi.cursor()
            # busy_timeout first: switching a new file to WAL takes a lock that another
            # connection (or process) may hold at the same moment.
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

        self._engines.append(engine)
        return engine


class PostgresDialect(Dialect):
    """Postgres through psycopg 3; claims use ``FOR UPDATE SKIP LOCKED``."""

    name = "postgresql"

    def for_update(self, select: sa.Select[Any], *, skip_locked: bool = True) -> sa.Select[Any]:
        return select.with_for_update(skip_locked=skip_locked)

    @contextmanager
    def _advisory(self, conn: Connection) -> Iterator[None]:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        yield

    def migration_lock(self, conn: Connection) -> AbstractContextManager[None]:
        return self._advisory(conn)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Tags this process's notifications: its own workers are woken in memory already.
        self._origin = secrets.token_hex(8)

    def engine(self, *, write: bool) -> sa.Engine:
        # Reads are single statements: autocommit spares them the BEGIN and COMMIT round trips.
        options = {} if write else {"isolation_level": "AUTOCOMMIT"}
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool, **options)
        self._engines.append(engine)
        return engine

    def lock_names(self, conn: Connection, names: list[str]) -> None:
        # Sorted, so that two transactions locking overlapping names cannot deadlock.
        for name in sorted(set(names)):
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                {"name": name},
            )

    def notify_work(self, conn: Connection) -> None:
        # Delivered at commit; identical ones in one transaction collapse into one.
        conn.exec_driver_sql(f"NOTIFY {WORK_CHANNEL}, '{self._origin}'")

    def listen(self, on_work: Callable[[], None]) -> Listener | None:
        conninfo = sa.make_url(self.url).set(drivername="postgresql")
        return Listener(conninfo.render_as_string(hide_password=False), on_work, self._origin)


class Listener:
    """A thread holding a LISTEN connection; reconnects if the connection drops."""

    def __init__(self, conninfo: str, on_work: Callable[[], None], origin: str) -> None:
        self._conninfo = conninfo
        self._on_work = on_work
        self._origin = origin
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentflow-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {WORK_CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.1, stop_after=1):
                            if note.payload != self._origin:
                                self._on_work()
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def dialect_for(url: str, *, synchronous: Literal["normal", "full"] = "normal") -> Dialect:
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":
        return SQLiteDialect(url, synchronous)
    if backend == "postgresql":
        return PostgresDialect(url)
    raise ValueError(
        f"unsupported database {backend!r} in {url!r}: use sqlite:///path.db or postgresql://..."
    )
