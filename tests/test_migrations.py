"""Schema migrations: the migrated schema is exactly the SQLModel tables, every time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from agentflow import Engine
from agentflow.storage.database import normalize_url
from agentflow.storage.dialects import dialect_for
from agentflow.storage.migrate import (
    HEAD,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    upgrade,
)
from agentflow.storage.tables import metadata

pytestmark = pytest.mark.anyio


def test_head_constant_matches_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


async def test_migrated_schema_matches_the_models(
    make_engine: Callable[..., Engine], database_url: str
) -> None:
    engine = make_engine()
    await engine.start()
    await engine._store.migrate()  # a second upgrade is a no-op
    db = sa.create_engine(normalize_url(database_url))
    try:
        with db.connect() as conn:
            assert current_revision(conn) == HEAD
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
    finally:
        db.dispose()


async def test_upgrade_from_the_first_schema_keeps_existing_rows(database_url: str) -> None:
    url = normalize_url(database_url)
    db = sa.create_engine(url)
    try:
        with db.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.exec_driver_sql(
                "INSERT INTO agentflow_events (id, name, payload, created_at, resumed_runs) "
                "VALUES ('evt_old', 'order.paid', '{}', 1.0, 0)"
            )
        with db.begin() as conn:
            upgrade(conn, dialect_for(url))
        with db.connect() as conn:
            assert current_revision(conn) == HEAD
            row = conn.exec_driver_sql(
                "SELECT started_runs FROM agentflow_events WHERE id = 'evt_old'"
            ).one()
            assert row[0] == 0
    finally:
        db.dispose()


async def test_the_newest_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    url = normalize_url(database_url)
    db = sa.create_engine(url)
    try:
        with db.begin() as conn:
            upgrade(conn, dialect_for(url))
            conn.exec_driver_sql(
                "INSERT INTO agentflow_runs (id, workflow_id, workflow_version, status, payload,"
                " attempt, priority, queue, tags, run_metadata, created_at, updated_at,"
                " available_at, cancel_requested, executed_seconds)"
                " VALUES ('run_old', 'w', '1', 'queued', 'null', 1, 2, 'default', '[]', '{}',"
                " 1.0, 1.0, 1000.0, false, 0.0)"
            )
        previous = ScriptDirectory.from_config(alembic_config()).get_revision(HEAD).down_revision
        with db.begin() as conn:
            command.downgrade(alembic_config(conn), str(previous))
        with db.begin() as conn:
            assert current_revision(conn) == previous
            upgrade(conn, dialect_for(url))
        with db.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
            # The row survived both ways, and its claim rank is computed from its priority.
            rank = conn.exec_driver_sql(
                "SELECT claim_rank FROM agentflow_runs WHERE id = 'run_old'"
            ).scalar_one()
            assert rank == 1000.0 - 2 * 60.0
    finally:
        db.dispose()
