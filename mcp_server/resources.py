"""Runs as resources: ``agentflow://runs/{id}`` (the run and the approvals it waits for),
``.../steps`` (its journal) and ``.../logs`` (its newest log entries), all JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

from agentflow.errors import RunNotFoundError

from .queries import recent_logs
from .schemas import MAX_LOGS, LogList, RunDetail
from .tools import pending_approvals
from .uris import RUN, RUN_LOGS, RUN_STEPS, parse
from .watch import RunWatcher

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentflow.engine import Engine

__all__ = ["RunResources"]

_JSON = "application/json"
_RECENT = 50
_SINK = "agentflow.mcp.resource_sink"
_CLOSED = "agentflow.mcp.closed"


class _Steps(BaseModel):
    items: list[Any]


class RunResources:
    """The resource handlers of a server, and resource subscriptions of earlier protocols."""

    def __init__(self, engine: Engine, watcher: RunWatcher) -> None:
        self.engine = engine
        self.watcher = watcher
        self._legacy: dict[tuple[int, str], Callable[[], None]] = {}
        """Subscriptions by (id of the client connection, URI): released with the
        connection, so an id is never reused while its entries exist."""

    async def list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(
            resource_templates=[
                ResourceTemplate(
                    name="run",
                    uri_template=RUN,
                    description="A run: status, payload, output or error, pending approvals.",
                    mime_type=_JSON,
                ),
                ResourceTemplate(
                    name="run-steps",
                    uri_template=RUN_STEPS,
                    description="A run's journal: every step, wait and child run, in order.",
                    mime_type=_JSON,
                ),
                ResourceTemplate(
                    name="run-logs",
                    uri_template=RUN_LOGS,
                    description=(
                        f"A run's newest log entries (up to {MAX_LOGS}), oldest first; "
                        "truncated is true when older ones were left out (see get_run_logs)."
                    ),
                    mime_type=_JSON,
                ),
            ]
        )

    async def list(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        """The most recent runs (older ones stay readable through the template)."""
        runs = await self.engine.list_runs(limit=_RECENT)
        return ListResourcesResult(
            resources=[
                Resource(
                    name=run.id,
                    title=f"{run.workflow_id} run ({run.status.value})",
                    uri=RUN.format(run_id=run.id),
                    mime_type=_JSON,
                )
                for run in runs
            ]
        )

    async def read(
        self, ctx: ServerRequestContext[Any, Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        """Raises: MCPError (invalid params) for an unknown URI or run."""
        uri = str(params.uri)
        parsed = parse(uri)
        if parsed is None:
            raise MCPError(
                INVALID_PARAMS,
                f"unknown resource {uri!r}; runs are {RUN}, {RUN_STEPS} and {RUN_LOGS}",
                {"uri": uri},
            )
        run_id, part = parsed
        try:
            value = await self._read(run_id, part)
        except RunNotFoundError as exc:
            raise MCPError(INVALID_PARAMS, exc.message, {"uri": uri}) from None
        text = json.dumps(value.model_dump(mode="json"), ensure_ascii=False)
        return ReadResourceResult(
            contents=[TextResourceContents(uri=uri, text=text, mime_type=_JSON)]
        )

    async def _read(self, run_id: str, part: str) -> BaseModel:
        run = await self.engine.get_run(run_id)
        if part == "steps":
            return _Steps(items=list(await self.engine.get_steps(run.id)))
        if part == "logs":
            items, truncated = await recent_logs(self.engine, run.id, limit=MAX_LOGS)
            return LogList(items=items, truncated=truncated)
        return RunDetail(run=run, pending_approvals=await pending_approvals(self.engine, run.id))

    # -- resources/subscribe (protocol versions before 2026-07-28) ---------------------------

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        """Watch a run for the client's connection, until it unsubscribes or disconnects
        (clients rarely unsubscribe: the connection's end releases its subscriptions)."""
        uri = str(params.uri)
        connection = _connection(ctx)
        key = (id(connection), uri)
        if key in self._legacy:
            return EmptyResult()
        sink = connection.state.get(_SINK)
        if sink is None:
            sink = connection.state[_SINK] = self.watcher.session_sink(
                connection.send_resource_updated
            )
            connection.exit_stack.callback(self._release, connection)
        unsubscribe = await self.watcher.subscribe([uri], sink)
        if key in self._legacy or connection.state.get(_CLOSED):
            unsubscribe()  # subscribed twice at once, or the client left meanwhile
        else:
            self._legacy[key] = unsubscribe
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        unsubscribe = self._legacy.pop((id(_connection(ctx)), str(params.uri)), None)
        if unsubscribe is not None:
            unsubscribe()
        return EmptyResult()

    def _release(self, connection: Connection) -> None:
        """The connection closed: drop its subscriptions."""
        connection.state[_CLOSED] = True
        for key in [k for k in self._legacy if k[0] == id(connection)]:
            self._legacy.pop(key)()


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The client connection a request came on, whose ``exit_stack`` the SDK unwinds when
    the client goes away. (mcp 2.x's low-level request context reaches the connection only
    through its per-request session proxy.)"""
    return ctx.session._connection
