"""Tools: typed Python functions the model may call.

``@tool`` reads the function's signature and docstring once: parameters become a pydantic
model (the JSON schema the model sees, and the validator of the arguments it sends), the
docstring's summary the description and its ``Args:`` section the parameter descriptions.
A first parameter annotated ``RunContext`` is passed the run's context and left out of the
schema.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, overload

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .._serde import dumps, loads
from ..retry import RetryPolicy
from ..workflows import seconds, validation_errors
from .errors import ToolDefinitionError
from .models.base import ToolDefinition

__all__ = ["ApprovalPolicy", "Tool", "ToolArgumentsError", "tool"]

ApprovalPolicy = Callable[[dict[str, Any]], bool | Awaitable[bool]]
"""Decides from a call's (validated, JSON) arguments whether it needs a human approval; it
may be a coroutine function (it is awaited)."""

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Yields?|Raises|Examples?|Notes?):\s*$")
_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^:param\s+(?:\S+\s+)?(\w+):\s*(.*)$")


class ToolArgumentsError(ValueError):
    """The model's arguments for a tool did not validate; the message is for the model."""


@dataclass(eq=False)
class Tool:
    """A function the agent offers to the model. Create with :func:`tool`."""

    fn: Callable[..., Any]
    name: str
    description: str
    args_model: type[BaseModel]
    takes_ctx: bool = False
    requires_approval: bool | ApprovalPolicy = False
    retry: RetryPolicy | None = None
    approval_timeout: float | None = None
    _schema: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        self._schema = schema

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self._schema)

    def validate(self, arguments: str | Mapping[str, Any]) -> BaseModel:
        """The model's arguments (JSON text or data) as the validated arguments model.

        Raises:
            ToolArgumentsError: naming each invalid argument, phrased for the model.
        """
        try:
            if isinstance(arguments, str):
                return self.args_model.model_validate_json(arguments.strip() or "{}")
            return self.args_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{e['field'] or '(arguments)'}: {e['message']}" for e in validation_errors(exc)
            )
            raise ToolArgumentsError(
                f"invalid arguments for tool {self.name!r}: {problems}. "
                "Call it again with arguments that match its schema."
            ) from None

    def arguments(self, args: BaseModel) -> dict[str, Any]:
        """Validated ``args`` as canonical JSON data: the same in every process.

        ``model_dump(mode="json")`` lists a set's members in hash order, which changes with
        ``PYTHONHASHSEED``; here they are sorted (recursively), so approval data, its digest
        and what a policy sees do not depend on the process.
        """
        dumped = args.model_dump(mode="json")
        result: dict[str, Any] = _canonical(args, dumped)
        return result

    async def needs_approval(self, arguments: dict[str, Any]) -> bool:
        if callable(self.requires_approval):
            decision = self.requires_approval(arguments)
            if inspect.isawaitable(decision):
                decision = await decision
            return bool(decision)
        return self.requires_approval

    async def call(self, ctx: Any, args: BaseModel) -> Any:
        """Call the function with validated ``args`` (and ``ctx`` when it takes one)."""
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        pre = (ctx,) if self.takes_ctx else ()
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*pre, **kwargs)
        result = await anyio.to_thread.run_sync(lambda: self.fn(*pre, **kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool | ApprovalPolicy = False,
    approval_timeout: float | timedelta | None = None,
    retry: RetryPolicy | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool | ApprovalPolicy = False,
    approval_timeout: float | timedelta | None = None,
    retry: RetryPolicy | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function (sync or async) a tool.

    ``requires_approval`` is ``True`` (every call pauses for a human) or a policy function
    (sync or async) of the call's JSON arguments (``lambda args: args["amount"] > 100``); it
    must be pure, since a replay asks it again. ``retry`` is the tool call's step retry policy.

    Raises:
        ToolDefinitionError: the function has ``*args``/``**kwargs`` or positional-only
            parameters, a parameter name pydantic cannot use (``_private``, ``model_config``,
            ``model_dump``...), or an annotation that cannot be resolved.
    """

    def decorate(f: Callable[..., Any]) -> Tool:
        summary, params = _parse_docstring(inspect.getdoc(f) or "")
        args_model, takes_ctx = _arguments_model(f, name or f.__name__, params)
        return Tool(
            fn=f,
            name=name or f.__name__,
            description=description if description is not None else summary,
            args_model=args_model,
            takes_ctx=takes_ctx,
            requires_approval=requires_approval,
            retry=retry,
            approval_timeout=seconds(approval_timeout),
        )

    return decorate if fn is None else decorate(fn)


def as_tool(value: Tool | Callable[..., Any]) -> Tool:
    return value if isinstance(value, Tool) else tool(value)


def to_json_value(value: Any) -> Any:
    """A tool's result as plain JSON data, so a first run and its replay see the same thing."""
    return loads(dumps(value))


def _is_run_context(annotation: Any) -> bool:
    from ..context import RunContext

    return annotation is RunContext or (
        isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "RunContext"
    )


def _type_hints(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except NameError as first:
        # ``RunContext`` is often imported only under ``TYPE_CHECKING`` (with ``from
        # __future__ import annotations``): resolve it, and only it, ourselves.
        import agentflow

        from ..context import RunContext

        fallback = {"RunContext": RunContext, "agentflow": agentflow}
        try:
            return typing.get_type_hints(fn, localns=fallback, include_extras=True)
        except (NameError, TypeError) as exc:
            raise ToolDefinitionError(
                f"tool {name!r}: cannot resolve its annotations: {exc}"
            ) from first
    except TypeError as exc:
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve its annotations: {exc}") from exc


# BaseModel's own attributes under ``model_``: a field by one of these names would be
# dropped (``model_config``) or shadow a method the agent calls (``model_dump``).
_RESERVED = frozenset(n for n in dir(BaseModel) if n.startswith("model_"))


def _check_parameter_name(tool_name: str, param: str) -> None:
    if param.startswith("_"):
        why = "pydantic does not accept argument names that start with '_'"
    elif param in _RESERVED:
        why = f"{param!r} is a pydantic BaseModel attribute"
    else:
        return
    raise ToolDefinitionError(
        f"tool {tool_name!r}: parameter {param!r} cannot be a tool argument ({why}); rename it"
    )


def _arguments_model(
    fn: Callable[..., Any], name: str, docs: dict[str, str]
) -> tuple[type[BaseModel], bool]:
    hints = _type_hints(fn, name)
    params = list(inspect.signature(fn).parameters.values())
    takes_ctx = bool(params) and _is_run_context(hints.get(params[0].name, params[0].annotation))
    fields: dict[str, Any] = {}
    for p in params[1 if takes_ctx else 0 :]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ToolDefinitionError(
                f"tool {name!r}: parameter {p.name!r} must be a plain or keyword-only parameter"
            )
        _check_parameter_name(name, p.name)
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), Field(default, description=docs.get(p.name)))
    with warnings.catch_warnings():
        # ``json``, ``schema``, ``copy``... shadow deprecated BaseModel methods we never call.
        warnings.filterwarnings("ignore", message=".*shadows an attribute in parent")
        model = create_model(
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid", protected_namespaces=()),
            **fields,
        )
    missing = [f for f in fields if f not in model.model_fields]
    if missing:  # pragma: no cover - a pydantic version reserving more names
        raise ToolDefinitionError(
            f"tool {name!r}: parameter {missing[0]!r} cannot be a tool argument; rename it"
        )
    return model, takes_ctx


def _canonical(value: Any, dumped: Any) -> Any:
    """``dumped`` (the JSON dump of ``value``) with every set's members in a stable order.

    Walks ``value`` alongside its dump: where the shapes agree (plain models, dataclasses,
    dicts, sequences), sets are sorted; anything serialised differently (a custom serialiser)
    is kept as dumped.
    """
    if isinstance(value, set | frozenset):
        if not isinstance(dumped, list) or len(dumped) != len(value):
            return dumped
        # The dump lists the set in its iteration order: pair each member with its dump.
        members = [_canonical(v, d) for v, d in zip(value, dumped, strict=True)]
        return sorted(members, key=_sort_key)
    if isinstance(value, BaseModel):
        if not isinstance(dumped, dict):
            return dumped
        fields = type(value).model_fields
        return {
            k: _canonical(getattr(value, k), v) if k in fields else v for k, v in dumped.items()
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not isinstance(dumped, dict):
            return dumped
        names = {f.name for f in dataclasses.fields(value)}
        return {k: _canonical(getattr(value, k), v) if k in names else v for k, v in dumped.items()}
    if isinstance(value, dict):
        if not isinstance(dumped, dict) or len(dumped) != len(value):
            return dumped
        return {
            k: _canonical(v, d) for v, (k, d) in zip(value.values(), dumped.items(), strict=True)
        }
    if isinstance(value, list | tuple):
        if not isinstance(dumped, list) or len(dumped) != len(value):
            return dumped
        return [_canonical(v, d) for v, d in zip(value, dumped, strict=True)]
    return dumped


def _sort_key(member: Any) -> tuple[int, Any]:
    if isinstance(member, int | float) and not isinstance(member, bool):
        return (0, member)
    if isinstance(member, str):
        return (1, member)
    return (2, json.dumps(member, sort_keys=True))


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or Sphinx-style docstring."""
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for raw in doc.splitlines():
        line = raw.strip()
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1), None
            continue
        sphinx = _SPHINX.match(line)
        if sphinx:
            section = "sphinx"
            current = sphinx.group(1)
            params[current] = sphinx.group(2)
            continue
        if section is None:
            if line or summary:
                summary.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            arg = _ARG.match(line)
            # A parameter line sits at the section's indentation; deeper lines continue it.
            if arg and not raw.startswith(" " * 8) and (raw.startswith("    ") or raw[:1] != " "):
                current = arg.group(1).lstrip("*")
                params[current] = arg.group(2)
            elif line and current is not None:
                params[current] = f"{params[current]} {line}".strip()
        elif section == "sphinx" and line and current is not None:
            params[current] = f"{params[current]} {line}".strip()
    text = "\n".join(summary).strip()
    return text, params
