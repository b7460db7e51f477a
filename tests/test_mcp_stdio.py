"""``agentflow mcp APP`` as a real subprocess, driven by the SDK's stdio client.

The subprocess serves the MCP server on its pipes; a worker in the test process, on the same
database, executes the runs it starts (as ``agentflow worker`` would next to it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from agentflow import Engine

from ._support import eventually, running_worker
from .apps.mcp_app import WORKFLOWS

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("agentflow")
AGENTFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentflow.cli"]
APP = "tests.apps.mcp_app:engine"


def mcp_command(database_url: str, *options: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=AGENTFLOW[0],
        args=[*AGENTFLOW[1:], "mcp", APP, *options],
        env={**os.environ, "AGENTFLOW_DATABASE_URL": database_url},
        cwd=REPO,
    )


async def test_stdio_trigger_approve_complete(
    make_engine: Callable[..., Engine], database_url: str
) -> None:
    engine = make_engine(WORKFLOWS)
    async with running_worker(engine), Client(mcp_command(database_url)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"trigger_workflow", "get_run", "approve_run", "refund_order"} <= set(tools)
        assert tools["refund_order"].input_schema["required"] == ["order_id", "amount_cents"]
        assert tools["get_run"].output_schema is not None

        started = await client.call_tool("refund_order", {"order_id": "s1", "amount_cents": 3})
        assert not started.is_error, started.content
        assert isinstance(started.structured_content, dict)
        run_id = started.structured_content["run_id"]
        assert started.structured_content["status"] == "waiting"

        decision = await client.call_tool("approve_run", {"run_id": run_id, "approver": "cli"})
        assert not decision.is_error, decision.content

        async def completed() -> dict[str, Any] | None:
            got = await client.call_tool("get_run", {"run_id": run_id})
            run: dict[str, Any] = got.structured_content["run"]
            return run if run["status"] == "completed" else None

        run = await eventually(completed, timeout=20, what="the run to complete")
        assert run["output"] == {"status": "refunded", "order_id": "s1", "by": "cli"}

        invalid = await client.call_tool(
            "trigger_workflow", {"workflow": "refund_order", "payload": {"amount_cents": 1}}
        )
        assert invalid.is_error
        assert "order_id" in invalid.content[0].text  # type: ignore[union-attr]


async def test_stdio_read_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with Client(mcp_command(url, "--read-only")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"list_workflows", "get_run", "list_runs", "get_run_logs"}
