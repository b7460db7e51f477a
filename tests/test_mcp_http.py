"""The MCP server over streamable HTTP, at ``/mcp`` in the HTTP app served by uvicorn on a real
socket, through the SDK's own client: the approval round trip, the tasks extension, per-key
read-only access, and refusal without an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agentflow import Engine
from agentflow.api import create_app
from agentflow.errors import StorageUnavailableError
from agentflow.models import Run
from mcp_server import McpEndpoint

from ._support import eventually, running_worker
from ._support import serving as serve_app
from .apps.mcp_app import WORKFLOWS
from .apps.mcp_client import CreateTaskResult, TasksClient, listening, next_push, task_request

pytestmark = pytest.mark.anyio

READ_TOOLS = {"list_workflows", "get_run", "list_runs", "get_run_logs"}


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(WORKFLOWS)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` on a free loopback port; yields the MCP endpoint's URL."""
    async with serve_app(app) as url:
        yield f"{url}/mcp"


def as_principal(app: ASGIApp, scope_name: str) -> ASGIApp:
    """Stand-in for the auth middleware: every request comes from a key of this scope."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = SimpleNamespace(scope=scope_name)
        await app(scope, receive, send)

    return wrapped


def with_key(url: str, secret: str) -> Any:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"})
    return streamable_http_client(url, http_client=http)


async def test_approval_round_trip_and_tasks_over_http(engine: Engine) -> None:
    app = create_app(engine, auth=False)
    async with serving(app) as url, running_worker(engine):
        async with Client(url) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"trigger_workflow", "approve_run", "refund_order"} <= set(tools)
            assert tools["refund_order"].input_schema["required"] == ["order_id", "amount_cents"]

            result = await client.call_tool(
                "trigger_workflow",
                {"workflow": "refund_order", "payload": {"order_id": "h1", "amount_cents": 5}},
            )
            assert isinstance(result.structured_content, dict)
            run_id = result.structured_content["run"]["id"]

            async def waiting() -> bool:
                got = await client.call_tool("get_run", {"run_id": run_id})
                return bool(got.structured_content and got.structured_content["pending_approvals"])

            await eventually(waiting, what="the run to wait for approval")
            decision = await client.call_tool(
                "approve_run", {"run_id": run_id, "name": "refund", "approver": "http"}
            )
            assert not decision.is_error

            async def completed() -> dict[str, Any] | None:
                got = await client.call_tool("get_run", {"run_id": run_id})
                run: dict[str, Any] = got.structured_content["run"]
                return run if run["status"] == "completed" else None

            run = await eventually(completed, what="the run to complete")
            assert run["output"] == {"status": "refunded", "order_id": "h1", "by": "http"}

            invalid = await client.call_tool("refund_order", {"order_id": "h2"})
            assert invalid.is_error
            assert "amount_cents" in invalid.content[0].text  # type: ignore[union-attr]

        extension = TasksClient()
        async with Client(url, extensions=[extension]) as client:
            created = await client.session.call_tool(
                "refund_order", {"order_id": "h3", "amount_cents": 7}, allow_claimed=True
            )
            assert isinstance(created, CreateTaskResult)

            async def input_required() -> dict[str, Any] | None:
                task = await task_request(client.session, "tasks/get", taskId=created.task_id)
                return task if task["status"] == "input_required" else None

            task = await eventually(input_required, what="the task to need input")
            # Task status pushes ride a subscriptions/listen stream (an SSE response here).
            async with listening(client.session, taskIds=[created.task_id]):
                pushed = await next_push(extension.pushed, created.task_id, "input_required")
                assert pushed["inputRequests"] == task["inputRequests"]
                answer = {
                    key: {"action": "accept", "content": {"approved": True}}
                    for key in task["inputRequests"]
                }
                await task_request(
                    client.session, "tasks/update", taskId=created.task_id, inputResponses=answer
                )
                task = await next_push(extension.pushed, created.task_id, "completed")
            assert task["result"]["structuredContent"]["output"]["order_id"] == "h3"


async def test_a_read_only_principal_sees_only_read_tools(engine: Engine) -> None:
    run_id = (await engine.trigger("refund_order", {"order_id": "r", "amount_cents": 1})).id
    app = as_principal(create_app(engine, auth=False), "read")
    async with serving(app) as url, Client(url) as client:
        assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
        with pytest.raises(MCPError, match="read-only"):
            await client.call_tool("cancel_run", {"run_id": run_id})
        got = await client.call_tool("get_run", {"run_id": run_id})
        assert got.structured_content["run"]["status"] == "queued"


async def test_mcp_needs_an_api_key_and_honours_its_scope(engine: Engine) -> None:
    read = await engine.api_keys.create("reader", scope="read")
    full = await engine.api_keys.create("writer", scope="full")
    async with serving(create_app(engine)) as url:
        async with httpx.AsyncClient() as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
            refused = await http.post(url, json=body)
            assert refused.status_code == 401
            wrong = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        async with Client(with_key(url, read.secret)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
        async with Client(with_key(url, full.secret)) as client:
            assert "trigger_workflow" in {t.name for t in (await client.list_tools()).tools}


async def test_a_database_error_while_watching_does_not_take_mcp_down(engine: Engine) -> None:
    run_id = (await engine.trigger("refund_order", {"order_id": "w", "amount_cents": 1})).id
    uri = f"agentflow://runs/{run_id}"
    endpoint = McpEndpoint(engine, watch_interval=0.02)
    app = Starlette(
        routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])],
        lifespan=lambda app: endpoint.lifespan(),
    )
    real = engine.get_run
    failed = anyio.Event()

    async def get_run(wanted: str) -> Run:
        if not failed.is_set():
            failed.set()  # one transient error, while the watcher polls
            raise StorageUnavailableError("postgresql://", OSError("the database restarts"))
        return await real(wanted)

    async with serving(app) as url:
        async with Client(url) as client, client.listen(resource_subscriptions=[uri]) as events:
            engine.get_run = get_run  # type: ignore[method-assign]
            try:
                with anyio.fail_after(10):
                    await failed.wait()
            finally:
                del engine.get_run
            await engine.cancel(run_id)
            with anyio.fail_after(10):
                async for event in events:
                    assert isinstance(event, ResourceUpdated)
                    assert event.uri == uri
                    break
        async with Client(url) as client:
            got = await client.call_tool("get_run", {"run_id": run_id})
            assert got.structured_content["run"]["status"] == "cancelled"
