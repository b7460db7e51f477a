"""``agentflow runs``: list, inspect, cancel, replay and fork runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentflow.status import RunStatus

from .options import (
    ApiKeyOpt,
    JsonOpt,
    MaybeAppArg,
    RunIdArg,
    ServerOpt,
    target,
    target_with_arg,
    with_backend,
)

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.models import Run

__all__ = ["app"]

app = typer.Typer(
    name="runs", help="List, inspect, cancel, replay and fork runs.", no_args_is_help=True
)

WorkflowOpt = Annotated[
    str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
]
StatusOpt = Annotated[
    list[RunStatus] | None,
    typer.Option("--status", "-s", help="Only runs with this status (repeatable)."),
]
TagOpt = Annotated[str | None, typer.Option("--tag", "-t", help="Only runs with this tag.")]
SinceOpt = Annotated[
    datetime | None,
    typer.Option(
        "--since", help="Only runs created at or after this time (ISO 8601, UTC if bare)."
    ),
]
UntilOpt = Annotated[
    datetime | None,
    typer.Option("--until", help="Only runs created before this time (ISO 8601, UTC if bare)."),
]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")]


@app.command("list")
def list_runs(
    app_: MaybeAppArg = None,
    workflow: WorkflowOpt = None,
    status: StatusOpt = None,
    tag: TagOpt = None,
    limit: LimitOpt = 50,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List runs, newest first."""
    where, () = target(app_, server, api_key, json_output=json_output)

    async def body(engine: Backend) -> list[Run]:
        return await engine.list_runs(
            workflow=workflow, status=status or None, tag=tag, limit=limit
        )

    runs = with_backend(where, body, json_output=json_output)
    from .output import print_json, render_runs

    if json_output:
        print_json(runs)
    else:
        render_runs(runs)


@app.command("show")
def show(
    app_: MaybeAppArg = None,
    run_id_: RunIdArg = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the traceback of every error.")
    ] = False,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Show a run: its steps, pending approvals (with their tokens), logs and errors."""
    where, run_id = target_with_arg(
        app_, server, api_key, run_id_, "RUN_ID", json_output=json_output
    )

    async def body(engine: Backend) -> dict[str, Any]:
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

    detail = with_backend(where, body, json_output=json_output)
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
        app=where.hint,
        tracebacks=traceback,
    )


@app.command("cancel")
def cancel(
    app_: MaybeAppArg = None,
    run_id_: RunIdArg = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Cancel a run and its unfinished child runs.

    A run that is executing stops at its worker's next heartbeat.
    """
    where, run_id = target_with_arg(
        app_, server, api_key, run_id_, "RUN_ID", json_output=json_output
    )

    async def body(engine: Backend) -> Run:
        return await engine.cancel(run_id)

    run = with_backend(where, body, json_output=json_output)
    from .output import emit

    if run.status.is_terminal:
        message = f"cancelled run {run.id}"
    else:
        message = (
            f"cancellation requested for run {run.id}; its worker stops it at the next heartbeat"
        )
    emit(run, message, json_output=json_output)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@app.command("cancel-many")
def cancel_many(
    app_: MaybeAppArg = None,
    workflow: WorkflowOpt = None,
    status: StatusOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Cancel every run, with no filter.")] = False,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Cancel every unfinished run matching the filters (and their child runs)."""
    filtered = workflow or status or tag or since or until
    if not filtered and not yes:
        raise typer.BadParameter(
            "give --workflow, --status, --tag, --since or --until, or --yes to cancel all"
        )
    where, () = target(app_, server, api_key, json_output=json_output)

    async def body(engine: Backend) -> list[str]:
        return await engine.cancel_many(
            workflow=workflow,
            status=status or None,
            tag=tag,
            created_after=_utc(since),
            created_before=_utc(until),
        )

    ids = with_backend(where, body, json_output=json_output)
    from .output import emit

    emit({"cancelled": ids}, f"cancelled {len(ids)} run(s)", json_output=json_output)


@app.command("replay")
def replay(
    app_: MaybeAppArg = None,
    run_id_: RunIdArg = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Start a new run of the same workflow with the same payload and tags."""
    where, run_id = target_with_arg(
        app_, server, api_key, run_id_, "RUN_ID", json_output=json_output
    )

    async def body(engine: Backend) -> Run:
        return await (await engine.replay(run_id)).get()

    run = with_backend(where, body, json_output=json_output)
    from .output import emit

    emit(run, f"replayed {run_id} as run {run.id}", json_output=json_output)


@app.command("replay-many")
def replay_many(
    app_: MaybeAppArg = None,
    workflow: WorkflowOpt = None,
    status: StatusOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = 100,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Replay (as new runs) every run matching the filters, oldest first."""
    where, () = target(app_, server, api_key, json_output=json_output)

    async def body(engine: Backend) -> list[str]:
        handles = await engine.replay_many(
            workflow=workflow,
            status=status or None,
            tag=tag,
            created_after=_utc(since),
            created_before=_utc(until),
            limit=limit,
        )
        return [h.id for h in handles]

    ids = with_backend(where, body, json_output=json_output)
    from .output import emit

    emit({"started": ids}, f"started {len(ids)} replay run(s)", json_output=json_output)


@app.command("fork")
def fork(
    app_: MaybeAppArg = None,
    run_id_: RunIdArg = None,
    *,
    from_step: Annotated[
        str,
        typer.Option(
            "--from-step",
            help="Journal position (#) or step name: it and what follows run again.",
        ),
    ],
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Resume a run as a new run from a step, keeping the journal before it."""
    where, run_id = target_with_arg(
        app_, server, api_key, run_id_, "RUN_ID", json_output=json_output
    )
    step: int | str = int(from_step) if from_step.isdigit() else from_step

    async def body(engine: Backend) -> Run:
        return await (await engine.fork(run_id, from_step=step)).get()

    run = with_backend(where, body, json_output=json_output)
    from .output import emit

    emit(run, f"forked {run_id} from step {from_step} as run {run.id}", json_output=json_output)
