"""The root ``agentflow`` typer app; each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from . import approvals, db, events, keys, mcp, runs, schedules, serve, trigger, webhooks

__all__ = ["app", "run"]

app = typer.Typer(
    name="agentflow",
    help="Durable AI-agent workflows: run workers, trigger and inspect runs, approve, migrate.\n\n"
    "APP names your Engine as 'module:attribute' (e.g. 'myapp:engine'), imported from the "
    "working directory.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"agentflow {version('agentflow')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Durable AI-agent workflows."""


app.command("dev", rich_help_panel="Processes")(serve.dev)
app.command("worker", rich_help_panel="Processes")(serve.worker)
app.command("serve", rich_help_panel="Processes")(serve.serve)
app.command("mcp", rich_help_panel="Processes")(mcp.mcp)
app.command("trigger", rich_help_panel="Runs")(trigger.trigger)
app.command("approve", rich_help_panel="Runs")(approvals.approve)
app.command("reject", rich_help_panel="Runs")(approvals.reject)
app.add_typer(runs.app, rich_help_panel="Runs")
app.add_typer(events.app, rich_help_panel="Runs")
app.add_typer(schedules.app, rich_help_panel="Runs")
app.add_typer(keys.app, rich_help_panel="Access")
app.add_typer(webhooks.app, rich_help_panel="Access")
app.add_typer(db.app, rich_help_panel="Database")


def run() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside the worker's own signal handling
        raise SystemExit(130) from None
