"""The Starlette application: the declared operations, health checks and the OpenAPI document."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import routes_runs, routes_workflows
from .errors import error_response, http_exception_handler
from .openapi import openapi_document
from .routing import MAX_BODY_BYTES, Operation

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["OPERATIONS", "create_app"]

logger = logging.getLogger("agentflow.api")

OPERATIONS: list[Operation] = [*routes_workflows.OPERATIONS, *routes_runs.OPERATIONS]


def create_app(
    engine: Engine, *, max_body_bytes: int = MAX_BODY_BYTES, ready_timeout: float = 5.0
) -> Starlette:
    """The HTTP API of ``engine``: JSON under ``/api/v1``, ``/healthz``, ``/readyz``,
    ``/openapi.json``. Bodies above ``max_body_bytes`` are refused with 413."""
    document: dict[str, Any] = {}

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
            document.update(openapi_document(OPERATIONS))
        return JSONResponse(document)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *(op.route(engine, max_body_bytes) for op in OPERATIONS),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_exception_handler})
    app.state.engine = engine
    return app
