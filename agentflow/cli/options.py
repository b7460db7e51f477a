"""Arguments and options shared by the commands, and running a command against an engine."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .errors import UsageError, run_async

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["AppArg", "JsonOpt", "RunIdArg", "check_database", "parse_json", "with_engine"]

T = TypeVar("T")

AppArg = Annotated[
    str,
    typer.Argument(
        metavar="APP",
        help="Your Engine, as 'module:attribute' importable from the working directory "
        "(e.g. 'myapp:engine').",
        show_default=False,
    ),
]
RunIdArg = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run's id.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def parse_json(text: str | None, option: str) -> Any:
    """The JSON value of an option: inline JSON, ``@path`` for a file, or ``-`` for stdin."""
    if text is None:
        return None
    source = text
    if text == "-":
        source = sys.stdin.read()
    elif text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {text[1:]!r}: {exc.strerror}") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None


def with_engine(
    app: str, body: Callable[[Engine], Awaitable[T]], *, json_output: bool = False
) -> T:
    """Import ``app``, open its engine, run ``body`` and close the engine again."""
    from .loader import load_engine

    async def main() -> T:
        engine = load_engine(app)
        await check_database(engine.database_url)
        async with engine:
            return await body(engine)

    return run_async(main, json_output=json_output)


async def check_database(url: str, timeout: float = 10.0) -> None:
    """Fail fast, with one clear line, when a database server cannot be reached.

    The engine's database threads would otherwise die on the failed connection and leave
    the command waiting forever. SQLite files are local: nothing to check.
    """
    import anyio
    import sqlalchemy as sa

    from .errors import CLIError

    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        return

    def ping() -> None:
        engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": int(timeout)}
        )
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()

    try:
        await anyio.to_thread.run_sync(ping)
    except sa.exc.SQLAlchemyError as exc:
        from .output import display_url

        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CLIError(
            f"cannot connect to {display_url(url)}: {reason}", code="database_unavailable"
        ) from None
