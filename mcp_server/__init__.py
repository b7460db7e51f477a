"""agentflow's MCP server: workflows, runs and approvals as MCP tools, resources and tasks.

- :func:`build_server` builds the server of an Engine;
- :func:`run_stdio` serves it over stdio (the ``agentflow mcp APP`` command);
- :class:`McpEndpoint` serves it over streamable HTTP (``/mcp`` in ``agentflow.api``).
"""

from __future__ import annotations

from .http import McpEndpoint
from .server import build_server
from .stdio import run_stdio
from .tasks import TASKS_EXTENSION

__all__ = ["TASKS_EXTENSION", "McpEndpoint", "build_server", "run_stdio"]
