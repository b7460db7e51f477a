"""The streamable HTTP endpoint, mounted at ``/mcp`` by ``agentflow.api.create_app``.

Two servers sit behind it, one with every tool and one read-only, and each request goes to
the one its credential allows: the API's auth middleware puts the caller's principal in
``scope["state"]["principal"]``, whose ``scope`` is ``"read"`` for a read-only key. A request
without a principal (the app was built with ``auth=False``) gets the full server, unless the
endpoint itself was built read-only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from .server import build_server

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["LOOPBACK", "McpEndpoint"]

LOOPBACK = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)
"""Accept only loopback Host and Origin headers: a web page cannot reach a local server
through DNS rebinding. Pass ``transport_security=None`` to serve other host names."""


class McpEndpoint:
    """An ASGI app serving the MCP server of ``engine`` over streamable HTTP.

    Mount it as a route and run :meth:`lifespan` in the application's lifespan. ``options``
    are those of :func:`mcp_server.build_server`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        read_only: bool = False,
        transport_security: TransportSecuritySettings | None = LOOPBACK,
        **options: Any,
    ) -> None:
        self.read_only = read_only
        self._read = self._manager(
            build_server(engine, read_only=True, **options), transport_security
        )
        self._full = None
        if not read_only:
            self._full = self._manager(build_server(engine, **options), transport_security)

    @staticmethod
    def _manager(
        server: Server[Any], security: TransportSecuritySettings | None
    ) -> StreamableHTTPSessionManager:
        return StreamableHTTPSessionManager(app=server, security_settings=security)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the endpoint's session managers (each may run only once)."""
        async with AsyncExitStack() as stack:
            for manager in (self._read, self._full):
                if manager is not None:
                    await stack.enter_async_context(manager.run())
            yield

    def _for(self, scope: Scope) -> StreamableHTTPSessionManager:
        principal = (scope.get("state") or {}).get("principal")
        if self._full is None or getattr(principal, "scope", "full") == "read":
            return self._read
        return self._full

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._for(scope).handle_request(scope, receive, send)
