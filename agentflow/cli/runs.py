"""``agentflow runs``: list, inspect and cancel runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentflow.status import RunStatus

from .options import AppArg, JsonOpt, RunIdArg, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine
    from agentflow.models import Run

__all__ = ["app"]

app = typer.Typer(name="runs", help="List, inspect and cancel runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    app_: AppArg,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    status: Annotated[
        list[RunStatus] | None,
        typer.Option("--status", "-s", help="Only runs with this status (repeatable)."),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only runs with this tag.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    json_output: JsonOpt = False,
) -> None:
    """List runs, newest first."""

    async def body(engine: Engine) -> list[Run]:
        return await engine.list_runs(
            workflow=workflow, status=status or None, tag=tag, limit=limit
        )

    runs = with_engine(app_, body, json_output=json_output)
    from .output import print_json, render_runs

    if json_output:
        print_json(runs)
    else:
        render_runs(runs)


@app.command("show")
def show(
    app_: AppArg,
    run_id: RunIdArg,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the traceback of every error.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Show a run: its steps, pending approvals (with their tokens), logs and errors."""

    async def body(engine: Engine) -> dict[str, Any]:
        run = await engine.get_run(run_id)
        waitpoints = await engine.list_waitpoints(run_id=run_id)
        return {
            "run": run,
            "steps": await engine.get_steps(run_id),
            "pending_approvals": [
                w for w in waitpoints if w.kind == "approval" and w.status == "pending"
            ],
            "waitpoints": waitpoints,
            "logs": await engine.get_logs(run_id),
            "errors": await engine.get_errors(run_id),
        }

    detail = with_engine(app_, body, json_output=json_output)
    from .output import print_json, render_run_detail

    if json_output:
        print_json(detail)
        return
    render_run_detail(
        detail["run"],
        detail["steps"],
        detail["waitpoints"],
        detail["logs"],
        detail["errors"],
        app=app_,
        tracebacks=traceback,
    )


@app.command("cancel")
def cancel(app_: AppArg, run_id: RunIdArg, json_output: JsonOpt = False) -> None:
    """Cancel a run and its unfinished child runs.

    A run that is executing stops at its worker's next heartbeat.
    """

    async def body(engine: Engine) -> Run:
        return await engine.cancel(run_id)

    run = with_engine(app_, body, json_output=json_output)
    from .output import console, print_json

    if json_output:
        print_json(run)
    elif run.status.is_terminal:
        console().print(f"cancelled run {run.id}", markup=False, highlight=False, soft_wrap=True)
    else:
        console().print(
            f"cancellation requested for run {run.id}; its worker stops it at the next heartbeat",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
