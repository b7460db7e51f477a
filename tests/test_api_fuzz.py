"""Schema-driven fuzzing: schemathesis generates requests from /openapi.json against a real
server; no request may cause a 5xx, and every error uses the one error body."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from agentflow import Engine
from agentflow.api import create_app
from agentflow.api.app import OPERATIONS
from agentflow.api.live import live_openapi
from agentflow.api.openapi import openapi_document

from .apps import cli_app

# Endless by design (a live feed); its errors are covered in test_api_live.
ENDLESS = "/api/v1/runs/events"


class Server:
    """The API on a free loopback port, served from a thread with its own event loop."""

    def __init__(self, database: Path) -> None:
        self.engine = Engine(f"sqlite:///{database}", list(cli_app.engine.workflows.values()))
        self.secret = asyncio.run(self._key())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(self.engine)
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="error"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})

    async def _key(self) -> str:
        return (await self.engine.api_keys.create("fuzz")).secret

    def __enter__(self) -> Server:
        self.thread.start()
        started = threading.Event()
        while not self.server.started and self.thread.is_alive():
            started.wait(0.01)
        assert self.server.started, "the API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("fuzz") / "agentflow.db") as server:
        yield server


def _operations() -> dict[str, Any]:
    document = openapi_document(OPERATIONS, extra_paths=live_openapi())
    loaded = schemathesis.openapi.from_dict(document)
    found = (result.ok() for result in loaded.get_all_operations())
    return {op.label: op for op in found if op.path != ENDLESS}


OPERATIONS_BY_LABEL = _operations()


@pytest.mark.parametrize("label", sorted(OPERATIONS_BY_LABEL))
def test_no_request_causes_a_server_error(label: str, server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.secret}"}

    @given(case=OPERATIONS_BY_LABEL[label].as_strategy())
    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case: Any) -> None:
        response = case.call(base_url=server.url, headers=auth, timeout=10)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
        )
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"code", "message", "details"}
            assert error["message"]

    check()
