"""Schema migrations (Alembic). ``HEAD`` lets a started engine skip Alembic when up to date."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialects import Dialect

__all__ = ["HEAD", "VERSION_TABLE", "current_revision", "upgrade"]

HEAD = "0004"
VERSION_TABLE = "agentflow_alembic_version"


def current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    row = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").first()
    return None if row is None else str(row[0])


def alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "agentflow.storage:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def upgrade(conn: Connection, dialect: Dialect, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; safe to call from many processes at once."""
    with dialect.migration_lock(conn):
        if revision == "head" and current_revision(conn) == HEAD:
            return HEAD
        from alembic import command

        # Alembic narrates every revision at INFO; keep that out of users' logs unless they
        # configured the "alembic" logger themselves.
        alembic_log = logging.getLogger("alembic")
        quiet = alembic_log.level == logging.NOTSET
        if quiet:
            alembic_log.setLevel(logging.WARNING)
        try:
            command.upgrade(alembic_config(conn), revision)
        finally:
            if quiet:
                alembic_log.setLevel(logging.NOTSET)
        return current_revision(conn)
