"""Model errors, classified for the step retry policy.

Rate limits, timeouts, connection failures and server errors (including a response the
SDK cannot read) are retried with backoff (a rate limit's ``Retry-After`` is honoured
through ``retry_after``); bad requests, authentication errors and an exhausted quota are
``NonRetryableError``s and fail the call at once.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ...errors import NonRetryableError
from ..errors import AgentError

__all__ = [
    "ModelAuthError",
    "ModelBadRequestError",
    "ModelConnectionError",
    "ModelError",
    "ModelQuotaExceededError",
    "ModelRateLimitError",
    "ModelServerError",
    "ModelTimeoutError",
    "classify_openai_error",
    "parse_retry_after",
]


class ModelError(AgentError):
    """A model provider failed a request."""

    code = "model_error"

    def __init__(self, message: str, *, model: str, status: int | None = None) -> None:
        super().__init__(f"model {model!r}: {message}")
        self.model = model
        self.status = status


class ModelRateLimitError(ModelError):
    """HTTP 429: retried after ``retry_after`` seconds when the provider said so."""

    code = "model_rate_limited"

    def __init__(self, message: str, *, model: str, retry_after: float | None = None) -> None:
        hint = "" if retry_after is None else f" (retry after {retry_after:g}s)"
        super().__init__(f"rate limited: {message}{hint}", model=model, status=429)
        self.retry_after = retry_after


class ModelQuotaExceededError(ModelError, NonRetryableError):
    """HTTP 429 with ``insufficient_quota``: the account is out of credit or over its
    spending limit. Not a rate limit: waiting and retrying will not make it succeed."""

    code = "model_quota_exceeded"


class ModelTimeoutError(ModelError):
    code = "model_timeout"


class ModelConnectionError(ModelError):
    code = "model_connection_error"


class ModelServerError(ModelError):
    """5xx, 408 or 409 from the provider, an error without a status (e.g. one reported in
    the middle of a stream), or a response the SDK could not read: transient."""

    code = "model_server_error"


class ModelBadRequestError(ModelError, NonRetryableError):
    """The provider rejected the request (400, 404, 422...): sending it again cannot help."""

    code = "model_bad_request"


class ModelAuthError(ModelError, NonRetryableError):
    """Missing or invalid credentials (401, 403), or no API key configured."""

    code = "model_auth_error"


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        value = lowered.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify_openai_error(openai: Any, exc: BaseException, model: str) -> ModelError | None:
    """Map an ``openai`` SDK exception (litellm's derive from them), or an ``httpx``
    transport error raised while reading a stream, to a ``ModelError``.

    ``openai`` is the imported module (passed in so that this module does not import it).
    Returns ``None`` for anything else.
    """
    message = str(getattr(exc, "message", None) or exc)
    httpx = sys.modules.get("httpx")  # loaded with openai
    if httpx is not None and isinstance(exc, httpx.TransportError):
        # The SDKs wrap errors of the request itself, not those of a stream being read.
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeoutError(f"timed out: {type(exc).__name__}: {exc}", model=model)
        return ModelConnectionError(f"connection failed: {type(exc).__name__}: {exc}", model=model)
    if not isinstance(exc, openai.OpenAIError):
        return None
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeoutError(f"timed out: {message}", model=model)
    if isinstance(exc, openai.APIConnectionError):
        return ModelConnectionError(f"cannot connect: {message}", model=model)
    if isinstance(exc, openai.APIResponseValidationError):
        # The provider accepted the request (2xx) but sent a body the SDK cannot read: a
        # truncated or garbled response (a proxy, an overloaded server). Not the request's
        # fault, so retried; a server that always answers so fails after the retries.
        return ModelServerError(f"unreadable response: {message}", model=model, status=None)
    if isinstance(exc, openai.APIError):
        status = _status(exc)
        if status is None:
            # No HTTP status: e.g. an error event in the middle of a stream.
            return ModelServerError(message, model=model)
        if status == 429:
            if _is_quota(exc, message):
                return ModelQuotaExceededError(
                    f"quota exceeded (HTTP 429 insufficient_quota): {message}; add credit or "
                    "raise the spending limit, retrying will not help",
                    model=model,
                    status=429,
                )
            response = getattr(exc, "response", None)
            headers = getattr(exc, "litellm_response_headers", None) or getattr(
                response, "headers", None
            )
            return ModelRateLimitError(message, model=model, retry_after=parse_retry_after(headers))
        if status in (401, 403):
            return ModelAuthError(message, model=model, status=status)
        if status >= 500 or status in (408, 409):
            return ModelServerError(message, model=model, status=status)
        if 400 <= status < 500:
            return ModelBadRequestError(message, model=model, status=status)
        return ModelServerError(
            f"unexpected HTTP status {status}: {message}", model=model, status=status
        )
    if "api_key" in message or "API key" in message:
        # The client refusing to start without an API key.
        return ModelAuthError(message, model=model)
    return ModelError(f"{type(exc).__name__}: {message}", model=model)


def _status(exc: BaseException) -> int | None:
    try:
        status = int(getattr(exc, "status_code", None) or 0)
    except (TypeError, ValueError):
        return None
    return status or None


def _is_quota(exc: BaseException, message: str) -> bool:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    marks = [getattr(exc, "code", None), getattr(exc, "type", None)]
    if isinstance(error, dict):
        marks += [error.get("code"), error.get("type")]
    return "insufficient_quota" in marks or "insufficient_quota" in message
