"""Endpoints other systems call without an API key: signed webhooks and signed approval links.

An approval link (like Trigger.dev's token URLs) lets an external system resolve exactly one
pending approval: the URL names the approval's token, an expiry and an HMAC of both under a
key kept in the database, so it cannot be forged or extended.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.models import ApprovalDecision, EventRecord
from agentflow.storage.auth_store import AuthStore
from agentflow.webhooks import WebhookError

from .errors import ApiError
from .routes_runs import resolve_approval
from .routing import Call, Operation, operation, read_limited
from .schemas import RequestModel

__all__ = ["OPERATIONS"]

OPERATIONS: list[Operation] = []

LINK_KEY_SETTING = "approval_link_key"
MAX_LINK_TTL = 30 * 24 * 3600
_WEBHOOK_STATUS = {"unsigned": 401, "bad_signature": 401, "stale": 401, "replayed": 409}


class LinkRequest(RequestModel):
    ttl: int = Field(
        7 * 24 * 3600, ge=60, le=MAX_LINK_TTL, description="Seconds the link stays valid."
    )


class ApprovalLink(BaseModel):
    url: str = Field(description="POST here (no API key) to resolve the approval once.")
    expires_at: datetime


class LinkQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")  # mail clients append tracking parameters

    expires: int = Field(ge=0, le=2**40, description="Unix time the link expires at.")
    signature: str = Field(min_length=1, max_length=128)


class CompletionRequest(RequestModel):
    approved: bool = True
    approver: str | None = None
    comment: str | None = None
    data: Any = Field(None, description="Approve only: replaces the data the run asked for.")


def _sign(key: str, token: str, expires: int) -> str:
    return hmac.new(key.encode(), f"{token}.{expires}".encode(), hashlib.sha256).hexdigest()


async def _link_key(call: Call) -> str:
    store = AuthStore(call.engine.db, call.engine.clock)
    return await store.setting(LINK_KEY_SETTING, lambda: secrets.token_urlsafe(32))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/webhooks/{source}",
    response=EventRecord,
    status=202,
    errors=(401, 404, 409, 413, 422),
    tags=("webhooks",),
)
async def receive_webhook(call: Call) -> EventRecord:
    """Receive a signed delivery from a webhook source and send it as an event.

    Needs no API key: the body must carry ``X-Agentflow-Timestamp`` and ``X-Agentflow-Signature``
    (``sha256=`` HMAC-SHA256 of ``<timestamp>.<body>`` under the source's secret).
    """
    body = await read_limited(call.request, call.max_body)
    try:
        return await call.engine.webhooks.receive(call.path("source"), body, call.request.headers)
    except WebhookError as exc:
        status = _WEBHOOK_STATUS.get(exc.reason, 422)
        raise ApiError(status, f"webhook_{exc.reason}", exc.message) from None


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/approvals/{token}/link",
    response=ApprovalLink,
    body=LinkRequest,
    body_required=False,
    errors=(404, 409, 422),
    tags=("approvals",),
)
async def create_link(call: Call) -> ApprovalLink:
    """A signed URL that resolves this pending approval once, without an API key."""
    token = call.path("token")
    pending = await call.engine.list_waitpoints(kind="approval", status="pending", token=token)
    if not pending:
        raise ApiError(404, "approval_not_found", "no pending approval with this token")
    expires = int(call.engine.clock()) + call.body.ttl
    signature = _sign(await _link_key(call), token, expires)
    base = str(call.request.base_url).rstrip("/")
    return ApprovalLink(
        url=f"{base}/api/v1/approvals/{token}/complete?expires={expires}&signature={signature}",
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/approvals/{token}/complete",
    response=ApprovalDecision,
    body=CompletionRequest,
    body_required=False,
    query=LinkQuery,
    errors=(403, 404, 409, 413, 422),
    tags=("approvals",),
)
async def complete_link(call: Call) -> ApprovalDecision:
    """Approve (default) or reject through a signed approval link; needs no API key."""
    token = call.path("token")
    query: LinkQuery = call.query
    expected = _sign(await _link_key(call), token, query.expires)
    if not hmac.compare_digest(expected.encode(), query.signature.encode()):
        raise ApiError(403, "invalid_signature", "the link's signature does not match")
    if call.engine.clock() > query.expires:
        raise ApiError(403, "link_expired", "the link has expired; ask for a new one")
    req: CompletionRequest = call.body
    return await resolve_approval(call.engine, req.approved, req, token=token)
