"""``agentflow schedules``: list, create, pause, resume and delete cron schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from .options import AppArg, JsonOpt, parse_json, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine
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
    str, typer.Argument(metavar="SCHEDULE_ID", help="The schedule's id.", show_default=False)
]


@app.command("list")
def list_schedules(
    app_: AppArg,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only schedules of this workflow.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List schedules (the ones declared by APP's workflows included)."""

    async def body(engine: Engine) -> list[Schedule]:
        return await engine.schedules.list(workflow)

    schedules = with_engine(app_, body, json_output=json_output)
    from .output import print_json

    if json_output:
        print_json(schedules)
    else:
        _render(schedules)


@app.command("create")
def create(
    app_: AppArg,
    workflow: Annotated[
        str, typer.Argument(metavar="WORKFLOW", help="The workflow's id.", show_default=False)
    ],
    cron: Annotated[
        str,
        typer.Argument(
            metavar="CRON",
            help="A 5-field cron expression ('0 9 * * 1-5') or a macro such as '@daily'.",
            show_default=False,
        ),
    ],
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
) -> None:
    """Start WORKFLOW at every tick of CRON. A running worker starts the runs."""
    value = parse_json(payload, "--payload")

    async def body(engine: Engine) -> Schedule:
        return await engine.schedules.create(
            workflow,
            cron,
            timezone=timezone,
            payload=value,
            missed=missed.value,
            id=schedule_id,
        )

    schedule = with_engine(app_, body, json_output=json_output)
    _report(schedule, f"created schedule {schedule.id}", json_output=json_output)


@app.command("pause")
def pause(app_: AppArg, schedule_id: ScheduleIdArg, json_output: JsonOpt = False) -> None:
    """Stop starting runs until the schedule is resumed."""

    async def body(engine: Engine) -> Schedule:
        return await engine.schedules.pause(schedule_id)

    schedule = with_engine(app_, body, json_output=json_output)
    _report(schedule, f"paused schedule {schedule.id}", json_output=json_output)


@app.command("resume")
def resume(app_: AppArg, schedule_id: ScheduleIdArg, json_output: JsonOpt = False) -> None:
    """Tick again from now on; ticks that fell while it was paused are not run."""

    async def body(engine: Engine) -> Schedule:
        return await engine.schedules.resume(schedule_id)

    schedule = with_engine(app_, body, json_output=json_output)
    _report(schedule, f"resumed schedule {schedule.id}", json_output=json_output)


@app.command("delete")
def delete(app_: AppArg, schedule_id: ScheduleIdArg, json_output: JsonOpt = False) -> None:
    """Delete a schedule; runs it already started go on."""

    async def body(engine: Engine) -> None:
        await engine.schedules.delete(schedule_id)

    with_engine(app_, body, json_output=json_output)
    from .output import console, print_json

    if json_output:
        print_json({"deleted": schedule_id})
    else:
        console().print(
            f"deleted schedule {schedule_id}", markup=False, highlight=False, soft_wrap=True
        )


def _local(value: datetime | None, timezone: str) -> str:
    """A time in the schedule's own timezone, as its cron expression reads it."""
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _report(schedule: Schedule, message: str, *, json_output: bool) -> None:
    from .output import console, print_json

    if json_output:
        print_json(schedule)
        return
    state = (
        "paused"
        if schedule.paused
        else f"next tick {_local(schedule.next_tick_at, schedule.timezone)}"
    )
    console().print(f"{message} ({state})", markup=False, highlight=False, soft_wrap=True)


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
