"""The ``agentflow`` command line with ``--server``: real CLI subprocesses calling a uvicorn
server that runs, with a worker, in the test process.

The CLI gets no APP and a database URL it cannot open, so everything it does goes over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow import Engine, RunStatus

from ._support import eventually, running_worker
from .apps import cli_app
from .test_cli import APP, CLI, Result
from .test_client import closed_port_url, serving

pytestmark = pytest.mark.anyio

EXPENSE = {"item": "laptop", "amount": 1200}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(f"sqlite:///{tmp_path / 'server.db'}", cli_app.engine.workflows.values())
    yield engine
    await engine.close()


@pytest.fixture
async def url(engine: Engine) -> AsyncIterator[str]:
    async with serving(engine) as url, running_worker(engine):
        yield url


class RemoteCLI(CLI):
    """The CLI with ``--server URL`` after the arguments (click takes options anywhere)."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        super().__init__(f"sqlite:///{tmp_path / 'missing' / 'never-opened.db'}")
        self.url = url

    async def remote(self, *args: str, code: int | None = 0) -> Result:
        return await self(*args, "--server", self.url, code=code)


@pytest.fixture
def cli(url: str, tmp_path: Path) -> RemoteCLI:
    return RemoteCLI(url, tmp_path)


async def test_trigger_approve_show_and_list(cli: RemoteCLI, engine: Engine) -> None:
    triggered = (await cli.remote("trigger", "expense", "-p", json.dumps(EXPENSE), "--json")).json()
    run_id = triggered["id"]
    assert (triggered["created"], triggered["workflow_id"]) == (True, "expense")
    await eventually(lambda: engine.pending_approvals(run_id), what="the approval")

    shown = (await cli.remote("runs", "show", run_id, "--json")).json()
    [approval] = shown["pending_approvals"]
    assert (approval["name"], approval["data"]) == ("manager", EXPENSE)
    text = (await cli.remote("runs", "show", run_id)).stdout
    assert f"agentflow approve --server {cli.url} {run_id} manager" in text

    decision = await cli.remote("approve", run_id, "manager", "--approver", "alice", "--json")
    assert decision.json()["status"] == "approved"

    done = await cli.remote("trigger", "greet", "-p", '{"name": "ann"}', "--wait", "--json")
    assert done.json()["output"] == {"greeting": "hello ann"}
    await eventually(lambda: _completed(engine, run_id), what="the approved run to complete")

    statuses = ("-s", "completed", "-s", "waiting")
    listed = (await cli.remote("runs", "list", *statuses, "--json")).json()
    assert {r["id"] for r in listed} == {run_id, done.json()["id"]}
    assert (await engine.get_run(run_id)).output["approver"] == "alice"


async def _completed(engine: Engine, run_id: str) -> bool:
    return (await engine.get_run(run_id)).status is RunStatus.COMPLETED


async def test_errors_and_usage(cli: RemoteCLI) -> None:
    unknown = await cli.remote("runs", "show", "run_nope", code=1)
    assert unknown.stderr.strip() == "error: no run with id 'run_nope'"
    bad = await cli.remote("trigger", "greet", "--payload", '{"times": "many"}', "--json", code=2)
    error = json.loads(bad.stderr)["error"]
    assert (error["code"], [e["field"] for e in error["errors"]]) == (
        "invalid_payload",
        ["name", "times"],
    )
    assert "missing argument WORKFLOW" in (await cli.remote("trigger", code=2)).stderr
    assert "missing APP" in (await cli("runs", "list", code=2)).stderr
    both = await cli.remote("runs", "list", APP, code=2)
    assert "either APP or --server" in both.stderr

    offline = closed_port_url()
    down = await cli("runs", "list", "--server", offline, code=1)
    assert down.stderr.startswith(f"error: cannot reach the agentflow server at {offline}")

    # AGENTFLOW_SERVER stands for --server.
    cli.env["AGENTFLOW_SERVER"] = cli.url
    assert (await cli("runs", "list", "--json")).json() == []
    both = await cli("runs", "list", APP, code=2)
    assert "AGENTFLOW_SERVER is set" in both.stderr


async def test_schedules_events_and_repairs(cli: RemoteCLI, engine: Engine) -> None:
    created = await cli.remote(
        "schedules", "create", "greet", "0 9 * * 1-5", "-z", "Europe/Paris",
        "-p", '{"name": "team"}', "--id", "daily", "--json",
    )  # fmt: skip
    assert created.json()["timezone"] == "Europe/Paris"
    listed = (await cli.remote("schedules", "list", "--json")).json()
    assert [s["id"] for s in listed] == ["daily"]
    assert (await cli.remote("schedules", "pause", "daily", "--json")).json()["paused"] is True
    assert "resumed schedule daily" in (await cli.remote("schedules", "resume", "daily")).stdout
    assert (await cli.remote("schedules", "delete", "daily", "--json")).json() == {
        "deleted": "daily"
    }
    assert (await engine.schedules.list()) == []

    waiting = (await engine.trigger("await_event")).id
    await eventually(lambda: engine.list_waitpoints(run_id=waiting, status="pending"))
    sent = await cli.remote("events", "send", "go", "-p", '{"n": 1}', "--id", "e1", "--json")
    assert sent.json()["resumed_runs"] == 1

    delayed = [(await engine.trigger("greet", {"name": n}, delay=3600)).id for n in "ab"]
    assert f"cancelled run {delayed[0]}" in (await cli.remote("runs", "cancel", delayed[0])).stdout
    cancelled = await cli.remote("runs", "cancel-many", "-w", "greet", "-s", "delayed", "--json")
    assert cancelled.json()["cancelled"] == delayed[1:]
    replayed = (await cli.remote("runs", "replay", delayed[0], "--json")).json()
    assert replayed["metadata"]["replay_of"] == delayed[0]
    many = await cli.remote("runs", "replay-many", "-s", "cancelled", "--json")
    assert len(many.json()["started"]) == 2

    failed = (await engine.trigger("broken")).id
    await engine.wait(failed, timeout=20)
    forked = (await cli.remote("runs", "fork", failed, "--from-step", "1", "--json")).json()
    assert forked["metadata"]["forked_from"] == {"run_id": failed, "from_step": 1}
