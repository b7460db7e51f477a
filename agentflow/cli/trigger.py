"""``agentflow trigger``: start a run, optionally wait for it with a live status line."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated

import typer

from .errors import EXIT_FAILURE, UsageError
from .options import (
    ApiKeyOpt,
    JsonOpt,
    MaybeAppArg,
    ServerOpt,
    Target,
    parse_json,
    target_with_arg,
    with_backend,
)

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.models import Run

__all__ = ["trigger"]


def trigger(
    app: MaybeAppArg = None,
    workflow: Annotated[
        str | None,
        typer.Argument(metavar="WORKFLOW", help="The workflow id to run.", show_default=False),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON",
            help="The payload as JSON ('@file.json' reads a file, '-' reads stdin).",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Trigger at most once per key (returns the first run)."
        ),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", metavar="SECONDS", min=0, help="Start no earlier than this."),
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Tag the run (repeatable).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the run to end and print its output.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", metavar="SECONDS", min=0, help="With --wait: give up after this long."
        ),
    ] = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Start a run of WORKFLOW.

    Prints the run id and status. With --wait, shows the run's progress and prints its output;
    the exit code is then 0 only if the run completed. An invalid payload exits with code 2
    and lists every invalid field.
    """
    where, workflow_id = target_with_arg(
        app, server, api_key, workflow, "WORKFLOW", json_output=json_output
    )
    triggered: list[str] = []

    async def body(engine: Backend) -> Run | None:
        if timeout is not None and not wait:
            raise UsageError("--timeout only makes sense with --wait")
        value = parse_json(payload, "--payload")
        handle = await engine.trigger(
            workflow_id, value, idempotency_key=idempotency_key, delay=delay, tags=tags or ()
        )
        triggered.append(handle.id)
        run = await handle.get()
        if not wait:
            _report_triggered(run, created=handle.created, json_output=json_output)
            return run
        if not json_output:
            verb = "triggered" if handle.created else "found existing"
            _note(f"{verb} run {run.id} ({run.workflow_id})")
        return await _wait_with_progress(engine, run, timeout=timeout, where=where)

    try:
        run = with_backend(where, body, json_output=json_output)
    except KeyboardInterrupt:
        if triggered:
            _note(
                f"stopped waiting; run {triggered[0]} goes on "
                f"(follow it with: agentflow runs show {where.hint} {triggered[0]})"
            )
        raise SystemExit(130) from None
    if not wait or run is None:
        return
    _report_finished(run, json_output=json_output)
    if run.status.value != "completed":
        raise typer.Exit(EXIT_FAILURE)


def _note(message: str) -> None:
    from .output import say

    say(message, style="dim", err=True)


def _report_triggered(run: Run, *, created: bool, json_output: bool) -> None:
    from rich.markup import escape

    from .output import console, print_json, status_text, to_json

    if json_output:
        print_json({**to_json(run), "created": created})
        return
    verb = "triggered" if created else "found existing run for this idempotency key:"
    console().print(
        f"{verb} run [bold]{run.id}[/] ({escape(run.workflow_id)}, "
        f"{status_text(run.status.value)})",
        highlight=False,
    )


def _report_finished(run: Run, *, json_output: bool) -> None:
    from rich.markup import escape

    from .output import (
        err_console,
        error_text,
        fmt_duration,
        pretty_json,
        print_json,
        run_duration,
        say,
        status_text,
    )

    if json_output:
        print_json(run)
        return
    line = f"run {run.id} {status_text(run.status.value)}"
    if run.started_at is not None:
        line += f" in {fmt_duration(run_duration(run))}"
    if run.status.value == "completed":
        err_console().print(line, highlight=False)
        say(pretty_json(run.output))
        return
    if run.error:
        line += f": {escape(error_text(run.error))}"
    err_console().print(line, style="red", highlight=False)


async def _describe(engine: Backend, run: Run, where: Target, waited: float) -> str:
    """What the run is doing now, in a few words (with what to do about a waiting approval)."""
    from .output import fmt_time

    status = run.status.value
    if status == "running":
        steps = await engine.get_steps(run.id)
        if steps:
            return f"running (step {steps[-1].seq} {steps[-1].name!r} done)"
        return "running"
    if status == "waiting":
        waits = [w for w in await engine.list_waitpoints(run_id=run.id) if w.status == "pending"]
        parts = []
        for wp in waits:
            if wp.kind == "approval":
                parts.append(
                    f"approval {wp.name!r} (agentflow approve {where.hint} {run.id} {wp.name})"
                )
            elif wp.kind == "sleep":
                parts.append(f"a timer (fires {fmt_time(wp.timeout_at)})")
            else:
                parts.append(f"{wp.kind} {wp.name!r}")
        return "waiting for " + (", ".join(parts) or "a waitpoint")
    if status == "delayed":
        return f"delayed until {fmt_time(run.available_at)}"
    if status == "queued" and waited > 3:
        if where.app is None:
            return "queued (is a worker running on the server's database?)"
        return f"queued (is a worker running? start one with: agentflow worker {where.app})"
    return status


async def _wait_with_progress(
    engine: Backend, run: Run, *, timeout: float | None, where: Target
) -> Run:
    """Wait for ``run`` to end; show a spinner (or status lines when not on a terminal)."""
    from contextlib import nullcontext

    from agentflow.errors import WaitTimeoutError

    from .errors import CLIError
    from .output import err_console

    console = err_console()
    began = time.monotonic()
    deadline = math.inf if timeout is None else began + timeout
    spinner = console.status("") if console.is_terminal else nullcontext()
    shown = ""
    with spinner as status:
        while not run.status.is_terminal:
            text = f"run {run.id}: {await _describe(engine, run, where, time.monotonic() - began)}"
            if text != shown:
                shown = text
                if status is not None:
                    status.update(text)
                else:
                    _note(text)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CLIError(
                    f"run {run.id} is still {run.status.value} after {timeout}s; it goes on "
                    f"(follow it with: agentflow runs show {where.hint} {run.id})",
                    code="wait_timeout",
                )
            try:
                run = await engine.wait(run.id, timeout=min(0.5, remaining))
            except WaitTimeoutError:
                run = await engine.get_run(run.id)
    return run
