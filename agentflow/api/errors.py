"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``.

Engine errors map to HTTP statuses here, in one place; anything unexpected becomes a generic
500 (logged with its traceback, never sent to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentflow.errors import (
    AgentflowError,
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    PayloadValidationError,
    StorageUnavailableError,
    WaitTimeoutError,
    WorkflowNotFoundError,
)
from agentflow.schedules import ScheduleNotFoundError
from agentflow.workflows import validation_errors

__all__ = ["ApiError", "error_response", "from_exception", "http_exception_handler"]

logger = logging.getLogger("agentflow.api")


class ApiError(Exception):
    """An error the API itself raises (bad input outside the engine, body too large...)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status)


def invalid(errors: list[dict[str, Any]], message: str = "invalid request") -> ApiError:
    """A 422 listing each invalid field."""
    return ApiError(422, "invalid_request", message, {"errors": errors})


def from_validation(exc: ValidationError, where: str) -> ApiError:
    errors = validation_errors(exc)
    parts = "; ".join(f"{e['field'] or '(body)'}: {e['message']}" for e in errors)
    return invalid(errors, f"invalid {where}: {parts}")


def _status(exc: AgentflowError) -> int:
    if isinstance(exc, PayloadValidationError | InvalidCursorError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StorageUnavailableError):
        return 503
    if isinstance(exc, WaitTimeoutError):
        return 504
    return 400


def _details(exc: AgentflowError) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if exc.run_id is not None:
        details["run_id"] = exc.run_id
    if isinstance(exc, WorkflowNotFoundError):
        details["workflow"] = exc.workflow_id
        details["available"] = exc.available
    if isinstance(exc, PayloadValidationError):
        details["workflow"] = exc.workflow_id
        details["errors"] = exc.errors
    if isinstance(exc, ScheduleNotFoundError):
        details["schedule_id"] = exc.schedule_id
    return details


def from_exception(exc: BaseException, request: Request) -> JSONResponse:
    """The response for an exception raised while handling ``request``."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, AgentflowError):
        return error_response(_status(exc), exc.code, exc.message, _details(exc))
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def _http_error(exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    return _http_error(exc)
