"""The Starlette application: the declared operations, health checks and the OpenAPI document."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_server import McpEndpoint
from mcp_server.http import LOOPBACK

from . import routes_hooks, routes_runs, routes_schedules, routes_workflows
from .auth import AuthMiddleware, LoopbackGuard
from .errors import error_response, http_exception_handler
from .live import live_openapi, live_routes
from .openapi import openapi_document
from .routing import MAX_BODY_BYTES, Operation

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["OPERATIONS", "create_app"]

logger = logging.getLogger("agentflow.api")

OPERATIONS: list[Operation] = [
    *routes_workflows.OPERATIONS,
    *routes_runs.OPERATIONS,
    *routes_schedules.OPERATIONS,
    *routes_hooks.OPERATIONS,
]


def create_app(
    engine: Engine,
    *,
    auth: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
    ready_timeout: float = 5.0,
    live_interval: float = 0.25,
) -> Starlette:
    """The HTTP API of ``engine``: JSON under ``/api/v1``, live events (SSE), ``/healthz``,
    ``/readyz``, ``/openapi.json``.

    With ``auth`` (the default) every request but health checks, the OpenAPI document,
    signed webhooks and signed approval links needs an API key (``engine.api_keys``).
    Bodies above ``max_body_bytes`` are refused with 413; live views poll the database
    every ``live_interval`` seconds."""
    document: dict[str, Any] = {}
    # The MCP server over streamable HTTP, at /mcp. Without keys it only answers loopback
    # Host/Origin headers (no DNS rebinding from a web page); a key already proves the caller.
    mcp = McpEndpoint(engine, transport_security=None if auth else LOOPBACK)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            with anyio.fail_after(ready_timeout):
                await engine.start()
                await engine.db.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        except Exception as exc:
            logger.warning("readiness check failed: %s", exc)
            return error_response(503, "not_ready", "the database is not reachable")
        return JSONResponse({"status": "ready"})

    async def openapi(request: Request) -> Response:
        if not document:
            document.update(openapi_document(OPERATIONS, extra_paths=live_openapi()))
        return JSONResponse(document)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        # Before the operations: /api/v1/runs/events is not the run called "events".
        *live_routes(engine, interval=live_interval),
        *(op.route(engine, max_body_bytes) for op in OPERATIONS),
        Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
    ]
    middleware = [
        Middleware(AuthMiddleware, keys=engine.api_keys) if auth else Middleware(LoopbackGuard)
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lambda app: mcp.lifespan(),
    )
    app.state.engine = engine
    return app
