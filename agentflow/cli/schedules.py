"""``agentflow schedules``: list, create, pause, resume and delete cron schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from .options import (
    ApiKeyOpt,
    JsonOpt,
    MaybeAppArg,
    ServerOpt,
    needed,
    parse_json,
    target,
    target_with_arg,
    with_backend,
)

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.schedules import Schedule

__all__ = ["app"]

app = typer.Typer(
    name="schedules",
    help="List, create, pause, resume and delete cron schedules.",
    no_args_is_help=True,
)


class MissedPolicy(StrEnum):
    skip = "skip"
    latest = "latest"
    all = "all"


ScheduleIdArg = Annotated[
    str | None,
    typer.Argument(metavar="SCHEDULE_ID", help="The schedule's id.", show_default=False),
]


@app.command("list")
def list_schedules(
    app_: MaybeAppArg = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only schedules of this workflow.")
    ] = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List schedules (the ones declared by APP's workflows included)."""
    where, () = target(app_, server, api_key, json_output=json_output)

    async def body(engine: Backend) -> list[Schedule]:
        return await engine.schedules.list(workflow)

    schedules = with_backend(where, body, json_output=json_output)
    from .output import print_json

    if json_output:
        print_json(schedules)
    else:
        _render(schedules)


@app.command("create")
def create(
    app_: MaybeAppArg = None,
    workflow_: Annotated[
        str | None,
        typer.Argument(metavar="WORKFLOW", help="The workflow's id.", show_default=False),
    ] = None,
    cron_: Annotated[
        str | None,
        typer.Argument(
            metavar="CRON",
            help="A 5-field cron expression ('0 9 * * 1-5') or a macro such as '@daily'.",
            show_default=False,
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", "-z", help="The IANA timezone the cron is read in.")
    ] = "UTC",
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON",
            help="The payload of every run as JSON ('@file.json' reads a file, '-' stdin).",
        ),
    ] = None,
    missed: Annotated[
        MissedPolicy,
        typer.Option(help="Ticks missed while no scheduler ran: skip, latest (run once) or all."),
    ] = MissedPolicy.latest,
    schedule_id: Annotated[
        str | None, typer.Option("--id", help="The schedule's id (generated if omitted).")
    ] = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Start WORKFLOW at every tick of CRON. A running worker starts the runs."""
    where, (workflow_arg, cron_arg) = target(
        app_, server, api_key, workflow_, cron_, json_output=json_output
    )
    workflow = needed(workflow_arg, "WORKFLOW", json_output=json_output)
    cron = needed(cron_arg, "CRON", json_output=json_output)

    async def body(engine: Backend) -> Schedule:
        return await engine.schedules.create(
            workflow,
            cron,
            timezone=timezone,
            payload=parse_json(payload, "--payload"),
            missed=missed.value,
            id=schedule_id,
        )

    schedule = with_backend(where, body, json_output=json_output)
    _report(schedule, f"created schedule {schedule.id}", json_output=json_output)


@app.command("pause")
def pause(
    app_: MaybeAppArg = None,
    schedule_id_: ScheduleIdArg = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Stop starting runs until the schedule is resumed."""
    _pause_or_resume(True, app_, schedule_id_, server, api_key, json_output)


@app.command("resume")
def resume(
    app_: MaybeAppArg = None,
    schedule_id_: ScheduleIdArg = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Tick again from now on; ticks that fell while it was paused are not run."""
    _pause_or_resume(False, app_, schedule_id_, server, api_key, json_output)


@app.command("delete")
def delete(
    app_: MaybeAppArg = None,
    schedule_id_: ScheduleIdArg = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete a schedule; runs it already started go on."""
    where, schedule_id = target_with_arg(
        app_, server, api_key, schedule_id_, "SCHEDULE_ID", json_output=json_output
    )

    async def body(engine: Backend) -> None:
        await engine.schedules.delete(schedule_id)

    with_backend(where, body, json_output=json_output)
    from .output import emit

    emit({"deleted": schedule_id}, f"deleted schedule {schedule_id}", json_output=json_output)


def _pause_or_resume(
    pause: bool,
    app: str | None,
    schedule_id_: str | None,
    server: str | None,
    api_key: str | None,
    json_output: bool,
) -> None:
    where, schedule_id = target_with_arg(
        app, server, api_key, schedule_id_, "SCHEDULE_ID", json_output=json_output
    )

    async def body(engine: Backend) -> Schedule:
        if pause:
            return await engine.schedules.pause(schedule_id)
        return await engine.schedules.resume(schedule_id)

    schedule = with_backend(where, body, json_output=json_output)
    verb = "paused" if pause else "resumed"
    _report(schedule, f"{verb} schedule {schedule.id}", json_output=json_output)


def _local(value: datetime | None, timezone: str) -> str:
    """A time in the schedule's own timezone, as its cron expression reads it."""
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _report(schedule: Schedule, message: str, *, json_output: bool) -> None:
    from .output import emit

    state = (
        "paused"
        if schedule.paused
        else f"next tick {_local(schedule.next_tick_at, schedule.timezone)}"
    )
    emit(schedule, f"{message} ({state})", json_output=json_output)


def _render(schedules: Sequence[Schedule]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from .output import console

    out = console()
    if not schedules:
        out.print("no schedules", style="dim")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("SCHEDULE", "WORKFLOW", "CRON", "TIMEZONE", "MISSED", "NEXT TICK", "LAST TICK"):
        table.add_column(column, no_wrap=column in ("SCHEDULE", "NEXT TICK", "LAST TICK"))
    for s in schedules:
        upcoming = "[dim]paused[/]" if s.paused else _local(s.next_tick_at, s.timezone)
        table.add_row(
            escape(s.id) + (" [dim](declared)[/]" if s.declared else ""),
            escape(s.workflow_id),
            escape(s.cron),
            s.timezone,
            s.missed,
            upcoming,
            _local(s.last_tick_at, s.timezone),
        )
    out.print(table)
