"""Rendering: rich tables for people, JSON (``model_dump(mode="json")``) for programs.

rich is imported inside the functions so that ``agentflow --help`` does not pay for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console
    from rich.table import Table

    from agentflow.models import (
        ApprovalDecision,
        AttemptError,
        EventRecord,
        LogEntry,
        Run,
        StepRecord,
        WaitpointRecord,
    )

__all__ = [
    "console",
    "display_url",
    "emit",
    "err_console",
    "error_text",
    "pretty_json",
    "print_json",
    "render_decision",
    "render_event",
    "render_run_detail",
    "render_runs",
    "say",
    "to_json",
]

STATUS_STYLES = {
    "queued": "cyan",
    "delayed": "blue",
    "running": "yellow",
    "waiting": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
    "timed_out": "red",
    "pending": "magenta",
    "approved": "green",
    "rejected": "red",
}
LEVEL_STYLES = {"debug": "dim", "info": "", "warn": "yellow", "warning": "yellow", "error": "red"}

_consoles: dict[bool, Console] = {}


def console() -> Console:
    """The stdout console."""
    return _console(stderr=False)


def err_console() -> Console:
    """The stderr console: progress, hints and errors, so stdout stays the command's output."""
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    if stderr not in _consoles:
        import os

        from rich.console import Console

        out = Console(stderr=stderr)
        if not out.is_terminal and "COLUMNS" not in os.environ:
            out.width = 200  # piped or captured: do not cut tables to 80 columns
        _consoles[stderr] = out
    return _consoles[stderr]


def say(message: str, *, style: str | None = None, err: bool = False) -> None:
    """Print ``message`` as plain text (no markup), on stderr when ``err``."""
    out = err_console() if err else console()
    out.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


# -- JSON ---------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Pydantic models (and lists/dicts of them) as JSON-ready data."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def print_json(value: BaseModel | Sequence[Any] | dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(to_json(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit(
    value: BaseModel | Sequence[Any] | dict[str, Any], message: str, *, json_output: bool
) -> None:
    """A command's result: ``value`` as JSON, or ``message`` for people."""
    if json_output:
        print_json(value)
    else:
        say(message)


def _compact(value: Any, limit: int = 60) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, default=str), limit)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- formatting ---------------------------------------------------------------------------


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_duration(run: Run) -> float | None:
    """Wall-clock time since the run started (until it finished), waits included."""
    if run.started_at is None:
        return None
    end = run.finished_at or datetime.now(UTC)
    return max(0.0, (end - run.started_at).total_seconds())


def error_text(error: dict[str, Any]) -> str:
    """A run's or step's error, as ``Type: message``."""
    return f"{error.get('type')}: {error.get('message')}"


