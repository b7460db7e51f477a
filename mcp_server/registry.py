"""Tools as data: a name, JSON schemas, annotations and an async handler.

Every tool answers with structured content (checked against its output schema by clients)
plus the same JSON as text, for clients that only show text. Failures a model can act on
(an unknown workflow, an invalid payload, an approval already answered) come back as tool
results with ``isError`` set, whose JSON names what was wrong; anything else is a bug and is
left to the SDK, which answers with a JSON-RPC internal error and logs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.context import ServerRequestContext
from mcp_types import CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, ValidationError

from agentflow.errors import AgentflowError, PayloadValidationError, WorkflowNotFoundError
from agentflow.workflows import validation_errors

__all__ = [
    "READ",
    "Handler",
    "ToolFailure",
    "ToolSpec",
    "error_result",
    "json_result",
    "typed_tool",
]

In = TypeVar("In", bound=BaseModel)

Handler = Callable[[dict[str, Any], ServerRequestContext[Any, Any]], Awaitable[CallToolResult]]
"""Answers one call: the raw arguments and the request context."""

READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class ToolFailure(Exception):
    """A failure reported to the model as a tool error, with a stable ``code``."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def of(cls, exc: AgentflowError) -> ToolFailure:
        # The same details as the HTTP API's errors (agentflow.api.errors), which cannot be
        # imported here: agentflow.api imports this package.
        details: dict[str, Any] = {}
        if exc.run_id is not None:
            details["run_id"] = exc.run_id
        if isinstance(exc, WorkflowNotFoundError):
            details.update(workflow=exc.workflow_id, available=exc.available)
        if isinstance(exc, PayloadValidationError):
            details.update(workflow=exc.workflow_id, errors=exc.errors)
        return cls(exc.code, exc.message, details)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what ``tools/list`` shows and the handler ``tools/call`` runs."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: ToolAnnotations
    handler: Handler
    workflow: str | None = None
    """Set on a workflow's own tool: the tool starts a run of this workflow."""

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)

    def describe(self) -> Tool:
        return Tool(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            annotations=self.annotations,
        )


def _result(data: dict[str, Any], is_error: bool) -> CallToolResult:
    """Structured content plus the same JSON as text."""
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))],
        structured_content=data,
        is_error=is_error,
    )


def json_result(value: BaseModel, *, is_error: bool = False) -> CallToolResult:
    return _result(value.model_dump(mode="json"), is_error)


def error_result(failure: ToolFailure) -> CallToolResult:
    body = {"error": {"code": failure.code, "message": failure.message, **failure.details}}
    return _result(body, True)


def invalid_arguments(tool: str, exc: ValidationError) -> ToolFailure:
    errors = validation_errors(exc)
    parts = "; ".join(f"{e['field'] or '(arguments)'}: {e['message']}" for e in errors)
    return ToolFailure(
        "invalid_arguments", f"invalid arguments for {tool}: {parts}", {"errors": errors}
    )


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")


def typed_tool(
    name: str,
    description: str,
    input_model: type[In],
    output_model: type[BaseModel],
    annotations: ToolAnnotations,
    fn: Callable[[In], Awaitable[BaseModel]],
) -> ToolSpec:
    """A tool whose arguments are validated by ``input_model`` and whose answer is a model."""

    async def handler(
        arguments: dict[str, Any], ctx: ServerRequestContext[Any, Any]
    ) -> CallToolResult:
        try:
            args = input_model.model_validate(arguments)
        except ValidationError as exc:
            return error_result(invalid_arguments(name, exc))
        try:
            return json_result(await fn(args))
        except AgentflowError as exc:
            return error_result(ToolFailure.of(exc))
        except ToolFailure as failure:
            return error_result(failure)

    return ToolSpec(
        name=name,
        description=description,
        input_schema=input_model.model_json_schema(),
        output_schema=output_schema(output_model),
        annotations=annotations,
        handler=handler,
    )


def by_name(specs: Iterable[ToolSpec]) -> dict[str, ToolSpec]:
    """Index tools by name, refusing duplicates (a workflow named like a built-in tool)."""
    index: dict[str, ToolSpec] = {}
    for spec in specs:
        if spec.name in index:
            raise ValueError(
                f"two tools are named {spec.name!r}: a workflow id clashes with a built-in tool; "
                "leave that workflow out of workflow_tools"
            )
        index[spec.name] = spec
    return index
