"""The database threads: a one-statement write may skip the explicit transaction (Postgres
runs it in autocommit), and the connection is transactional again for the next write."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentflow import Engine
from agentflow.storage.database import Database
from agentflow.storage.transactions import claimable

pytestmark = pytest.mark.anyio

_INSERT = sa.text("INSERT INTO agentflow_settings (name, value, created_at) VALUES (:n, 'x', 0)")
_COUNT = sa.text("SELECT count(*) FROM agentflow_settings WHERE name LIKE 'probe%'")


class Boom(Exception):
    pass


async def test_a_write_after_a_one_statement_write_is_still_one_transaction(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    await engine.start()
    db = engine.db

    def insert(name: str) -> Callable[[Connection], None]:
        return lambda conn: conn.execute(_INSERT, {"n": name}) and None

    await db.write(insert("probe-1"), one_statement=True)

    def half_then_fail(conn: Connection) -> None:
        conn.execute(_INSERT, {"n": "probe-2"})
        raise Boom

    for n in range(2):  # each after a one-statement write
        with pytest.raises(Boom):
            await db.write(half_then_fail)
        await db.write(insert(f"probe-{n + 3}"), one_statement=True)
    # A one-statement write that fails (a duplicate key) leaves nothing behind either.
    with pytest.raises(sa.exc.IntegrityError):
        await db.write(insert("probe-1"), one_statement=True)
    with pytest.raises(Boom):
        await db.write(half_then_fail)
    assert await db.read(lambda conn: conn.execute(_COUNT).scalar()) == 3


async def test_a_one_statement_write_that_wakes_workers_leaves_the_thread_usable(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    await engine.start()
    db = Database(engine.db.url, pool_size=1)  # one writer thread: the next writes use it

    def insert_and_wake(conn: Connection) -> None:
        conn.execute(_INSERT, {"n": "probe-wake"})
        claimable(conn)  # a NOTIFY after the statement, on Postgres

    try:
        await db.write(insert_and_wake, one_statement=True)
        for n in range(3):
            await db.write(lambda conn, n=n: conn.execute(_INSERT, {"n": f"probe-{n}"}) and None)
        assert await db.read(lambda conn: conn.execute(_COUNT).scalar()) == 4
    finally:
        db.close()
