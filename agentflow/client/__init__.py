"""A client for the agentflow HTTP API with the Engine's method names and return types.

``AsyncClient`` (and ``Client``, its blocking twin) call a server started with ``agentflow
serve`` or ``agentflow dev``. Their methods take the Engine's arguments and return the same
records (``Run``, ``StepRecord``, ``Schedule``, ...), and failures come back as the exceptions
the Engine raises (``RunNotFoundError``, ``ConflictError``, ``PayloadValidationError``, ...),
so code written against :class:`Backend` runs on an Engine or on a client::

    async with AsyncClient("http://127.0.0.1:8000") as client:
        handle = await client.trigger("refund", {"order_id": "ord_1"})
        run = await client.wait(handle.id, timeout=60)

The API key defaults to ``AGENTFLOW_API_KEY`` and is sent as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

from .async_client import AsyncClient, AsyncRemoteRun, AsyncScheduleClient
from .errors import ApiConnectionError, ApiError, RequestValidationError
from .protocols import Backend, Handle, ScheduleBackend
from .sync_client import Client, RemoteRun, ScheduleClient

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "AsyncRemoteRun",
    "AsyncScheduleClient",
    "Backend",
    "Client",
    "Handle",
    "RemoteRun",
    "RequestValidationError",
    "ScheduleBackend",
    "ScheduleClient",
]
