"""Build the MCP server of an Engine: tools, resources, subscriptions and tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
)

from agentflow.errors import AgentflowError

from .listen import ListenStreams
from .registry import ToolFailure, ToolSpec, by_name, error_result
from .resources import RunResources
from .tasks import Tasks, declared
from .tools import TOOL_NAMES, operation_tools
from .watch import RunWatcher
from .workflow_tools import WorkflowTools, select_workflows

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["build_server"]

_INSTRUCTIONS = """\
agentflow runs durable workflows. list_workflows shows what can run and the payload each \
expects; trigger_workflow (or a workflow's own tool) starts a run; get_run follows it. A run \
that waits for a human approval lists pending_approvals: answer with approve_run or \
reject_run. Runs are also resources: agentflow://runs/{run_id} (and /steps, /logs)."""


def build_server(
    engine: Engine,
    *,
    read_only: bool = False,
    workflow_tools: bool | Iterable[str] = True,
    wait_seconds: float = 3.0,
    watch_interval: float = 0.5,
    name: str = "agentflow",
) -> Server[Any]:
    """The MCP server of ``engine`` (a low-level :class:`mcp.server.lowlevel.server.Server`).

    Serve it over stdio (:func:`mcp_server.run_stdio`), over streamable HTTP
    (:class:`mcp_server.McpEndpoint`, mounted at ``/mcp`` by ``agentflow.api.create_app``), or
    connect to it in process with ``mcp.Client(server)``.

    Args:
        read_only: expose only the tools that read (get_run, list_runs, list_workflows,
            get_run_logs), the resources, and ``tasks/get``.
        workflow_tools: which workflows are also tools of their own, taking their payload
            as arguments: True for all (except those whose id is a built-in tool's name or
            not a valid tool name: those are left out with a logged warning), False for
            none, or workflow ids. A read-only server has none, but says so when one is
            called.
        wait_seconds: how long a workflow's tool waits for its run to finish before it
            answers with the run id and status instead.
        watch_interval: how often runs with subscribers are checked for changes (seconds).
        name: the server name reported to clients.

    Raises:
        ValueError: ``workflow_tools`` names an unknown workflow, or one whose id is a
            built-in tool's name or not a valid tool name.
    """
    selected = select_workflows(engine, workflow_tools, reserved=TOOL_NAMES, warn=not read_only)
    offered = [] if read_only else selected
    workflows = WorkflowTools(engine, offered, wait_seconds)
    built_in = operation_tools(engine, workflow_tools=offered)
    specs = [s for s in built_in if s.read_only or not read_only]
    tools = by_name([*specs, *workflows.specs])
    hidden = ({s.name for s in built_in} | set(selected)) - set(tools)
    bus = InMemorySubscriptionBus()
    watcher = RunWatcher(engine, bus, watch_interval)
    resources = RunResources(engine, watcher)
    tasks = Tasks(engine, workflows, read_only=read_only)

    described = [spec.describe() for spec in tools.values()]  # the catalog is fixed
    input_schemas = {tool.name: tool.input_schema for tool in described}

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=described)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult | dict[str, Any]:
        spec = _find(tools, hidden, params.name)
        arguments = params.arguments or {}
        if spec.workflow is not None and declared(ctx):
            try:
                return await tasks.create(await workflows.start(spec.workflow, arguments))
            except AgentflowError as exc:
                return error_result(ToolFailure.of(exc))
        return await spec.handler(arguments, ctx)

    @asynccontextmanager
    async def lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        await engine.start()
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            yield {}
            tg.cancel_scope.cancel()

    server: Server[Any] = Server(
        name,
        version=version("agentflow"),
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        # Without this the SDK runs tools/list on every tools/call to check Mcp-Param headers.
        get_tool_input_schema=input_schemas.get,
        on_list_tools=list_tools,
        on_call_tool=call_tool,  # type: ignore[arg-type]  # a dict is the tasks extension's result
        on_list_resources=resources.list,
        on_list_resource_templates=resources.list_templates,
        on_read_resource=resources.read,
        on_subscribe_resource=resources.subscribe,
        on_unsubscribe_resource=resources.unsubscribe,
        on_subscriptions_listen=ListenStreams(bus, watcher, tasks),
    )
    tasks.install(server)
    return server


def _find(tools: dict[str, ToolSpec], hidden: set[str], name: str) -> ToolSpec:
    spec = tools.get(name)
    if spec is not None:
        return spec
    if name in hidden:
        raise MCPError(
            INVALID_PARAMS,
            f"tool {name!r} changes state; this server is read-only",
            {"tool": name, "read_only": True},
        )
    raise MCPError(
        INVALID_PARAMS,
        f"unknown tool {name!r}; available tools: {', '.join(sorted(tools))}",
        {"tool": name},
    )
