"""The HTTP API: a Starlette app over an :class:`~agentflow.Engine` (``create_app``).

Routes only translate HTTP to engine calls and back; the operations live in the Engine.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
