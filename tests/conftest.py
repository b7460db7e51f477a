"""Shared fixtures: every engine test runs on a real SQLite file, and on the real Postgres
named by AGENTFLOW_TEST_POSTGRES_URL when it is set (one throwaway database per session)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentflow import Engine

from ._support import reset_postgres

PG_URL = os.environ.get("AGENTFLOW_TEST_POSTGRES_URL")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the test Postgres server, dropped at the end of the session."""
    assert PG_URL is not None
    name = f"agentflow_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


_BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(PG_URL is None, reason="AGENTFLOW_TEST_POSTGRES_URL is not set"),
        ],
    ),
]


@pytest.fixture(params=_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean database for one test: a new SQLite file, or the emptied Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agentflow.db'}"
    url: str = request.getfixturevalue("postgres_database")
    reset_postgres(url)
    return url


@pytest.fixture
async def make_engine(database_url: str) -> AsyncIterator[Callable[..., Engine]]:
    """Build engines on the test database; all are closed when the test ends."""
    engines: list[Engine] = []

    def make(workflows: Any = (), **options: Any) -> Engine:
        engine = Engine(database_url, list(workflows), **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()
