"""API-key authentication: ``Authorization: Bearer <key>`` on every request but a few.

Public paths: health checks, the OpenAPI document, webhooks (they carry an HMAC signature
instead) and signed approval-completion URLs (they carry their own signature). ``read`` keys
may use safe methods only; the MCP endpoint gets the caller's scope (``principal``) and
decides per tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.requests import Request

from .errors import error_response, from_exception

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from agentflow.keys import ApiKeys

__all__ = ["AuthMiddleware", "LoopbackGuard", "Principal", "is_public", "principal"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = re.compile(
    r"^/(healthz|readyz|openapi\.json"
    r"|api/v1/webhooks/[^/]+"
    r"|api/v1/approvals/[^/]+/complete)/?$"
)
# Endpoints that check the scope themselves (every MCP request is a POST).
_SELF_SCOPED = re.compile(r"^/mcp(/|$)")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key's id, name and scope (``read`` or ``full``)."""

    key_id: str
    name: str
    scope: str

    @property
    def can_write(self) -> bool:
        return self.scope == "full"


def is_public(path: str) -> bool:
    return _PUBLIC.match(path) is not None


def principal(scope: Scope) -> Principal | None:
    """The authenticated caller of a request (None when auth is off)."""
    found = scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            response = error_response(
                401,
                "unauthorized",
                "missing API key: send 'Authorization: Bearer <key>' "
                "(create one with 'agentflow keys create')",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        try:
            key = await self.keys.verify(secret.strip())
        except Exception as exc:  # e.g. the database is down: the usual error body, not a 500
            await from_exception(exc, Request(scope))(scope, receive, send)
            return
        if key is None:
            response = error_response(401, "unauthorized", "invalid or revoked API key")
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            await response(scope, receive, send)
            return
        if (
            not key.can_write
            and scope["method"] not in SAFE_METHODS
            and not _SELF_SCOPED.match(scope["path"])
        ):
            response = error_response(
                403,
                "forbidden",
                f"API key {key.name!r} is read-only; this needs a key with scope 'full'",
                {"scope": key.scope},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = Principal(key.id, key.name, key.scope)
        await self.app(scope, receive, send)


_LOOPBACK_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$")
_LOOPBACK_ORIGIN = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$")


class LoopbackGuard:
    """Without API keys, answer only requests addressed to a loopback name and not sent by a
    web page from elsewhere: no DNS rebinding, no cross-site form posts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host = headers.get("host", "")
            origin = headers.get("origin")
            if not _LOOPBACK_HOST.match(host) or (
                origin is not None and not _LOOPBACK_ORIGIN.match(origin)
            ):
                response = error_response(
                    403,
                    "forbidden",
                    "without API keys the API only answers loopback requests "
                    "(Host 127.0.0.1/localhost/[::1], no foreign Origin)",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
