"""The SQL of API keys, webhook sources and installation settings: small tables read far
more often than written, each public method one transaction (like ``store.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .database import Database
from .tables import api_keys, settings, webhook_sources

__all__ = ["AuthStore"]

Clock = Callable[[], float]

_KEY_BY_HASH = sa.select(api_keys).where(
    api_keys.c.secret_hash == sa.bindparam("_hash"), api_keys.c.revoked_at.is_(None)
)


class AuthStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # -- API keys -------------------------------------------------------------------------

    async def insert_key(self, row: Mapping[str, Any]) -> RowMapping:
        values = {**row, "created_at": self.clock()}

        def job(conn: Connection) -> RowMapping:
            conn.execute(api_keys.insert(), values)
            return _one(conn, sa.select(api_keys).where(api_keys.c.id == values["id"]))

        return await self.db.write(job)

    async def keys(self, *, include_revoked: bool) -> list[RowMapping]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def key_by_hash(self, secret_hash: str) -> RowMapping | None:
        def job(conn: Connection) -> RowMapping | None:
            row = conn.execute(_KEY_BY_HASH, {"_hash": secret_hash}).first()
            return None if row is None else row._mapping

        return await self.db.read(job)

    async def touch_key(self, key_id: str, now: float) -> None:
        query = api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now)
        await self.db.write(lambda conn: conn.execute(query))

    async def revoke_keys(self, key_ids: list[str]) -> list[RowMapping]:
        now = self.clock()

        def job(conn: Connection) -> list[RowMapping]:
            conn.execute(
                api_keys.update()
                .where(api_keys.c.id.in_(key_ids), api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            query = sa.select(api_keys).where(api_keys.c.id.in_(key_ids))
            return [r._mapping for r in conn.execute(query)]

        return await self.db.write(job)

    # -- webhook sources ------------------------------------------------------------------

    async def upsert_source(self, name: str, secret: str, event: str | None) -> RowMapping:
        now = self.clock()
        query = sa.select(webhook_sources).where(webhook_sources.c.name == name)
        update = (
            webhook_sources.update()
            .where(webhook_sources.c.name == name)
            .values(secret=secret, event=event)
        )
        row = {"name": name, "secret": secret, "event": event, "created_at": now}

        def job(conn: Connection) -> RowMapping:
            if conn.execute(update).rowcount == 0 and not _insert_new(conn, webhook_sources, row):
                conn.execute(update)  # created by someone else just now: ours is newer
            return _one(conn, query)

        return await self.db.write(job)

    async def source(self, name: str) -> RowMapping | None:
        query = sa.select(webhook_sources).where(webhook_sources.c.name == name)

        def job(conn: Connection) -> RowMapping | None:
            row = conn.execute(query).first()
            return None if row is None else row._mapping

        return await self.db.read(job)

    async def sources(self) -> list[RowMapping]:
        query = sa.select(webhook_sources).order_by(webhook_sources.c.name)
        return await self.db.read(lambda conn: [r._mapping for r in conn.execute(query)])

    async def delete_source(self, name: str) -> bool:
        query = webhook_sources.delete().where(webhook_sources.c.name == name)
        return await self.db.write(lambda conn: conn.execute(query).rowcount > 0)

    # -- settings -------------------------------------------------------------------------

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        """The setting ``name``, created from ``default()`` by the first caller (any process)."""
        query = sa.select(settings.c.value).where(settings.c.name == name)
        value = await self.db.read(lambda conn: conn.execute(query).scalar())
        if value is not None:
            return str(value)
        row = {"name": name, "value": default(), "created_at": self.clock()}

        def job(conn: Connection) -> str:
            _insert_new(conn, settings, row)  # the first caller's value wins
            return str(conn.execute(query).scalar_one())

        return await self.db.write(job)


def _insert_new(conn: Connection, table: sa.Table, row: Mapping[str, Any]) -> bool:
    """Insert ``row`` unless its key exists (also when another process inserts it now)."""
    try:
        with conn.begin_nested():
            conn.execute(table.insert(), row)
    except sa.exc.IntegrityError:
        return False
    return True


def _one(conn: Connection, query: sa.Select[Any]) -> RowMapping:
    return conn.execute(query).one()._mapping
