"""Live updates over Server-Sent Events, on a real socket, while a separate worker process
executes the runs; reconnecting with Last-Event-ID misses nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from agentflow import Engine
from agentflow.api import create_app

from ._support import eventually
from ._support import serving as serve_app
from .apps import live_app
from .test_cli import CLI

pytestmark = pytest.mark.anyio

WORKER = ("worker", "tests.apps.live_app:engine", "--poll-interval", "0.05")


@dataclass
class Event:
    id: str
    kind: str
    data: Any


@asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """The API (auth on) on a free port, and a client holding a read-only key for it."""
    secret = (await engine.api_keys.create("live tests", scope="read")).secret
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        serve_app(create_app(engine, live_interval=0.05)) as url,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as client,
    ):
        yield client


@asynccontextmanager
async def events(
    client: httpx.AsyncClient, path: str, last_id: str | None = None
) -> AsyncIterator[AsyncIterator[Event]]:
    """The events of an SSE endpoint, parsed as they arrive."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")

        async def parse() -> AsyncIterator[Event]:
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in fields:
                        yield Event(fields["id"], fields["event"], json.loads(fields["data"]))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

        yield parse()


async def collect(stream: AsyncIterator[Event], until: Any, timeout: float = 20) -> list[Event]:
    seen: list[Event] = []
    with anyio.fail_after(timeout):
        async for event in stream:
            seen.append(event)
            if until(event):
                return seen
    raise AssertionError(f"stream ended before the condition; got {seen}")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    engine = Engine(database_url, list(live_app.engine.workflows.values()))
    async with engine:
        yield engine


@asynccontextmanager
async def worker_process(database_url: str) -> AsyncIterator[None]:
    async with CLI(database_url).background(*WORKER) as process:
        await process.expect("ready")
        yield


async def test_run_stream_follows_a_run_executed_by_another_process(
    engine: Engine, database_url: str
) -> None:
    async with serving(engine) as client, worker_process(database_url):
        run = await engine.trigger("chatty", "sse")
        async with events(client, f"/api/v1/runs/{run.id}/events") as stream:
            first = await collect(
                stream, lambda e: e.kind == "run" and e.data["status"] == "waiting"
            )
            await engine.send_event("go", {"topic": "sse"})
            rest = await collect(stream, lambda e: e.kind == "end")
    seen = first + rest
    kinds = {e.kind for e in seen}
    assert kinds == {"run", "step", "log", "stream", "end"}
    steps = [e.data["name"] for e in seen if e.kind == "step"]
    assert steps[0] == "draft"
    assert steps[-1] == "polish"
    assert [e.data["message"] for e in seen if e.kind == "log"] == ["drafted", "polished"]
    assert "".join(e.data["data"] for e in seen if e.kind == "stream") == "about sse"
    statuses = [e.data["status"] for e in seen if e.kind == "run"]
    assert statuses[-1] == "completed"
    assert "waiting" in statuses
    final = next(e for e in reversed(seen) if e.kind == "run")
    assert final.data["output"] == "ABOUT SSE"
    assert final.data["metadata"] == {"progress": 100}
    assert seen[-1].data == {"run_id": run.id, "status": "completed"}
    changes = [e.id for e in seen if e.kind != "end"]
    assert len(set(changes)) == len(changes)  # every change has its own id


