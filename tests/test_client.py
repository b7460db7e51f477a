"""``agentflow.client`` against a real uvicorn server on a loopback socket, with a worker.

The server and the worker run in the test's event loop; the blocking ``Client`` runs in a
worker thread so that the loop stays free to answer it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from agentflow import Engine, RunStatus
from agentflow.api import create_app
from agentflow.client import (
    ApiConnectionError,
    ApiError,
    AsyncClient,
    AsyncRemoteRun,
    Backend,
    Client,
    RequestValidationError,
)
from agentflow.errors import (
    ApprovalError,
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    PayloadValidationError,
    RunFailedError,
    RunNotFoundError,
    WaitTimeoutError,
    WorkflowNotFoundError,
)
from agentflow.models import Run
from agentflow.schedules import Schedule, ScheduleError, ScheduleNotFoundError

from ._support import eventually, running_worker
from ._support import serving as serve_app
from .apps import cli_app

pytestmark = pytest.mark.anyio

EXPENSE = {"item": "laptop", "amount": 1200}


@asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[str]:
    """The engine's HTTP API on a free loopback port; yields its URL."""
    async with serve_app(create_app(engine, auth=False)) as url:
        yield url


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(cli_app.engine.workflows.values())


@pytest.fixture
async def url(engine: Engine) -> AsyncIterator[str]:
    async with serving(engine) as url, running_worker(engine):
        yield url


@pytest.fixture
async def client(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url) as client:
        yield client


async def pending(client: AsyncClient, run_id: str) -> Any:
    return await eventually(
        lambda: client.pending_approvals(run_id), what=f"run {run_id} to ask for approval"
    )


async def test_trigger_approve_and_wait(client: AsyncClient) -> None:
    handle = await client.trigger("expense", EXPENSE, tags=["remote"])
    assert isinstance(handle, AsyncRemoteRun)
    assert handle.created is True
    [approval] = await pending(client, handle.id)
    assert (approval.name, approval.data, approval.kind) == ("manager", EXPENSE, "approval")
    assert (await handle.get()).status is RunStatus.WAITING

    edited = {"item": "laptop", "amount": 1000}
    decision = await client.approve(handle.id, "manager", approver="alice", data=edited)
    assert (decision.approved, decision.edited, decision.approver) == (True, True, "alice")

    run = await client.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED
    assert run.tags == ["remote"]
    assert run.output == {"approved": True, "approver": "alice", "comment": None, "data": edited}
    assert await handle.result() == run.output

    # By token, rejecting; the same approval answered twice is the engine's conflict error.
    second = await client.trigger("expense", EXPENSE)
    [approval] = await pending(client, second.id)
    rejected = await client.reject(token=approval.token, comment="too much")
    assert (rejected.status, rejected.comment) == ("rejected", "too much")
    with pytest.raises(ApprovalError):
        await client.approve(token=approval.token)
    assert (await second.wait(timeout=20)).output["approved"] is False


async def test_errors_map_to_the_engine_exceptions(client: AsyncClient) -> None:
    with pytest.raises(RunNotFoundError) as missing:
        await client.get_run("run_nope")
    assert missing.value.run_id == "run_nope"
    with pytest.raises(WorkflowNotFoundError) as unknown:
        await client.trigger("nope")
    assert unknown.value.available == ["await_event", "broken", "expense", "gated", "greet"]
    with pytest.raises(PayloadValidationError) as invalid:
        await client.trigger("greet", {"times": "many"})
    assert invalid.value.fields == ["name", "times"]
    with pytest.raises(RequestValidationError) as refused:
        await client.trigger("greet", {"name": "ann"}, delay=-1)
    assert (refused.value.status, refused.value.fields) == (422, ["delay"])
    with pytest.raises(InvalidCursorError):
        await client.page_runs(cursor="bogus")

    queued = await client.trigger("greet", {"name": "ann"}, delay=3600)
    with pytest.raises(WaitTimeoutError) as waited:
        await client.wait(queued.id, timeout=0)
    assert waited.value.run_id == queued.id
    assert (await client.cancel(queued.id)).status is RunStatus.CANCELLED
    with pytest.raises(ConflictError):
        await client.cancel(queued.id)
    with pytest.raises(RunFailedError):
        await queued.result()
    with pytest.raises(NotFoundError):
        await client.approve(token="tok_nope")
    with pytest.raises(ValueError, match="run_id and name, or by token"):
        await client.approve("run_x")

    with pytest.raises(ApiConnectionError) as down:
        async with AsyncClient(closed_port_url()) as offline:
            await offline.get_run("run_x")
    assert down.value.url in down.value.message


