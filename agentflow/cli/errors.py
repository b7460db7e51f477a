"""Turning failures into one red line and an exit code, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "CLIError",
    "UsageError",
    "database_reason",
    "fail",
    "run_async",
]

T = TypeVar("T")

EXIT_FAILURE = 1  # not found, conflict, a run that did not complete, a database error
EXIT_USAGE = 2  # bad input: arguments, JSON, payloads, an APP that does not import


class CLIError(Exception):
    """A failure the CLI reports as ``error: message`` with ``exit_code``."""

    exit_code = EXIT_FAILURE
    code = "cli_error"

    def __init__(
        self, message: str, *, details: list[str] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code is not None:
            self.code = code


class UsageError(CLIError):
    exit_code = EXIT_USAGE
    code = "usage_error"


def fail(
    message: str,
    *,
    exit_code: int = EXIT_FAILURE,
    details: list[str] | None = None,
    code: str = "cli_error",
    json_output: bool = False,
    extra: dict[str, Any] | None = None,
) -> NoReturn:
    """Report a failure on stderr and exit (JSON on stderr when ``json_output``)."""
    if json_output:
        error: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
        sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
    else:
        from .output import err_console

        console = err_console()
        for line in [f"error: {message}", *(f"  - {d}" for d in details or [])]:
            console.print(line, style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(exit_code)


def run_async(fn: Callable[[], Awaitable[T]], *, json_output: bool = False) -> T:
    """Run ``fn`` in an event loop, reporting agentflow and CLI errors without a traceback."""
    import anyio

    try:
        return anyio.run(fn)
    except BaseException as exc:
        report(exc, json_output=json_output)
        raise


def report(exc: BaseException, *, json_output: bool = False) -> None:
    """Exit with a readable message if ``exc`` is an expected failure; return otherwise."""
    from sqlalchemy.exc import SQLAlchemyError

    from agentflow.errors import AgentflowError, PayloadValidationError

    leaf = _expected_leaf(exc, (CLIError, AgentflowError, SQLAlchemyError))
    if isinstance(leaf, CLIError):
        fail(
            leaf.message,
            exit_code=leaf.exit_code,
            details=leaf.details,
            code=leaf.code,
            json_output=json_output,
        )
    if isinstance(leaf, PayloadValidationError):
        fail(
            leaf.message if json_output else f"invalid payload for workflow {leaf.workflow_id!r}:",
            exit_code=EXIT_USAGE,
            details=[f"{e['field'] or '(payload)'}: {e['message']}" for e in leaf.errors],
            code=leaf.code,
            json_output=json_output,
            extra={"errors": leaf.errors},
        )
    if isinstance(leaf, AgentflowError):
        extra = {"run_id": leaf.run_id} if leaf.run_id else {}
        fail(leaf.message, code=leaf.code, json_output=json_output, extra=extra)
    if isinstance(leaf, SQLAlchemyError):
        fail(
            f"database error: {database_reason(leaf)}",
            code="database_error",
            json_output=json_output,
        )


def database_reason(exc: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy wraps it in ``orig``)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else repr(exc)


def _expected_leaf(
    exc: BaseException, kinds: tuple[type[BaseException], ...]
) -> BaseException | None:
    """``exc`` itself, or the first expected error inside an exception group."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _expected_leaf(inner, kinds)
            if found is not None:
                return found
    return None
