"""The tasks extension (SEP-2663, ``io.modelcontextprotocol/tasks``) on top of durable runs.

For a client that declares the extension on a request, a call of a workflow's tool answers
with a task instead of waiting: the task id *is* the run id, so tasks outlive the server
process. A run's status maps onto the task status; a run waiting for an approval is
``input_required``, with one form input request per pending approval, and the answer sent
with ``tasks/update`` approves or rejects it. ``tasks/cancel`` cancels the run.

``tasks/update`` checks every response before applying any: an ``accept`` approves (unless
its content says ``"approved": false``), a ``decline`` rejects, a ``cancel`` leaves the
approval pending; answering an approval already decided is acknowledged (the first decision
stands), and a malformed response is refused with invalid params naming the problem.

A workflow that fails, times out or expires is a tool result with ``isError`` set, so its
task is ``completed`` (``failed`` is for JSON-RPC errors only, per the extension).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from agentflow.errors import ApprovalError, ConflictError, RunNotFoundError
from agentflow.models import Run, WaitpointRecord
from agentflow.status import RunStatus, WaitpointStatus

from .queries import approvals_of
from .workflow_tools import WorkflowTools

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["TASKS_EXTENSION", "Tasks", "declared", "require_extension"]

logger = logging.getLogger("agentflow.mcp")

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

_APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean", "title": "Approve", "description": "false rejects"},
        "comment": {"type": "string", "title": "Comment"},
    },
    "required": ["approved"],
}


class TaskParams(RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _input_request(run: Run, wp: WaitpointRecord) -> dict[str, Any]:
    data = json.dumps(wp.data, ensure_ascii=False, default=str)
    request = ElicitRequest(
        params=ElicitRequestFormParams(
            message=(
                f"Run {run.id} of {run.workflow_id!r} asks for approval {wp.name!r} of: {data}"
                if wp.run_id == run.id
                else f"Run {run.id} of {run.workflow_id!r} waits for its child run {wp.run_id}, "
                f"which asks for approval {wp.name!r} of: {data}"
            ),
            requested_schema=_APPROVAL_SCHEMA,
        )
    )
    return request.model_dump(by_alias=True, mode="json", exclude_none=True)


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the extension (on a protocol that has it)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(
        capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions
    )


def require_extension(ctx: ServerRequestContext[Any, Any]) -> None:
    """Refuse a tasks request (or task subscription) from a client that did not declare the
    extension, with the extension's "missing required client capability" error.

    Raises:
        MCPError: (-32021) the request's client did not declare the extension.
    """
    if not declared(ctx):
        raise MCPError(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"Missing required client capability: the {TASKS_EXTENSION} extension",
            {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
        )


class Tasks:
    """The extension's methods, served on a :class:`mcp.server.lowlevel.server.Server`."""

    def __init__(
        self,
        engine: Engine,
        workflow_tools: WorkflowTools,
        *,
        read_only: bool = False,
        poll_interval_ms: int = 1000,
    ) -> None:
        self.engine = engine
        self.workflow_tools = workflow_tools
        self.read_only = read_only
        self.poll_interval_ms = poll_interval_ms

    def install(self, server: Server[Any]) -> None:
        """Advertise the extension (``server/discover``) and serve its methods.

        A read-only server serves only ``tasks/get``: answering and cancelling are writes.
        """
        server.extensions[TASKS_EXTENSION] = {}
        server.add_request_handler("tasks/get", TaskParams, self.get)
        if not self.read_only:
            server.add_request_handler("tasks/update", UpdateTaskParams, self.update)
            server.add_request_handler("tasks/cancel", TaskParams, self.cancel)

    async def create(self, run_id: str) -> dict[str, Any]:
        """The ``CreateTaskResult`` answering a tool call whose run was just created."""
        run = await self.engine.get_run(run_id)
        return {"resultType": "task", **self._task(run, [])}

    # -- methods -----------------------------------------------------------------------------

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        """``tasks/get``: the task with its input requests, result or error."""
        require_extension(ctx)
        return {"resultType": "complete", **await self.detail(await self._run(params.task_id))}

    async def detail(self, run: Run) -> dict[str, Any]:
        """The run as a detailed task (what ``tasks/get`` and ``notifications/tasks`` carry)."""
        approvals: list[WaitpointRecord] = []
        if run.status is RunStatus.WAITING:
            approvals = await approvals_of(self.engine, run.id)
        task = self._task(run, approvals)
        if task["status"] == "input_required":
            task["inputRequests"] = {wp.id: _input_request(run, wp) for wp in approvals}
        elif task["status"] == "completed":
            result = await self.workflow_tools.result(run)
            task["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return task

    async def update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> dict[str, Any]:
        """``tasks/update``: answers to approvals (see :func:`_decision`).

        Every response is checked before any is applied, so a malformed one changes
        nothing. An answer to an approval that was already decided (a retried update, or
        someone else answered first) is acknowledged and changes nothing: the first
        decision stands.
        """
        require_extension(ctx)
        run = await self._run(params.task_id)
        approvals = {wp.id: wp for wp in await approvals_of(self.engine, run.id, pending=False)}
        decisions: list[tuple[WaitpointRecord, _Decision]] = []
        for key, raw in params.input_responses.items():
            wp = approvals.get(key)
            if wp is None:
                outstanding = sorted(k for k, w in approvals.items() if _open(w))
                raise MCPError(
                    INVALID_PARAMS,
                    f"task {run.id} has no outstanding input request {key!r}",
                    {"taskId": run.id, "inputResponse": key, "outstanding": outstanding},
                )
            decision = _decision(key, raw)
            if decision is not None and _open(wp):
                decisions.append((wp, decision))
        for wp, decision in decisions:
            await self._decide(wp, decision)
        return {}

    async def cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> dict[str, Any]:
        """``tasks/cancel``: cancel the run (cooperatively, if a worker is executing it)."""
        require_extension(ctx)
        run = await self._run(params.task_id)
        try:
            await self.engine.cancel(run.id)
        except ConflictError:
            raise MCPError(
                INVALID_PARAMS, f"task {run.id} already ended ({run.status.value})"
            ) from None
        return {}

    # -- helpers -----------------------------------------------------------------------------

    async def _run(self, task_id: str) -> Run:
        try:
            return await self.engine.get_run(task_id)
        except RunNotFoundError:
            raise MCPError(INVALID_PARAMS, f"no task {task_id!r}", {"taskId": task_id}) from None

    async def _decide(self, wp: WaitpointRecord, decision: _Decision) -> None:
        try:
            if decision.approved:
                await self.engine.approve(token=wp.token, comment=decision.comment)
            else:
                await self.engine.reject(token=wp.token, comment=decision.comment)
        except ApprovalError as exc:
            # Answered meanwhile by someone else: the first decision stands (eventual ack).
            logger.info("input response for %s ignored: %s", wp.id, exc.message)

    def _task(self, run: Run, approvals: list[WaitpointRecord]) -> dict[str, Any]:
        status, message = _status(run, approvals)
        return {
            "taskId": run.id,
            "status": status,
            "statusMessage": message,
            "createdAt": _iso(run.created_at),
            "lastUpdatedAt": _iso(run.updated_at),
            "ttlMs": None,
            "pollIntervalMs": self.poll_interval_ms,
        }


@dataclass(frozen=True)
class _Decision:
    approved: bool
    comment: str | None


_FORM_FIELDS = frozenset(_APPROVAL_SCHEMA["properties"])


def _open(wp: WaitpointRecord) -> bool:
    return wp.status == WaitpointStatus.PENDING and wp.token is not None


def _decision(key: str, raw: Any) -> _Decision | None:
    """The decision an input response carries; None for ``cancel`` (leave it pending).

    ``accept`` approves, unless its content says ``approved: false``; an ``accept`` without
    content (or without ``approved``) approves too: accepting an approval request is
    approving it. ``decline`` rejects. Anything else about the content is refused rather
    than guessed at (a string "true", a misspelt field).

    Raises:
        MCPError: (invalid params) the response is malformed; the message says how.
    """

    def invalid(problem: str) -> MCPError:
        return MCPError(
            INVALID_PARAMS, f"input response {key!r}: {problem}", {"inputResponse": key}
        )

    try:
        answer = ElicitResult.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(response)'}: {e['msg']}" for e in exc.errors()
        )
        raise invalid(f"not an elicitation result ({problems})") from None
    if answer.action == "cancel":
        return None
    content = answer.content or {}
    unknown = sorted(set(content) - _FORM_FIELDS)
    if unknown:
        raise invalid(
            f"unexpected content field(s) {', '.join(map(repr, unknown))}; the form has "
            "'approved' (boolean) and 'comment' (string)"
        )
    approved = content.get("approved", answer.action == "accept")
    if not isinstance(approved, bool):
        raise invalid(
            f"content.approved must be a boolean (true approves, false rejects), not {approved!r}"
        )
    if answer.action == "decline" and approved:
        raise invalid("a decline rejects: content.approved cannot be true")
    comment = content.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise invalid(f"content.comment must be a string, not {comment!r}")
    return _Decision(approved=approved, comment=comment)


def _status(run: Run, approvals: list[WaitpointRecord]) -> tuple[str, str]:
    if run.status is RunStatus.CANCELLED:
        return "cancelled", f"run {run.id} was cancelled"
    if run.status.is_terminal:
        return "completed", f"run {run.id} ended {run.status.value}"
    if approvals:
        names = ", ".join(sorted({wp.name for wp in approvals}))
        return "input_required", f"run {run.id} waits for approval: {names}"
    return "working", f"run {run.id} is {run.status.value}"
