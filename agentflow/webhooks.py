"""Inbound webhooks: signed HTTP deliveries from other systems become events.

Each source (``stripe``, ``github``, your CRM) has its own secret. A delivery is signed as

    X-Agentflow-Timestamp: <unix seconds>
    X-Agentflow-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

or, when the sender names each delivery with ``X-Agentflow-Webhook-Id`` (so that a re-sent
delivery with a new timestamp is still recognised), over ``"<id>.<timestamp>.<raw body>"``:
the id is signed too, so it cannot be changed to replay a captured delivery.

Deliveries older (or newer) than the tolerance are refused, and a delivery seen before is
recognised by its id, or else by its signature: either becomes the event id, so a replay
changes nothing.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .errors import AgentflowError, NotFoundError
from .models import EventRecord
from .storage.auth_store import AuthStore

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_ID_HEADER",
    "WebhookError",
    "WebhookSource",
    "WebhookSourceNotFoundError",
    "WebhookSources",
    "sign",
]

SIGNATURE_HEADER = "x-agentflow-signature"
TIMESTAMP_HEADER = "x-agentflow-timestamp"
WEBHOOK_ID_HEADER = "x-agentflow-webhook-id"
DEFAULT_TOLERANCE = 300.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,29}$")
_DELIVERY = re.compile(r"^[A-Za-z0-9_.:-]{1,150}$")


class WebhookError(AgentflowError):
    """A delivery that cannot be accepted; ``reason`` says why (for the HTTP status)."""

    code = "invalid_webhook"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookSourceNotFoundError(NotFoundError):
    code = "webhook_source_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no webhook source {name!r}")
        self.name = name


class WebhookSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    event: str
    created_at: datetime


def sign(secret: str, body: bytes, timestamp: int, webhook_id: str | None = None) -> str:
    """The ``X-Agentflow-Signature`` value for ``body`` sent at ``timestamp`` (as delivery
    ``webhook_id`` when the sender names its deliveries)."""
    prefix = f"{timestamp}." if webhook_id is None else f"{webhook_id}.{timestamp}."
    mac = hmac.new(secret.encode(), prefix.encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _source(row: Mapping[Any, Any]) -> WebhookSource:
    return WebhookSource(
        name=row["name"],
        event=row["event"] or f"webhook.{row['name']}",
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
    )


class WebhookSources:
    """The engine's webhook sources (``engine.webhooks``)."""

    def __init__(self, engine: Engine, *, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self._engine = engine
        self._store = AuthStore(engine.db, engine.clock)
        self.tolerance = tolerance

    async def create(
        self, name: str, *, secret: str | None = None, event: str | None = None
    ) -> tuple[WebhookSource, str]:
        """Create (or re-key) source ``name``; returns it and its secret.

        Deliveries become events called ``event`` (default ``webhook.<name>``).

        Raises:
            WebhookError: invalid name, or a secret shorter than 16 characters.
        """
        if not _NAME.match(name):
            raise WebhookError(
                f"invalid webhook source name {name!r}: use letters, digits, '_', '.', '-'",
                reason="invalid",
            )
        if secret is not None and len(secret) < 16:
            raise WebhookError("a webhook secret needs at least 16 characters", reason="invalid")
        secret = secret or "whsec_" + secrets.token_urlsafe(32)
        await self._engine.start()
        row = await self._store.upsert_source(name, secret, event)
        return _source(row), secret

    async def list(self) -> builtins.list[WebhookSource]:
        await self._engine.start()
        return [_source(r) for r in await self._store.sources()]

    async def delete(self, name: str) -> None:
        """Raises: WebhookSourceNotFoundError."""
        await self._engine.start()
        if not await self._store.delete_source(name):
            raise WebhookSourceNotFoundError(name)

    async def receive(self, name: str, body: bytes, headers: Mapping[str, str]) -> EventRecord:
        """Verify a delivery to source ``name`` and send it as an event.

        Raises:
            WebhookSourceNotFoundError: no such source.
            WebhookError: ``reason`` is ``unsigned``, ``bad_signature``, ``stale``,
                ``invalid`` (body is not JSON) or ``replayed``.
        """
        await self._engine.start()
        row = await self._store.source(name)
        if row is None:
            raise WebhookSourceNotFoundError(name)
        signature = headers.get(SIGNATURE_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            raise WebhookError(
                f"unsigned delivery: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}",
                reason="unsigned",
            )
        if not stamp.isdigit() or len(stamp) > 12:
            raise WebhookError(
                f"{TIMESTAMP_HEADER} must be Unix seconds, got {stamp[:20]!r}", reason="unsigned"
            )
        timestamp = int(stamp)
        webhook_id = headers.get(WEBHOOK_ID_HEADER)
        if webhook_id is not None and not _DELIVERY.match(webhook_id):
            raise WebhookError(
                f"{WEBHOOK_ID_HEADER} must be 1 to 150 letters, digits or '_.:-'",
                reason="invalid",
            )
        expected = sign(row["secret"], body, timestamp, webhook_id).encode()
        if not hmac.compare_digest(expected, signature.strip().encode()):
            raise WebhookError("the signature does not match the body", reason="bad_signature")
        skew = abs(self._engine.clock() - timestamp)
        if skew > self.tolerance:
            raise WebhookError(
                f"the delivery is {skew:.0f}s away from now (tolerance {self.tolerance:.0f}s)",
                reason="stale",
            )
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError) as exc:
            raise WebhookError(f"the body is not JSON: {exc}", reason="invalid") from None
        delivery = webhook_id or hashlib.sha256(signature.strip().encode()).hexdigest()
        event_id = f"webhook:{name}:{delivery}"
        record = await self._engine.send_event(_source(row).event, payload, id=event_id)
        if record.duplicate:
            raise WebhookError("this delivery was already received", reason="replayed")
        return record
