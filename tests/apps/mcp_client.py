"""Test-side pieces of an MCP client that speaks the tasks extension (SEP-2663).

The SDK's client does not implement the extension: these declare it, claim the ``task``
result of ``tools/call``, and send the extension's requests through the session's generic
``send_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
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
    identifier = TASKS_EXTENSION

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=_resolve)]
