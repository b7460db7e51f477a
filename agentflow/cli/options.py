"""Arguments and options shared by the commands, and running a command against a backend:
APP's engine in process, or an agentflow server over HTTP (``--server``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from .errors import EXIT_USAGE, CLIError, UsageError, database_reason, fail, run_async

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.engine import Engine

__all__ = [
    "ApiKeyOpt",
    "AppArg",
    "JsonOpt",
    "MaybeAppArg",
    "RunIdArg",
    "ServerOpt",
    "Target",
    "check_database",
    "needed",
    "opened_engine",
    "parse_json",
    "parse_log_level",
    "target",
    "target_with_arg",
    "with_backend",
    "with_engine",
]

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
MaybeAppArg = Annotated[
    str | None,
    typer.Argument(
        metavar="APP",
        help="Your Engine, as 'module:attribute' importable from the working directory "
        "(e.g. 'myapp:engine'). Omit it with --server.",
        show_default=False,
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="AGENTFLOW_SERVER",
        help="Call the agentflow HTTP API at URL (e.g. http://127.0.0.1:8000) instead of "
        "opening APP's engine.",
        show_default=False,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        envvar="AGENTFLOW_API_KEY",
        help="With --server: the API key, sent as a Bearer token.",
        show_default=False,
    ),
]
RunIdArg = Annotated[
    str | None, typer.Argument(metavar="RUN_ID", help="The run's id.", show_default=False)
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


def parse_log_level(level: str) -> int:
    """The ``logging`` level named by ``--log-level``."""
    import logging

    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise UsageError(f"unknown --log-level {level!r}; use debug, info, warning or error")
    return numeric


@dataclass(frozen=True)
class Target:
    """What a command talks to: APP's engine, or the server at ``server``."""

    app: str | None
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def hint(self) -> str:
        """How to name the same target in a suggested command line."""
        return f"--server {self.server}" if self.server is not None else str(self.app)


def _usage(message: str, json_output: bool) -> NoReturn:
    fail(message, exit_code=EXIT_USAGE, code="usage_error", json_output=json_output)


def target(
    app: str | None,
    server: str | None,
    api_key: str | None,
    *args: str | None,
    json_output: bool = False,
) -> tuple[Target, tuple[str | None, ...]]:
    """The command's target, and its positional arguments after APP.

    APP is optional, and click fills positional arguments from the left: without APP, the
    command's first argument is in ``app``, so the arguments shift back one place.
    """
    values = (app, *args)
    if server is not None and values[-1] is None:
        return Target(None, server, api_key), values[:-1]
    if server is not None:
        from_env = os.environ.get("AGENTFLOW_SERVER") == server
        hint = " (AGENTFLOW_SERVER is set: unset it to use APP)" if from_env else ""
        _usage(f"give either APP or --server URL, not both{hint}", json_output)
    if app is None:
        _usage(
            "missing APP: name your Engine as 'module:attribute' (e.g. 'myapp:engine'), "
            "or call a server with --server URL",
            json_output,
        )
    return Target(app), args


def needed(value: str | None, name: str, *, json_output: bool = False) -> str:
    """A positional argument that is required (click cannot tell, as APP is optional)."""
    if value is None:
        _usage(f"missing argument {name}", json_output)
    return value


def target_with_arg(
    app: str | None,
    server: str | None,
    api_key: str | None,
    value: str | None,
    name: str,
    *,
    json_output: bool = False,
) -> tuple[Target, str]:
    """The command's target, and its one (required) positional argument ``name`` after APP."""
    where, (given,) = target(app, server, api_key, value, json_output=json_output)
    return where, needed(given, name, json_output=json_output)


def with_backend(
    where: Target, body: Callable[[Backend], Awaitable[T]], *, json_output: bool = False
) -> T:
    """Run ``body`` with APP's engine (opened, then closed) or with a client of the server."""
    if where.server is None:
        assert where.app is not None
        return with_engine(where.app, body, json_output=json_output)
    server = where.server

    async def main() -> T:
        try:
            from agentflow.client import AsyncClient
        except ImportError as exc:  # httpx is what the client needs
            raise UsageError(f"--server needs httpx: pip install httpx ({exc})") from None
        async with AsyncClient(server, api_key=where.api_key) as client:
            return await body(client)

    return run_async(main, json_output=json_output)


def with_engine(
    app: str, body: Callable[[Engine], Awaitable[T]], *, json_output: bool = False
) -> T:
    """Import ``app``, open its engine, run ``body`` and close the engine again."""

    async def main() -> T:
        async with opened_engine(app) as engine:
            return await body(engine)

    return run_async(main, json_output=json_output)


@asynccontextmanager
async def opened_engine(app: str) -> AsyncIterator[Engine]:
    """Import ``app`` and open its engine once its database answers; close it on exit."""
    from .loader import load_engine

    engine = load_engine(app)
    await check_database(engine.database_url)
    async with engine:
        yield engine


async def check_database(url: str, timeout: float = 10.0) -> None:
    """Fail fast, with one clear line, when a database server cannot be reached.

    The engine's database threads would otherwise die on the failed connection and leave
    the command waiting forever. SQLite files are local: nothing to check.
    """
    import anyio
    import sqlalchemy as sa

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

        raise CLIError(
            f"cannot connect to {display_url(url)}: {database_reason(exc)}",
            code="database_unavailable",
        ) from None
