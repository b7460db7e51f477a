"""``agentflow events``: send events to the runs waiting for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .options import (
    ApiKeyOpt,
    JsonOpt,
    MaybeAppArg,
    ServerOpt,
    parse_json,
    target_with_arg,
    with_backend,
)

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.models import EventRecord

__all__ = ["app"]

app = typer.Typer(name="events", help="Send events to waiting runs.", no_args_is_help=True)


@app.command("send")
def send(
    app_: MaybeAppArg = None,
    name_: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The event's name.", show_default=False)
    ] = None,
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
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Send event NAME: every run waiting for it whose filter matches resumes."""
    where, name = target_with_arg(app_, server, api_key, name_, "NAME", json_output=json_output)

    async def body(engine: Backend) -> EventRecord:
        return await engine.send_event(name, parse_json(payload, "--payload"), id=event_id)

    event = with_backend(where, body, json_output=json_output)
    from .output import print_json, render_event

    if json_output:
        print_json(event)
    else:
        render_event(event)
