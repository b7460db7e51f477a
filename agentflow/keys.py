"""API keys for the HTTP API (and the MCP server over HTTP).

A key is shown once, when it is created; only a SHA-256 hash of it is stored (keys are 256
random bits, so a fast hash is enough: there is nothing to brute-force). ``read`` keys may
only read; ``full`` keys may also trigger, cancel, approve and send events.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import AgentflowError, NotFoundError
from .storage.auth_store import AuthStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .engine import Engine

__all__ = ["ApiKey", "ApiKeyError", "ApiKeyNotFoundError", "ApiKeys", "CreatedApiKey", "Scope"]

Scope = Literal["read", "full"]
SCOPES: tuple[Scope, ...] = ("read", "full")
PREFIX = "af_"
# A used key's ``last_used_at`` is refreshed at most this often (seconds): one write per key
# per minute instead of one per request.
TOUCH_INTERVAL = 60.0


class ApiKeyError(AgentflowError):
    code = "invalid_api_key"


class ApiKeyNotFoundError(NotFoundError):
    code = "api_key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")
        self.key_id = key_id


class ApiKey(BaseModel):
    """A stored key (never its secret)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    prefix: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == "full"

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ApiKey:
        return cls(
            id=row["id"],
            name=row["name"],
            prefix=row["prefix"],
            scope=row["scope"],
            created_at=_at(row["created_at"]),
            last_used_at=None if row["last_used_at"] is None else _at(row["last_used_at"]),
            revoked_at=None if row["revoked_at"] is None else _at(row["revoked_at"]),
        )


class CreatedApiKey(BaseModel):
    """A new key and its secret: the only time the secret is available."""

    key: ApiKey
    secret: str


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """The engine's API keys (``engine.api_keys``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = AuthStore(engine.db, engine.clock)

    async def create(self, name: str, *, scope: Scope = "full") -> CreatedApiKey:
        """Create a key; the returned secret is not stored and cannot be shown again.

        Raises:
            ApiKeyError: empty name or unknown scope.
        """
        name = name.strip()
        if not name or len(name) > 200:
            raise ApiKeyError("an API key needs a name of 1 to 200 characters")
        if scope not in SCOPES:
            raise ApiKeyError(f"unknown scope {scope!r}; use 'read' or 'full'")
        await self._engine.start()
        secret = PREFIX + secrets.token_urlsafe(32)
        row = await self._store.insert_key(
            {
                "id": "key_" + secrets.token_hex(8),
                "name": name,
                "prefix": secret[:10],
                "secret_hash": hash_secret(secret),
                "scope": scope,
            }
        )
        return CreatedApiKey(key=ApiKey.from_row(row), secret=secret)

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        """Keys, oldest first; revoked ones only when asked."""
        await self._engine.start()
        rows = await self._store.keys(include_revoked=include_revoked)
        return [ApiKey.from_row(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once (in every process). Revoking a revoked key is a no-op.

        Raises:
            ApiKeyNotFoundError: no key with this id.
        """
        await self._engine.start()
        rows = await self._store.revoke_keys([key_id])
        if not rows:
            raise ApiKeyNotFoundError(key_id)
        return ApiKey.from_row(rows[0])

    async def revoke_named(self, name: str) -> int:
        """Revoke every active key called ``name``; how many were revoked."""
        ids = [k.id for k in await self.list() if k.name == name]
        if ids:
            await self._store.revoke_keys(ids)
        return len(ids)

    async def verify(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(PREFIX):
            return None
        await self._engine.start()
        row = await self._store.key_by_hash(hash_secret(secret))
        if row is None:
            return None
        now = self._engine.clock()
        if row["last_used_at"] is None or now - row["last_used_at"] > TOUCH_INTERVAL:
            await self._store.touch_key(row["id"], now)
        return ApiKey.from_row(row)

    async def any_active(self) -> bool:
        return bool(await self.list())
