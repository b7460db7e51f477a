"""Workflow definitions: a typed async function registered under a stable id."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._serde import adapter, dumps
from .errors import PayloadValidationError
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .context import RunContext

__all__ = ["Workflow", "workflow"]

P = TypeVar("P")
O = TypeVar("O")
WorkflowFn = Callable[["RunContext", P], Awaitable[O]]


def seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, eq=False)
class Workflow(Generic[P, O]):
    """A registered workflow. Create with the :func:`workflow` decorator."""

    id: str
    fn: Callable[..., Awaitable[O]]
    version: str = "1"
    retry: RetryPolicy = field(default_factory=RetryPolicy.none)
    timeout: float | None = None
    description: str = ""
    queue: str = "default"
    priority: int = 0
    payload_type: Any = None
    output_type: Any = None
    takes_payload: bool = True
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    ttl: float | None = None
    schedule: str | None = None
    timezone: str = "UTC"
    missed: str = "latest"
    on_event: tuple[str, ...] = ()

    async def __call__(self, ctx: RunContext, payload: P) -> O:
        if self.takes_payload:
            return await self.fn(ctx, payload)
        return await self.fn(ctx)

    @property
    def _payload_adapter(self) -> TypeAdapter[Any]:
        return adapter(self.payload_type if self.payload_type is not None else Any)

    def validate_payload(self, payload: Any) -> P:
        """Validate ``payload`` (a model instance or plain Python data) against the model.

        A string is a string, never parsed as JSON: use :meth:`load_payload` for JSON text.

        Raises:
            PayloadValidationError: with one entry per invalid field.
        """
        if not self.takes_payload:
            if payload not in (None, {}):
                raise PayloadValidationError(
                    self.id, [{"field": "", "message": "this workflow takes no payload"}]
                )
            return None  # type: ignore[return-value]
        model = self.payload_type
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(payload, model):
            return payload  # type: ignore[return-value]
        try:
            return self._payload_adapter.validate_python(payload)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise PayloadValidationError(self.id, validation_errors(exc)) from None

    def load_payload(self, text: str | bytes) -> P:
        """Validate a payload given as JSON text (as stored with a run).

        Raises:
            PayloadValidationError: the text is not JSON, or does not fit the model.
        """
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PayloadValidationError(
                self.id, [{"field": "", "message": f"invalid JSON: {exc}", "type": "json"}]
            ) from None
        return self.validate_payload(value)

    def dump_payload(self, payload: Any) -> str:
        return dumps(payload)

    def payload_schema(self) -> dict[str, Any]:
        if not self.takes_payload:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        return self._payload_adapter.json_schema()

    def output_schema(self) -> dict[str, Any] | None:
        if self.output_type in (None, inspect.Parameter.empty):
            return None
        return adapter(self.output_type).json_schema()


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


@overload
def workflow(fn: Callable[..., Awaitable[O]], /) -> Workflow[Any, O]: ...


@overload
def workflow(
    *,
    id: str | None = None,
    version: str = "1",
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    description: str | None = None,
    queue: str = "default",
    priority: int = 0,
    concurrency_key: str | None = None,
    concurrency_limit: int | None = None,
    ttl: float | timedelta | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    missed: str = "latest",
    on_event: str | Sequence[str] = (),
) -> Callable[[Callable[..., Awaitable[O]]], Workflow[Any, O]]: ...


def workflow(
    fn: Callable[..., Awaitable[O]] | None = None,
    /,
    *,
    id: str | None = None,
    version: str = "1",
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    description: str | None = None,
    queue: str = "default",
    priority: int = 0,
    concurrency_key: str | None = None,
    concurrency_limit: int | None = None,
    ttl: float | timedelta | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    missed: str = "latest",
    on_event: str | Sequence[str] = (),
) -> Workflow[Any, O] | Callable[[Callable[..., Awaitable[O]]], Workflow[Any, O]]:
    """Declare a workflow: ``async def fn(ctx: RunContext, payload: Model) -> Out``.

    ``timeout`` bounds the run's execution time (time spent in waitpoints is not counted);
    ``retry`` re-runs a failed run, keeping the steps that completed; ``description`` is shown
    to agents. Flow control: ``queue`` and ``priority``; ``concurrency_key`` with
    ``concurrency_limit`` (runs sharing a key run at most that many at once; a trigger can set
    its own key); ``ttl`` (a run still queued after this long expires). Triggers:
    ``schedule`` (a cron expression in ``timezone``; ``missed`` ticks after downtime are
    ``"skip"``-ped, the ``"latest"`` one run, or ``"all"`` run) and ``on_event`` (event names
    that start a run with the event's payload).
    """
    if missed not in ("skip", "latest", "all"):
        raise ValueError(f"missed must be 'skip', 'latest' or 'all', not {missed!r}")
    if concurrency_limit is not None and concurrency_limit < 1:
        raise ValueError("concurrency_limit must be at least 1")
    events = (on_event,) if isinstance(on_event, str) else tuple(on_event)

    def build(f: Callable[..., Awaitable[O]]) -> Workflow[Any, O]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"workflow {f.__qualname__} must be an async function")
        params = list(inspect.signature(f).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(
                f"workflow {f.__qualname__} must take (ctx) or (ctx, payload), "
                f"not {len(params)} parameters"
            )
        hints = typing.get_type_hints(f)
        takes_payload = len(params) == 2
        payload_type = hints.get(params[1].name, Any) if takes_payload else None
        return Workflow(
            id=id or f.__name__,
            fn=f,
            version=str(version),
            retry=retry or RetryPolicy.none(),
            timeout=seconds(timeout),
            description=description if description is not None else inspect.getdoc(f) or "",
            queue=queue,
            priority=priority,
            payload_type=payload_type,
            output_type=hints.get("return", Any),
            takes_payload=takes_payload,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            ttl=seconds(ttl),
            schedule=schedule,
            timezone=timezone,
            missed=missed,
            on_event=events,
        )

    return build(fn) if fn is not None else build
