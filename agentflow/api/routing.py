"""Declared operations: each route names its body, query and response models once.

The same declarations build the Starlette routes and the OpenAPI document. Handlers receive
the engine, the request and the validated body/query, and return a response model; errors
they raise become the one error shape (see ``errors``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import ApiError, from_exception, from_validation, invalid

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["MAX_BODY_BYTES", "Call", "Operation", "operation"]

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Call:
    """What a handler gets: the engine, the request, the validated inputs, and the app's body
    limit (for a handler that reads the raw body itself)."""

    engine: Engine
    request: Request
    body: Any = None
    query: Any = None
    max_body: int = MAX_BODY_BYTES

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


Handler = Callable[[Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel]
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)

    def route(self, engine: Engine, max_body: int) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                call = Call(
                    engine,
                    request,
                    body=await self._read_body(request, max_body),
                    query=self._read_query(request),
                    max_body=max_body,
                )
                result = await self.handler(call)
            except Exception as exc:
                return from_exception(exc, request)
            return JSONResponse(result.model_dump(mode="json"), status_code=self.status)

        return Route(self.path, endpoint, methods=[self.method], name=self.handler.__name__)

    async def _read_body(self, request: Request, max_body: int) -> Any:
        if self.body is None:
            return None
        raw = await read_limited(request, max_body)
        if not raw.strip():
            if self.body_required:
                raise invalid([{"field": "", "message": "a JSON body is required"}])
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
                raise invalid(
                    [{"field": "", "message": f"invalid JSON: {exc}", "type": "json"}],
                    f"invalid JSON body: {exc}",
                ) from None
        try:
            return self.body.model_validate(data)
        except ValidationError as exc:
            raise from_validation(exc, "body") from None

    def _read_query(self, request: Request) -> Any:
        if self.query is None:
            return None
        try:
            return self.query.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise from_validation(exc, "query") from None


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body exceeds {limit} bytes", {"limit": limit})


def operation(
    registry: list[Operation],
    method: str,
    path: str,
    *,
    response: type[BaseModel],
    status: int = 200,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    tags: tuple[str, ...] = (),
) -> Callable[[Handler], Handler]:
    """Declare a handler as an operation of ``registry``; its docstring is the summary."""

    def register(handler: Handler) -> Handler:
        summary = (handler.__doc__ or handler.__name__).strip().splitlines()[0]
        registry.append(
            Operation(
                method,
                path,
                handler,
                summary,
                response,
                status,
                body,
                body_required,
                query,
                errors,
                tags,
            )
        )
        return handler

    return register
