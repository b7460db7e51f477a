"""``agentflow approve`` / ``agentflow reject``: resolve a run's pending approval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .errors import UsageError
from .options import (
    ApiKeyOpt,
    JsonOpt,
    MaybeAppArg,
    ServerOpt,
    Target,
    parse_json,
    target,
    with_backend,
)

if TYPE_CHECKING:
    from agentflow.client import Backend
    from agentflow.models import ApprovalDecision

__all__ = ["approve", "reject"]

RunIdOpt = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN_ID", help="The waiting run (omit with --token).", show_default=False
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Argument(
        metavar="NAME", help="The approval's name (omit with --token).", show_default=False
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="The approval's single-use token, instead of RUN_ID NAME."),
]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-m", help="Why.")]
ApproverOpt = Annotated[
    str | None, typer.Option("--approver", help="Who decides (recorded with the decision).")
]


def approve(
    app: MaybeAppArg = None,
    run_id: RunIdOpt = None,
    name: NameOpt = None,
    token: TokenOpt = None,
    comment: CommentOpt = None,
    approver: ApproverOpt = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="JSON",
            help="Approve this data instead of what the run asked for (an edit).",
        ),
    ] = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Approve a pending approval: by RUN_ID and NAME, or by --token."""
    where, (run_id, name) = target(app, server, api_key, run_id, name, json_output=json_output)
    _resolve(True, where, run_id, name, token, comment, approver, data, json_output)


def reject(
    app: MaybeAppArg = None,
    run_id: RunIdOpt = None,
    name: NameOpt = None,
    token: TokenOpt = None,
    comment: CommentOpt = None,
    approver: ApproverOpt = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Reject a pending approval: by RUN_ID and NAME, or by --token."""
    where, (run_id, name) = target(app, server, api_key, run_id, name, json_output=json_output)
    _resolve(False, where, run_id, name, token, comment, approver, None, json_output)


def _resolve(
    approved: bool,
    where: Target,
    run_id: str | None,
    name: str | None,
    token: str | None,
    comment: str | None,
    approver: str | None,
    data: str | None,
    json_output: bool,
) -> None:
    async def body(engine: Backend) -> ApprovalDecision:
        if token is not None and (run_id is not None or name is not None):
            raise UsageError("give either RUN_ID NAME or --token, not both")
        if token is None and (run_id is None or name is None):
            raise UsageError("name the approval: RUN_ID NAME, or --token TOKEN")
        if approved:
            extra = {} if data is None else {"data": parse_json(data, "--data")}
            return await engine.approve(
                run_id, name, token=token, approver=approver, comment=comment, **extra
            )
        return await engine.reject(run_id, name, token=token, approver=approver, comment=comment)

    decision = with_backend(where, body, json_output=json_output)
    from .output import print_json, render_decision

    if json_output:
        print_json(decision)
    else:
        render_decision(decision, name=name, run_id=run_id)
