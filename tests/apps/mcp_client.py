"""Test-side pieces of an MCP client that speaks the tasks extension (SEP-2663).

The SDK's client does not implement the extension: these declare it, claim the ``task``
result of ``tools/call``, and send the extension's requests through the session's generic
``send_request``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp.client.session import ClientSession
from mcp_types import CallToolResult, Request, Result
from pydantic import BaseModel, ConfigDict

from mcp_server import TASKS_EXTENSION


class CreateTaskResult(Result):
    """The task a server answers a ``tools/call`` with (``resultType: "task"``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    result_type: Literal["task"]
    task_id: str
    status: str


class TaskRequest(Request[dict[str, Any], str]):
    """``tasks/get``, ``tasks/update``, ``tasks/cancel``: the task id is also the Mcp-Name."""

    name_param = "taskId"


class AnyResult(BaseModel):
    model_config = ConfigDict(extra="allow")


async def task_request(session: ClientSession, method: str, **params: Any) -> dict[str, Any]:
    result = await session.send_request(TaskRequest(method=method, params=params), AnyResult)
    return result.model_dump()


async def _resolve(task: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
    """Poll the task until it ends (for callers of the plain ``Client.call_tool``)."""
    while True:
        state = await task_request(ctx.session, "tasks/get", taskId=task.task_id)
        if state["status"] == "completed":
            return CallToolResult.model_validate(state["result"])
        if state["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"task {task.task_id} ended {state['status']}")
        await anyio.sleep(state.get("pollIntervalMs", 1000) / 1000)


class TasksClient(ClientExtension):
    """Declares the extension, claims task results, and collects ``notifications/tasks``
    (read them from :attr:`pushed`)."""

    identifier = TASKS_EXTENSION

    def __init__(self) -> None:
        self._push, self.pushed = anyio.create_memory_object_stream[dict[str, Any]](100)

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=_resolve)]

    def notifications(self) -> Sequence[NotificationBinding[Any]]:
        async def on_task(params: AnyResult) -> None:
            await self._push.send(params.model_dump())

        return [
            NotificationBinding(
                method="notifications/tasks", params_type=AnyResult, handler=on_task
            )
        ]


class ListenRequest(Request[dict[str, Any], Literal["subscriptions/listen"]]):
    method: Literal["subscriptions/listen"] = "subscriptions/listen"


@asynccontextmanager
async def listening(session: ClientSession, **notifications: Any) -> AsyncIterator[None]:
    """Hold a raw ``subscriptions/listen`` stream open (the SDK's ``Client.listen`` knows no
    extension keys such as ``taskIds``); what it carries arrives through the extensions'
    notification bindings. Errors of the request are raised on exit."""
    async with anyio.create_task_group() as tg:

        async def hold() -> None:
            request = ListenRequest(params={"notifications": notifications})
            await session.send_request(request, AnyResult)

        tg.start_soon(hold)
        yield
        tg.cancel_scope.cancel()


async def next_push(
    pushed: MemoryObjectReceiveStream[dict[str, Any]], task_id: str, status: str
) -> dict[str, Any]:
    """The next ``notifications/tasks`` for ``task_id`` with ``status`` (others are skipped)."""
    with anyio.fail_after(10):
        async for task in pushed:
            if task["taskId"] == task_id and task["status"] == status:
                return task
    raise AssertionError("the client closed")