async def test_reads_bulk_and_repair(client: AsyncClient) -> None:
    greeted = await client.trigger("greet", {"name": "ann", "times": 2})
    assert (await greeted.result(timeout=20)) == {"greeting": "hello ann hello ann"}
    [step] = await client.get_steps(greeted.id)
    assert (step.name, step.status) == ("compose", "completed")
    [log] = await client.get_logs(greeted.id)
    assert log.message == "greeted"
    assert await client.get_logs(greeted.id, after_id=log.id) == []

    broken = await client.trigger("broken")
    assert (await broken.wait(timeout=20)).status is RunStatus.FAILED
    errors = await client.get_errors(broken.id)
    assert errors
    assert all("out of flux" in e.message for e in errors)
    forked = await client.fork(broken.id, from_step="explode")
    assert (await forked.get()).metadata["forked_from"] == {"run_id": broken.id, "from_step": 1}
    with pytest.raises(NotFoundError):
        await client.fork(broken.id, from_step="nope")

    waiting = await client.trigger("await_event")
    await eventually(
        lambda: client.list_waitpoints(run_id=waiting.id, kind="event", status="pending")
    )
    event = await client.send_event("go", {"n": 1}, id="e1")
    assert (event.resumed_runs, event.duplicate) == (1, False)
    assert (await waiting.result(timeout=20)) == {"n": 1}
    assert (await client.send_event("go", {"n": 1}, id="e1")).duplicate is True

    ended = await client.list_runs(status=["failed", RunStatus.COMPLETED], limit=10)
    assert {r.id for r in ended} >= {greeted.id, broken.id, waiting.id}
    assert [r.created_at for r in ended] == sorted((r.created_at for r in ended), reverse=True)
    first = await client.page_runs(limit=1)
    second = await client.page_runs(limit=1, cursor=first.next_cursor)
    assert first.items[0].id != second.items[0].id

    delayed = [(await client.trigger("greet", {"name": n}, delay=3600)).id for n in "ab"]
    assert sorted(await client.cancel_many(workflow="greet", status="delayed")) == sorted(delayed)
    replayed = await client.replay(delayed[0])
    assert (await replayed.get()).metadata["replay_of"] == delayed[0]
    many = await client.replay_many(workflow="greet", status="cancelled")
    assert len(many) == 2
    assert {(await h.get()).payload["name"] for h in many} == {"a", "b"}

    [info] = [w for w in await client.list_workflows() if w.id == "greet"]
    assert info.payload_schema["required"] == ["name"]


async def test_schedules(client: AsyncClient) -> None:
    created = await client.schedules.create(
        "greet", "0 9 * * 1-5", timezone="Europe/Paris", payload={"name": "team"}, id="daily"
    )
    assert isinstance(created, Schedule)
    assert (created.id, created.payload["name"], created.missed) == ("daily", "team", "latest")
    assert await client.schedules.get("daily") == created
    assert [s.id for s in await client.schedules.list("greet")] == ["daily"]
    assert (await client.schedules.pause("daily")).paused is True
    assert (await client.schedules.resume("daily")).paused is False
    await client.schedules.delete("daily")
    assert await client.schedules.list() == []

    with pytest.raises(ScheduleError):
        await client.schedules.create("greet", "not a cron", payload={"name": "x"})
    with pytest.raises(ScheduleNotFoundError) as missing:
        await client.schedules.pause("daily")
    assert missing.value.schedule_id == "daily"
    await client.schedules.create("greet", "@daily", payload={"name": "x"}, id="twice")
    with pytest.raises(ConflictError):
        await client.schedules.create("greet", "@daily", payload={"name": "x"}, id="twice")


