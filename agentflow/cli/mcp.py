"""``agentflow mcp``: serve APP's MCP server over stdio, for MCP clients that start it."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import UsageError, run_async
from .options import AppArg, parse_log_level

__all__ = ["mcp"]


def mcp(
    app: AppArg,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", help="Expose only the tools that read (no trigger, approve, cancel)."
        ),
    ] = False,
    workflow_tools: Annotated[
        str,
        typer.Option(
            "--workflow-tools",
            metavar="all|none|ID,ID",
            help="Workflows that are also tools of their own, taking their payload as "
            "arguments: all, none, or a comma-separated list of workflow ids.",
        ),
    ] = "all",
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            max=60,
            help="How long a workflow's tool waits for its run before answering with the "
            "run id and status.",
        ),
    ] = 3.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Logging level, on stderr.")
    ] = "warning",
) -> None:
    """Serve APP's MCP server on stdin/stdout (the client starts this command).

    Tools: list_workflows, trigger_workflow, get_run, list_runs, get_run_logs, approve_run,
    reject_run, cancel_run, send_event, and one per workflow; runs are resources
    (agentflow://runs/RUN_ID). Runs execute in `agentflow worker APP` (or `dev`), not here.
    """
    import logging
    import sys

    from .loader import load_engine

    selection: bool | list[str]
    if workflow_tools.strip() in ("all", "none"):
        selection = workflow_tools.strip() == "all"
    else:
        selection = [name.strip() for name in workflow_tools.split(",") if name.strip()]

    async def main() -> None:
        from mcp_server import run_stdio

        # stdout carries the protocol: every log line goes to stderr.
        logging.basicConfig(
            level=parse_log_level(log_level),
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )
        engine = load_engine(app)
        try:
            await run_stdio(
                engine, read_only=read_only, workflow_tools=selection, wait_seconds=wait
            )
        except ValueError as exc:  # workflow_tools names an unknown workflow
            raise UsageError(str(exc)) from None

    run_async(main)
