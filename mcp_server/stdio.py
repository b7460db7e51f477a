"""Serve the MCP server over stdio: the client starts this process and talks on its pipes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.stdio import stdio_server

from .server import build_server

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["run_stdio"]


async def run_stdio(engine: Engine, **options: Any) -> None:
    """Serve ``engine`` on stdin/stdout until the client closes them.

    ``options`` are those of :func:`mcp_server.build_server`. Nothing else may write to
    stdout: it carries the protocol (log to stderr).
    """
    server = build_server(engine, **options)
    async with engine, stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
