"""``agentflow trigger``: start a run, optionally wait for it with a live status line."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import EXIT_FAILURE, UsageError
from .options import AppArg, JsonOpt, parse_json, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine, RunHandle
    from agentflow.models import Run

__all__ = ["trigger"]


def trigger(
    app: AppArg,
    workflow: Annotated[
        str,
        typer.Argument(metavar="WORKFLOW", help="The workflow id to run.", show_default=False),
    ],
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
) -> None:
    """Start a run of WORKFLOW.

    Prints the run id and status. With --wait, shows the run's progress and prints its output;
    the exit code is then 0 only if the run completed. An invalid payload exits with code 2
    and lists every invalid field.
    """

    triggered: list[str] = []

    async def body(engine: Engine) -> Run | None:
        if timeout is not None and not wait:
            raise UsageError("--timeout only makes sense with --wait")
        value = parse_json(payload, "--payload")
        handle: RunHandle[Any] = await engine.trigger(
            workflow, value, idempotency_key=idempotency_key, delay=delay, tags=tags or ()
        )
        triggered.append(handle.id)
        run = await handle.get()
        if not wait:
            _report_triggered(run, created=handle.created, json_output=json_output)
            return run
        if not json_output:
            verb = "triggered" if handle.created else "found existing"
            _note(f"{verb} run {run.id} ({run.workflow_id})")
        return await _wait_with_progress(engine, run, timeout=timeout, app=app)

    try:
        run = with_engine(app, body, json_output=json_output)
    except KeyboardInterrupt:
        if triggered:
            _note(
                f"stopped waiting; run {triggered[0]} goes on "
                f"(follow it with: agentflow runs show {app} {triggered[0]})"
            )
        raise SystemExit(130) from None
    if not wait or run is None:
        return
    _report_finished(run, json_output=json_output)
    if run.status.value != "completed":
        raise typer.Exit(EXIT_FAILURE)


def _note(message: str) -> None:
    from .output import err_console

    err_console().print(message, style="dim", markup=False, highlight=False, soft_wrap=True)


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
    import json

    from rich.markup import escape

    from .output import console, err_console, fmt_duration, print_json, run_duration, status_text

    if json_output:
        print_json(run)
        return
    line = f"run {run.id} {status_text(run.status.value)}"
    if run.started_at is not None:
        line += f" in {fmt_duration(run_duration(run))}"
    if run.status.value == "completed":
        err_console().print(line, highlight=False)
        console().print(
            json.dumps(run.output, indent=2, ensure_ascii=False, default=str),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    if run.error:
        line += f": {escape(str(run.error.get('type')))}: {escape(str(run.error.get('message')))}"
    err_console().print(line, style="red", highlight=False)


async def _describe(engine: Engine, run: Run, app: str, waited: float) -> str:
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
                parts.append(f"approval {wp.name!r} (agentflow approve {app} {run.id} {wp.name})")
            elif wp.kind == "sleep":
                parts.append(f"a timer (fires {fmt_time(wp.timeout_at)})")
            else:
                parts.append(f"{wp.kind} {wp.name!r}")
        return "waiting for " + (", ".join(parts) or "a waitpoint")
    if status == "delayed":
        return f"delayed until {fmt_time(run.available_at)}"
    if status == "queued" and waited > 3:
        return f"queued (is a worker running? start one with: agentflow worker {app})"
    return status


async def _wait_with_progress(engine: Engine, run: Run, *, timeout: float | None, app: str) -> Run:
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
            text = f"run {run.id}: {await _describe(engine, run, app, time.monotonic() - began)}"
            if text != shown:
                shown = text
                if status is not None:
                    status.update(text)
                else:
                    console.print(text, style="dim", markup=False, highlight=False, soft_wrap=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CLIError(
                    f"run {run.id} is still {run.status.value} after {timeout}s; it goes on "
                    f"(follow it with: agentflow runs show {app} {run.id})",
                    code="wait_timeout",
                )
            try:
                run = await engine.wait(run.id, timeout=min(0.5, remaining))
            except WaitTimeoutError:
                run = await engine.get_run(run.id)
    return run
