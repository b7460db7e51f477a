"""``agentflow webhooks``: sources whose signed deliveries become events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .options import AppArg, JsonOpt, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine
    from agentflow.webhooks import WebhookSource

__all__ = ["app"]

app = typer.Typer(
    name="webhooks",
    help="Webhook sources: POST /api/v1/webhooks/SOURCE, signed with the source's secret.",
    no_args_is_help=True,
)
SourceArg = Annotated[
    str, typer.Argument(metavar="SOURCE", help="The source's name (e.g. 'stripe').")
]


@app.command("create")
def create(
    app_: AppArg,
    source: SourceArg,
    event: Annotated[
        str | None,
        typer.Option("--event", help="Event name deliveries become (default webhook.SOURCE)."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="Use this shared secret instead of a generated one."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Create (or re-key) a source and print its signing secret."""

    async def body(engine: Engine) -> tuple[WebhookSource, str]:
        return await engine.webhooks.create(source, secret=secret, event=event)

    created, shared = with_engine(app_, body, json_output=json_output)
    from .output import console, err_console, print_json

    if json_output:
        print_json({"source": created, "secret": shared})
        return
    console().print(shared, markup=False, highlight=False)
    err_console().print(
        f"webhook source {created.name}: POST /api/v1/webhooks/{created.name} "
        f"becomes event {created.event!r}; sign with the secret above",
        markup=False,
        highlight=False,
    )


@app.command("list")
def list_sources(app_: AppArg, json_output: JsonOpt = False) -> None:
    """List webhook sources (not their secrets)."""

    async def body(engine: Engine) -> list[WebhookSource]:
        return await engine.webhooks.list()

    sources = with_engine(app_, body, json_output=json_output)
    from rich.table import Table

    from .output import console, print_json

    if json_output:
        print_json(sources)
        return
    table = Table("SOURCE", "EVENT", "CREATED")
    for s in sources:
        table.add_row(s.name, s.event, f"{s.created_at:%Y-%m-%d %H:%M}")
    console().print(table)


@app.command("delete")
def delete(app_: AppArg, source: SourceArg, json_output: JsonOpt = False) -> None:
    """Delete a source: its deliveries are refused from now on."""

    async def body(engine: Engine) -> Any:
        await engine.webhooks.delete(source)

    with_engine(app_, body, json_output=json_output)
    from .output import console, print_json

    if json_output:
        print_json({"deleted": source})
    else:
        console().print(f"deleted webhook source {source}", markup=False, highlight=False)
