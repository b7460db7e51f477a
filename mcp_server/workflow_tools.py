"""Each workflow as its own tool: its payload schema is the tool's input schema.

An agent calls ``refund_order(order_id=...)`` instead of ``trigger_workflow``. A call starts a
run and waits a short, bounded time: a run that finishes in time answers with its output; one
that pauses (an approval, an event, a timer) or takes longer answers with its id and status.
Clients that declared the tasks extension get a task instead (see :mod:`mcp_server.tasks`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from mcp.server.context import ServerRequestContext
from mcp_types import CallToolResult, ToolAnnotations

from agentflow.errors import AgentflowError
from agentflow.models import Run
from agentflow.status import RunStatus
from agentflow.workflows import Workflow

from .registry import ToolFailure, ToolSpec, error_result, json_result, output_schema
from .schemas import WorkflowRunResult
from .tools import pending_approvals, settle

if TYPE_CHECKING:
    from agentflow.engine import Engine, RunHandle

__all__ = ["TOOL_NAME", "WorkflowTools", "select_workflows"]

logger = logging.getLogger("agentflow.mcp")

# Workflows run arbitrary code (refunds, e-mails): assume the worst, as MCP's defaults do.
_ANNOTATIONS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
_WRAPPED = "payload"


TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What every client accepts as a tool name (some refuse dots, or names over 64 characters)."""


def _unfit(workflow_id: str, reserved: Collection[str]) -> str | None:
    """Why the workflow cannot have a tool named after it, if it cannot."""
    if workflow_id in reserved:
        return f"its id {workflow_id!r} is the name of a built-in tool"
    if TOOL_NAME.fullmatch(workflow_id) is None:
        return (
            f"its id {workflow_id!r} is not a valid tool name (1 to 64 letters, digits, '_' or '-')"
        )
    return None


def select_workflows(
    engine: Engine,
    selection: bool | Iterable[str],
    *,
    reserved: Collection[str] = (),
    warn: bool = True,
) -> list[str]:
    """The workflow ids that get their own tool: all (True), none (False) or the named ones.

    With True, a workflow whose id is a ``reserved`` (built-in) tool name or not a valid tool
    name is left out, with a logged warning (if ``warn``): it stays available through
    trigger_workflow, and one odd workflow id does not stop the server (nor the HTTP API
    that mounts it) from starting.

    Raises:
        ValueError: a named workflow is not registered on the engine, or cannot be a tool.
    """
    if selection is True:
        selected = []
        for workflow_id in sorted(engine.workflows):
            reason = _unfit(workflow_id, reserved)
            if reason is None:
                selected.append(workflow_id)
            elif warn:
                logger.warning(
                    "workflow %r gets no MCP tool of its own: %s; call it with trigger_workflow",
                    workflow_id,
                    reason,
                )
        return selected
    if selection is False:
        return []
    names = list(dict.fromkeys(selection))
    unknown = [n for n in names if n not in engine.workflows]
    if unknown:
        available = ", ".join(sorted(engine.workflows)) or "none registered"
        raise ValueError(
            f"workflow_tools names unknown workflow(s) {', '.join(unknown)}; "
            f"available workflows: {available}"
        )
    unfit = [reason for n in names if (reason := _unfit(n, reserved)) is not None]
    if unfit:
        raise ValueError(
            f"workflow_tools names workflow(s) that cannot be tools: {'; '.join(unfit)}; "
            "leave them out (they stay available through trigger_workflow)"
        )
    return names


def _input_schema(wf: Workflow[Any, Any]) -> tuple[dict[str, Any], bool]:
    """The tool's input schema, and whether the payload is wrapped in a ``payload`` argument.

    MCP tool arguments are a JSON object: a payload model maps onto them as is; any other
    payload type (a list, a number) becomes the single argument ``payload``.
    """
    schema = dict(wf.payload_schema())
    if schema.get("type") == "object":
        return schema, False
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {_WRAPPED: schema},
        "required": [_WRAPPED],
        "additionalProperties": False,
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped, True


def _message(run: Run, approvals: int) -> str:
    if run.status is RunStatus.COMPLETED:
        return f"run {run.id} completed"
    if run.status.is_terminal:
        return f"run {run.id} ended {run.status.value}"
    if approvals:
        return (
            f"run {run.id} waits for approval; answer with approve_run or reject_run, "
            "then follow it with get_run"
        )
    return f"run {run.id} is {run.status.value}; follow it with get_run"


class WorkflowTools:
    """The tools of the selected workflows, and the result of a run as a tool result."""

    def __init__(self, engine: Engine, workflows: Iterable[str], wait_seconds: float) -> None:
        self.engine = engine
        self.wait_seconds = wait_seconds
        self._wrapped: dict[str, bool] = {}
        self._output_schema = output_schema(WorkflowRunResult)  # the same for every workflow
        self.specs = [self._spec(engine.get_workflow(name)) for name in workflows]

    async def start(self, workflow: str, arguments: dict[str, Any]) -> str:
        """Start a run for a call of the workflow's tool; returns its id.

        Raises:
            PayloadValidationError: the arguments do not fit the payload model.
        """
        payload = arguments.get(_WRAPPED) if self._wrapped[workflow] else arguments
        handle: RunHandle[Any] = await self.engine.trigger(workflow, payload)
        return handle.id

    async def result(self, run: Run) -> CallToolResult:
        """The tool result for the run as it is now (an error result if it did not complete)."""
        waiting = run.status is RunStatus.WAITING
        approvals = await pending_approvals(self.engine, run.id) if waiting else []
        value = WorkflowRunResult(
            run_id=run.id,
            workflow=run.workflow_id,
            status=run.status,
            finished=run.status.is_terminal,
            output=run.output,
            error=run.error,
            pending_approvals=approvals,
            message=_message(run, len(approvals)),
        )
        failed = run.status.is_terminal and run.status is not RunStatus.COMPLETED
        return json_result(value, is_error=failed)

    def _spec(self, wf: Workflow[Any, Any]) -> ToolSpec:
        schema, wrapped = _input_schema(wf)
        self._wrapped[wf.id] = wrapped

        async def handler(
            arguments: dict[str, Any], ctx: ServerRequestContext[Any, Any]
        ) -> CallToolResult:
            try:
                run_id = await self.start(wf.id, arguments)
                return await self.result(await settle(self.engine, run_id, self.wait_seconds))
            except AgentflowError as exc:
                return error_result(ToolFailure.of(exc))

        description = wf.description.strip() or f"Run the workflow {wf.id}."
        return ToolSpec(
            name=wf.id,
            description=(
                f"{description}\n\nStarts a durable run of the workflow {wf.id!r}. Answers with "
                f"its output if it finishes within {self.wait_seconds:g}s; otherwise (it waits "
                "for an approval, or takes longer) with its run_id and status: follow it with "
                "get_run."
            ),
            input_schema=schema,
            output_schema=self._output_schema,
            annotations=_ANNOTATIONS,
            handler=handler,
            workflow=wf.id,
        )