def status_text(status: str) -> str:
    style = STATUS_STYLES.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def _table(title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")


# -- renderers ----------------------------------------------------------------------------


def render_runs(runs: Sequence[Run]) -> None:
    out = console()
    if not runs:
        out.print("no runs", style="dim")
        return
    table = _table()
    for column in ("RUN", "WORKFLOW", "STATUS", "ATTEMPT", "TAGS", "CREATED", "DURATION"):
        table.add_column(column, no_wrap=column in ("RUN", "CREATED"))
    for run in runs:
        table.add_row(
            run.id,
            f"{run.workflow_id}@{run.workflow_version}",
            status_text(run.status.value),
            str(run.attempt),
            ", ".join(run.tags) or "-",
            fmt_time(run.created_at),
            fmt_duration(run_duration(run)),
        )
    out.print(table)


def render_run_detail(
    run: Run,
    steps: Sequence[StepRecord],
    waitpoints: Sequence[WaitpointRecord],
    logs: Sequence[LogEntry],
    errors: Sequence[AttemptError],
    *,
    app: str,
    tracebacks: bool = False,
) -> None:
    from rich.markup import escape

    out = console()
    summary = _table(f"Run {run.id}")
    summary.show_header = False
    summary.add_column("field", style="bold")
    summary.add_column("value")
    summary.add_row("workflow", escape(f"{run.workflow_id} (version {run.workflow_version})"))
    status = status_text(run.status.value)
    if run.cancel_requested and not run.is_finished:
        status += " (cancel requested)"
    summary.add_row("status", status)
    summary.add_row("attempt", str(run.attempt))
    if run.tags:
        summary.add_row("tags", escape(", ".join(run.tags)))
    if run.parent_id:
        summary.add_row("parent", run.parent_id)
    if run.idempotency_key:
        summary.add_row("idempotency key", escape(run.idempotency_key))
    summary.add_row("created", fmt_time(run.created_at))
    if run.available_at > run.created_at and run.started_at is None:
        summary.add_row("available at", fmt_time(run.available_at))
    summary.add_row("started", fmt_time(run.started_at))
    summary.add_row("finished", fmt_time(run.finished_at))
    summary.add_row("duration", fmt_duration(run_duration(run)))
    summary.add_row("payload", escape(pretty_json(run.payload)))
    if run.output is not None or run.status.value == "completed":
        summary.add_row("output", escape(pretty_json(run.output)))
    if run.error:
        summary.add_row("error", f"[red]{escape(error_text(run.error))}")
    out.print(summary)

    if steps:
        table = _table("Steps")
        for column in ("#", "STEP", "KIND", "STATUS", "ATTEMPTS", "DURATION", "OUTPUT"):
            table.add_column(column, justify="right" if column == "#" else "left")
        for step in steps:
            if step.error:
                result = f"[red]{escape(_clip(error_text(step.error)))}[/]"
            else:
                result = escape(_compact(step.output))
            table.add_row(
                str(step.seq),
                escape(step.name),
                step.kind,
                status_text(step.status),
                str(step.attempts),
                fmt_duration(step.duration_ms / 1000),
                result,
            )
        out.print(table)

    approvals = [w for w in waitpoints if w.kind == "approval" and w.status == "pending"]
    if approvals:
        table = _table("Pending approvals")
        for column in ("NAME", "TOKEN", "DATA", "DIGEST", "TIMEOUT"):
            table.add_column(column, no_wrap=column in ("NAME", "TOKEN"))
        for wp in approvals:
            table.add_row(
                escape(wp.name),
                wp.token or "-",
                escape(_compact(wp.data)),
                (wp.digest or "-")[:12],
                fmt_time(wp.timeout_at),
            )
        out.print(table)
        name = approvals[0].name
        out.print(
            f"  approve with: agentflow approve {escape(app)} {run.id} {escape(name)}"
            f"  (or reject with: agentflow reject ...)",
            style="dim",
            highlight=False,
        )

    other = [w for w in waitpoints if w.kind != "approval" and w.status == "pending"]
    if other:
        table = _table("Waiting on")
        for column in ("KIND", "NAME", "UNTIL / FILTER"):
            table.add_column(column)
        for wp in other:
            if wp.kind == "sleep":
                detail = fmt_time(wp.timeout_at)
            else:
                detail = "any" if wp.data is None else _compact(wp.data)
            if wp.kind != "sleep" and wp.timeout_at is not None:
                detail += f" (times out {fmt_time(wp.timeout_at)})"
            table.add_row(wp.kind, escape(wp.name), escape(detail))
        out.print(table)

    if logs:
        table = _table("Logs")
        for column in ("TIME", "LEVEL", "STEP", "MESSAGE"):
            table.add_column(column, no_wrap=column == "TIME")
        for entry in logs:
            message = escape(entry.message)
            if entry.fields:
                message += f" [dim]{escape(_compact(entry.fields, 80))}[/]"
            level_style = LEVEL_STYLES.get(entry.level, "")
            level = f"[{level_style}]{entry.level}[/]" if level_style else entry.level
            table.add_row(
                fmt_time(entry.ts), level, "-" if entry.seq is None else str(entry.seq), message
            )
        out.print(table)

    if errors:
        table = _table("Errors")
        for column in ("TIME", "ATTEMPT", "STEP", "ERROR"):
            table.add_column(column, no_wrap=column == "TIME")
        for err in errors:
            where = "-" if err.step is None else f"#{err.seq} {err.step} (try {err.step_attempt})"
            text = f"[red]{escape(err.type)}[/]: {escape(err.message)}"
            if tracebacks and err.traceback:
                text += "\n[dim]" + escape(err.traceback.rstrip()) + "[/]"
            table.add_row(fmt_time(err.ts), str(err.run_attempt), escape(where), text)
        out.print(table)
        if not tracebacks and any(e.traceback for e in errors):
            out.print("  tracebacks: add --traceback", style="dim", highlight=False)


def render_decision(decision: ApprovalDecision, *, name: str | None, run_id: str | None) -> None:
    what = f"approval {name!r}" if name else "approval"
    where = f" on run {run_id}" if run_id else ""
    line = f"{decision.status} {what}{where}"
    if decision.approver:
        line += f" by {decision.approver}"
    if decision.edited:
        line += " (with edited data)"
    say(line, style="green" if decision.approved else "yellow")


def render_event(event: EventRecord) -> None:
    if event.duplicate:
        say(
            f"event {event.id} ({event.name!r}) was already recorded; nothing changed",
            style="yellow",
        )
    else:
        say(f"sent event {event.id} ({event.name!r}); resumed {event.resumed_runs} run(s)")


def display_url(url: str) -> str:
    """A database URL with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