async def test_engine_and_client_are_interchangeable(engine: Engine, client: AsyncClient) -> None:
    async def greet(backend: Backend, name: str) -> Run:
        handle = await backend.trigger("greet", {"name": name})
        return await backend.wait(handle.id, timeout=20)

    local, remote = await greet(engine, "local"), await greet(client, "remote")
    assert type(local) is type(remote) is Run
    assert local.output == {"greeting": "hello local"}
    assert remote.output == {"greeting": "hello remote"}


async def test_blocking_client(engine: Engine, url: str) -> None:
    with Client(url) as client:
        handle = await anyio.to_thread.run_sync(lambda: client.trigger("expense", EXPENSE))
        await eventually(lambda: engine.pending_approvals(handle.id))
        [approval] = await anyio.to_thread.run_sync(client.pending_approvals, handle.id)

        def approve_and_wait() -> Run:
            client.approve(token=approval.token, approver="bob")
            return handle.wait(timeout=20)

        run = await anyio.to_thread.run_sync(approve_and_wait)
        assert (run.status, run.output["approver"]) == (RunStatus.COMPLETED, "bob")

        def errors() -> None:
            with pytest.raises(RunNotFoundError):
                client.get_run("run_nope")
            with pytest.raises(ConflictError):
                client.cancel(run.id)
            with pytest.raises(ScheduleError):
                client.schedules.create("greet", "* * *", payload={"name": "x"})

        await anyio.to_thread.run_sync(errors)


def refused(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> ApiError:
    """The error a blocking client raises for an answer from ``handler``."""
    transport = httpx.MockTransport(handler)
    with (
        Client("http://agentflow.test", transport=transport, **options) as client,
        pytest.raises(ApiError) as raised,
    ):
        client.list_workflows()
    return raised.value


def test_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        error = {"code": "unauthorized", "message": "invalid API key", "details": {}}
        return httpx.Response(401, json={"error": error})

    monkeypatch.setenv("AGENTFLOW_API_KEY", "from-env")
    error = refused(handler)
    assert (error.status, error.code, error.message) == (401, "unauthorized", "invalid API key")
    refused(handler, api_key="explicit")
    monkeypatch.delenv("AGENTFLOW_API_KEY")
    refused(handler)
    assert seen == ["Bearer from-env", "Bearer explicit", None]


def test_an_error_body_from_elsewhere_is_an_api_error() -> None:
    error = refused(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    assert (error.status, error.code) == (502, "http_error")
    assert "GET http://agentflow.test/api/v1/workflows" in error.message


async def test_logs_are_fetched_a_page_at_a_time(
    client: AsyncClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.client import _requests, async_client, sync_client

    for module in (_requests, async_client, sync_client):
        monkeypatch.setattr(module, "LOG_PAGE", 1)
    runs = [await client.trigger("greet", {"name": n}) for n in ("a", "b")]
    for run in runs:
        await run.wait(timeout=20)
    [log] = await client.get_logs(runs[0].id)  # one full page, then an empty one
    assert log.fields == {"name": "a"}
    async with httpx.AsyncClient(base_url=url) as http:
        page = await http.get(f"/api/v1/runs/{runs[1].id}/logs", params={"limit": 1})
        assert [e["message"] for e in page.json()["items"]] == ["greeted"]
        assert (await http.get(f"/api/v1/runs/{runs[1].id}/logs?limit=0")).status_code == 422