async def test_reconnecting_with_last_event_id_misses_nothing(
    engine: Engine, database_url: str
) -> None:
    async with serving(engine) as client, worker_process(database_url):
        run = await engine.trigger("chatty", "resume")
        path = f"/api/v1/runs/{run.id}/events"
        # Read until the run waits and its log and last chunk were seen: logs are saved with
        # the run's next write, so they may come after the chunks.
        seen: set[str] = set()

        def waiting_with_all_output(e: Event) -> bool:
            if e.kind == "stream" and e.data["data"] == "resume":
                seen.add("chunk")
            elif e.kind == "log":
                seen.add("log")
            elif e.kind == "run" and e.data["status"] == "waiting":
                seen.add("waiting")
            return seen == {"chunk", "log", "waiting"}

        async with events(client, path) as stream:
            before = await collect(stream, waiting_with_all_output)
        # Disconnected: the run goes on without us (once it waits, so the event is not early).
        await eventually(
            lambda: engine.list_waitpoints(run_id=run.id, kind="event", status="pending"),
            what="the run to wait for its event",
        )
        await engine.send_event("go", {"topic": "resume"})
        await engine.wait(run.id, timeout=20)
        async with events(client, path, last_id=before[-1].id) as stream:
            after = await collect(stream, lambda e: e.kind == "end")
    new_logs = [e.data["message"] for e in after if e.kind == "log"]
    assert new_logs == ["polished"]  # each log once: the one missed, not those seen
    assert not [e for e in after if e.kind == "stream"]
    steps = {e.data["seq"]: e.data["name"] for e in before + after if e.kind == "step"}
    assert sorted(steps.values()) == ["draft", "polish"]
    assert "polish" in [e.data["name"] for e in after if e.kind == "step"]
    assert [e.data["status"] for e in after if e.kind == "run"] == ["completed"]


async def test_runs_feed_reports_changes_and_resumes(engine: Engine, database_url: str) -> None:
    feed = "/api/v1/runs/events?workflow=quick"
    async with serving(engine) as client, worker_process(database_url):
        async with events(client, feed) as stream:
            # The feed starts "from now", so the runs are triggered once it is connected:
            # its first event (the keep-alive retry hint) has been read by then.
            ids = [(await engine.trigger("quick", n)).id for n in range(3)]
            seen = await until_completed(stream, set(ids))
        assert all(e.kind == "run" and e.data["workflow_id"] == "quick" for e in seen)

        await engine.trigger("chatty", "not-in-this-feed")
        missed = [(await engine.trigger("quick", n)).id for n in (10, 11)]
        for run_id in missed:
            await engine.wait(run_id, timeout=20)
        async with events(client, feed, last_id=seen[-1].id) as stream:
            resumed = await until_completed(stream, set(missed))
    assert all(e.data["workflow_id"] == "quick" for e in resumed)


async def until_completed(stream: AsyncIterator[Event], wanted: set[str]) -> list[Event]:
    """Events until every run in ``wanted`` was reported completed."""
    got: set[str] = set()

    def check(e: Event) -> bool:
        if e.data["status"] == "completed" and e.data["id"] in wanted:
            got.add(e.data["id"])
        return got == wanted

    return await collect(stream, check)


async def test_unknown_run_and_bad_query_are_plain_errors(engine: Engine) -> None:
    async with serving(engine) as client:
        missing = await client.get("/api/v1/runs/run_nope/events")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "run_not_found"
        bad = await client.get("/api/v1/runs/events?status=sleepy")
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]["errors"][0]["field"] == "status"


async def test_runs_feed_pages_through_a_burst_of_changes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.api import live

    monkeypatch.setattr(live, "PAGE", 5)  # a burst of 12 changes spans three pages
    async with serving(engine) as client, events(client, "/api/v1/runs/events") as stream:
        burst = [(await engine.trigger("quick", n)).id for n in range(12)]
        got: set[str] = set()

        def every(wanted: list[str]) -> Any:
            def check(e: Event) -> bool:
                got.add(e.data["id"])
                return set(wanted) <= got

            return check

        await collect(stream, every(burst))
        later = (await engine.trigger("quick", 99)).id
        await collect(stream, every([later]))


async def test_a_failing_database_ends_the_stream_with_an_error_event(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.errors import StorageUnavailableError

    run = await engine.trigger("quick", 1)

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailableError(engine.database_url, OSError("disk gone"))

    async with serving(engine) as client, events(client, f"/api/v1/runs/{run.id}/events") as stream:
        first = await collect(stream, lambda e: e.kind == "run")
        monkeypatch.setattr(engine, "get_run", down)
        failed = await collect(stream, lambda e: e.kind == "error")
    assert first[0].data["id"] == run.id
    assert failed[-1].data["code"] == "storage_unavailable"
