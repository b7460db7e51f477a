"""``agentflow events``: send events to the runs waiting for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .options import AppArg, JsonOpt, parse_json, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine
    from agentflow.models import EventRecord

__all__ = ["app"]

app = typer.Typer(name="events", help="Send events to waiting runs.", no_args_is_help=True)


@app.command("send")
def send(
    app_: AppArg,
    name: Annotated[str, typer.Argument(help="The event's name.", show_default=False)],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON",
            help="The event's payload as JSON ('@file.json' reads a file, '-' reads stdin).",
        ),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="The event's id; sending the same id again changes nothing."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Send event NAME: every run waiting for it whose filter matches resumes."""

    async def body(engine: Engine) -> EventRecord:
        return await engine.send_event(name, parse_json(payload, "--payload"), id=event_id)

    event = with_engine(app_, body, json_output=json_output)
    from .output import print_json, render_event

    if json_output:
        print_json(event)
    else:
        render_event(event)
