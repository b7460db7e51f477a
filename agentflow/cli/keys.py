"""``agentflow keys``: API keys for the HTTP API and the MCP endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from .options import AppArg, JsonOpt, with_engine

if TYPE_CHECKING:
    from agentflow.engine import Engine
    from agentflow.keys import ApiKey, CreatedApiKey

__all__ = ["app"]

app = typer.Typer(
    name="keys", help="Create, list and revoke API keys (stored hashed).", no_args_is_help=True
)


@app.command("create")
def create(
    app_: AppArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who or what uses the key.")],
    scope: Annotated[
        str, typer.Option("--scope", help="'full' (read and act) or 'read' (read only).")
    ] = "full",
    json_output: JsonOpt = False,
) -> None:
    """Create a key and print its secret: it is shown this once and never stored."""
    if scope not in ("read", "full"):
        raise typer.BadParameter(f"{scope!r}; use 'read' or 'full'", param_hint="--scope")
    chosen: Literal["read", "full"] = "read" if scope == "read" else "full"

    async def body(engine: Engine) -> CreatedApiKey:
        return await engine.api_keys.create(name, scope=chosen)

    created = with_engine(app_, body, json_output=json_output)
    from .output import console, err_console, print_json

    if json_output:
        print_json(created)
        return
    console().print(created.secret, markup=False, highlight=False)
    err_console().print(
        f"created {created.key.scope} key {created.key.id} ({created.key.name}); "
        "copy the secret now: it cannot be shown again",
        markup=False,
        highlight=False,
    )


@app.command("list")
def list_keys(
    app_: AppArg,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """List keys (never their secrets)."""

    async def body(engine: Engine) -> list[ApiKey]:
        return await engine.api_keys.list(include_revoked=all_)

    keys = with_engine(app_, body, json_output=json_output)
    from rich.table import Table

    from .output import console, print_json

    if json_output:
        print_json(keys)
        return
    table = Table("ID", "NAME", "SCOPE", "PREFIX", "CREATED", "LAST USED", "REVOKED")
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.scope,
            key.prefix + "…",
            f"{key.created_at:%Y-%m-%d %H:%M}",
            "-" if key.last_used_at is None else f"{key.last_used_at:%Y-%m-%d %H:%M}",
            "-" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M}",
        )
    console().print(table)


@app.command("revoke")
def revoke(
    app_: AppArg,
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (key_...).")],
    json_output: JsonOpt = False,
) -> None:
    """Revoke a key: requests with it are refused at once, by every server."""

    async def body(engine: Engine) -> ApiKey:
        return await engine.api_keys.revoke(key_id)

    key = with_engine(app_, body, json_output=json_output)
    from .output import console, print_json

    if json_output:
        print_json(key)
    else:
        console().print(f"revoked {key.id} ({key.name})", markup=False, highlight=False)
