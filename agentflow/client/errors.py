"""The client's own errors, and the Engine's exceptions rebuilt from the API's error responses."""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import (
    AgentflowError,
    ApprovalError,
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    PayloadValidationError,
    RunNotFoundError,
    WaitTimeoutError,
    WorkflowNotFoundError,
)
from ..schedules import ScheduleError, ScheduleNotFoundError

__all__ = ["ApiConnectionError", "ApiError", "RequestValidationError"]


class ApiError(AgentflowError):
    """An error response with no matching engine exception (401, 413, 500, a proxy's 502...).

    ``status`` is the HTTP status; ``code``, ``message`` and ``details`` come from the
    API's error body.
    """

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        details = details or {}
        run_id = details.get("run_id")
        super().__init__(message, run_id=run_id if isinstance(run_id, str) else None)
        self.status = status
        self.code = code
        self.details = details


class RequestValidationError(ApiError):
    """The server refused the request's body or query (422); ``errors`` names each field."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.details.get("errors")
        return errors if isinstance(errors, list) else []

    @property
    def fields(self) -> list[str]:
        return [str(e.get("field", "")) for e in self.errors]


class ApiConnectionError(AgentflowError):
    """The server could not be reached, or did not answer in time."""

    code = "server_unavailable"

    def __init__(self, url: str, reason: BaseException) -> None:
        what = f"no answer within the timeout ({reason})" if _is_timeout(reason) else reason
        super().__init__(f"cannot reach the agentflow server at {url}: {what}")
        self.url = url


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TimeoutException)


def _error(response: httpx.Response) -> AgentflowError:
    """The exception the Engine would have raised, rebuilt from an error response."""
    status = response.status_code
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details: dict[str, Any] = error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        where = f"{response.request.method} {response.request.url}"
        return ApiError(status, "http_error", f"HTTP {status} from {where}: {text}")
    run_id = details.get("run_id")
    try:
        match code:
            case "run_not_found":
                return RunNotFoundError(str(run_id))
            case "workflow_not_found":
                return WorkflowNotFoundError(details["workflow"], list(details["available"]))
            case "schedule_not_found":
                return ScheduleNotFoundError(details["schedule_id"])
            case "invalid_payload":
                return PayloadValidationError(details["workflow"], list(details["errors"]))
            case "invalid_cursor":
                return InvalidCursorError()
            case "invalid_schedule":
                return ScheduleError(message)
            case "approval_conflict":
                return ApprovalError(message, run_id=run_id)
            case "wait_timeout":
                return WaitTimeoutError(message, run_id=run_id)
    except (KeyError, TypeError):  # a body from another version: keep what it says
        pass
    if status == 422:
        return RequestValidationError(status, code, message, details)
    if status == 404 and code.endswith("not_found"):
        return NotFoundError(message, run_id=run_id)
    if status == 409:
        return ConflictError(message, run_id=run_id)
    return ApiError(status, code, message, details)
