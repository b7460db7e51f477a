"""``agentflow db``: the database schema (migrations)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import UsageError, run_async
from .options import JsonOpt, check_database

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["app"]

app = typer.Typer(name="db", help="Manage the database schema.", no_args_is_help=True)

OptionalAppArg = Annotated[
    str | None,
    typer.Argument(
        metavar="APP",
        help="Use this Engine's database ('module:attribute'). Default: --database-url, "
        "else AGENTFLOW_DATABASE_URL, else .agentflow/agentflow.db here.",
        show_default=False,
    ),
]
DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL", help="The database to use, instead of APP."),
]


def _engine(app_: str | None, database_url: str | None) -> Engine:
    if app_ is not None and database_url is not None:
        raise UsageError("give either APP or --database-url, not both")
    if app_ is not None:
        from .loader import load_engine

        return load_engine(app_)
    from agentflow.engine import Engine

    return Engine(database_url)


def _revision(
    app_: str | None,
    database_url: str | None,
    read: Callable[[Engine], Awaitable[str | None]],
    *,
    json_output: bool,
) -> tuple[str, str | None]:
    """The database URL and the revision ``read`` returns, without starting the engine."""

    async def main() -> tuple[str, str | None]:
        engine = _engine(app_, database_url)
        try:
            await check_database(engine.database_url)
            return engine.database_url, await read(engine)
        finally:
            await engine.close()

    return run_async(main, json_output=json_output)


def _sqlite_file_missing(url: str) -> bool:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).exists()


async def _current(engine: Engine) -> str | None:
    from agentflow.storage.migrate import current_revision

    if _sqlite_file_missing(engine.database_url):
        return None
    return await engine.db.read(current_revision)


def _report(url: str, revision: str | None, *, json_output: bool, action: str) -> None:
    from agentflow.storage.migrate import HEAD

    from .output import display_url, emit

    data: dict[str, Any] = {
        "database_url": display_url(url),
        "revision": revision,
        "head": HEAD,
        "up_to_date": revision == HEAD,
    }
    state = "up to date" if revision == HEAD else f"head is {HEAD}; run: agentflow db upgrade"
    message = f"{action}{data['database_url']}: revision {revision or 'none'} ({state})"
    emit(data, message, json_output=json_output)


@app.command("upgrade")
def upgrade(
    app_: OptionalAppArg = None, database_url: DatabaseUrlOpt = None, json_output: JsonOpt = False
) -> None:
    """Create the tables or bring them up to date (safe to run from many processes)."""

    async def migrate(engine: Engine) -> str | None:
        return await engine._store.migrate()

    url, revision = _revision(app_, database_url, migrate, json_output=json_output)
    _report(url, revision, json_output=json_output, action="upgraded ")


@app.command("current")
def current(
    app_: OptionalAppArg = None, database_url: DatabaseUrlOpt = None, json_output: JsonOpt = False
) -> None:
    """Show the schema revision of the database."""
    url, revision = _revision(app_, database_url, _current, json_output=json_output)
    _report(url, revision, json_output=json_output, action="")
