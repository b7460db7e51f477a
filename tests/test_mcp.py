"""The MCP server in process, through the SDK's own client: tools and their schemas, errors a
model can act on, workflows as tools, run resources and their change notifications, the tasks
extension and read-only mode; and the edges: notifications through database errors, races
and legacy sessions, argument bounds, workflow ids that cannot be tool names, log pages, and
malformed task answers. Every test runs on SQLite, and on Postgres when configured."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, Subscription
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    ResourceUpdatedNotification,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsListenRequestParams,
)

from agentflow import Engine, RunContext, RunStatus, workflow
from agentflow.api import create_app
from agentflow.errors import StorageUnavailableError
from agentflow.limits import MAX_DELAY
from agentflow.models import Run
from mcp_server import TASKS_EXTENSION, build_server
from mcp_server.listen import MAX_TASK_IDS, ListenStreams
from mcp_server.tasks import Tasks
from mcp_server.tools import TOOL_NAMES
from mcp_server.watch import RunWatcher

from ._support import eventually, running_worker
from .apps.mcp_app import WORKFLOWS, Refund, refund_order
from .apps.mcp_client import (
    AnyResult,
    CreateTaskResult,
    ListenRequest,
    TasksClient,
    listening,
    next_push,
    task_request,
)

pytestmark = pytest.mark.anyio

READ_TOOLS = {"list_workflows", "get_run", "list_runs", "get_run_logs"}
WRITE_TOOLS = {"trigger_workflow", "approve_run", "reject_run", "cancel_run", "send_event"}
WORKFLOW_TOOLS = {"refund_order", "greet", "add", "await_event"}


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(WORKFLOWS)


@asynccontextmanager
async def connect(engine: Engine, **options: Any) -> AsyncIterator[Client]:
    options.setdefault("wait_seconds", 5.0)
    options.setdefault("watch_interval", 0.05)
    tasks = options.pop("tasks", False)
    extensions = [tasks if isinstance(tasks, TasksClient) else TasksClient()] if tasks else None
    on_message = options.pop("message_handler", None)
    server = build_server(engine, **options)
    async with Client(server, extensions=extensions, message_handler=on_message) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content (and the same JSON as text)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    text = result.content[0]
    assert text.type == "text"
    assert json.loads(text.text) == result.structured_content
    return result.structured_content


async def failure(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must fail with a tool error; the error object."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert isinstance(result.structured_content, dict)
    error: dict[str, Any] = result.structured_content["error"]
    return error


async def status_of(engine: Engine, run_id: str) -> RunStatus:
    return (await engine.get_run(run_id)).status


# -- tools ------------------------------------------------------------------------------------


async def test_tools_have_input_and_output_schemas_and_annotations(engine: Engine) -> None:
    async with connect(engine) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == READ_TOOLS | WRITE_TOOLS | WORKFLOW_TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert tool.description
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (tool.name in READ_TOOLS), tool.name
    assert tools["cancel_run"].annotations
    assert tools["cancel_run"].annotations.destructive_hint
    assert tools["get_run"].annotations
    assert tools["get_run"].annotations.idempotent_hint
    trigger = tools["trigger_workflow"].input_schema
    assert trigger["required"] == ["workflow"]
    assert {"payload", "idempotency_key", "wait_seconds"} <= set(trigger["properties"])
    refund = tools["refund_order"]
    assert refund.input_schema["required"] == ["order_id", "amount_cents"]
    assert refund.input_schema["properties"]["amount_cents"]["exclusiveMinimum"] == 0
    assert refund.description
    assert refund.description.startswith("Refund an order")
    # A payload that is not an object is the tool's single argument "payload".
    assert tools["add"].input_schema["required"] == ["payload"]
    assert tools["add"].input_schema["properties"]["payload"]["type"] == "array"


async def test_trigger_wait_for_approval_approve_complete(engine: Engine) -> None:
    async with running_worker(engine), connect(engine) as client:
        started = await call(
            client,
            "trigger_workflow",
            workflow="refund_order",
            payload={"order_id": "ord_1", "amount_cents": 4999},
            wait_seconds=10,
        )
        run_id = started["run"]["id"]
        assert started["created"] is True
        assert started["run"]["status"] == "waiting"
        [approval] = started["pending_approvals"]
        assert approval["name"] == "refund"
        assert approval["data"] == {"order_id": "ord_1", "amount_cents": 4999}

        # The run waits for just one approval: the name may be left out.
        decision = await call(client, "approve_run", run_id=run_id, approver="alice")
        assert decision["approved"] is True

        async def completed() -> dict[str, Any] | None:
            detail = await call(client, "get_run", run_id=run_id, include_steps=True)
            return detail if detail["run"]["status"] == "completed" else None

        detail = await eventually(completed, what="the run to complete")
        assert detail["run"]["output"] == {"status": "refunded", "order_id": "ord_1", "by": "alice"}
        assert detail["pending_approvals"] == []
        assert detail["steps"] == []  # waits are not steps: this workflow has none
        logs = await call(client, "get_run_logs", run_id=run_id)
        assert [e["message"] for e in logs["items"]] == ["decided"]
        runs = await call(client, "list_runs", workflow="refund_order")
        assert [r["id"] for r in runs["items"]] == [run_id]
        workflows = await call(client, "list_workflows")
        refund = next(w for w in workflows["items"] if w["id"] == "refund_order")
        assert refund["tool"] == "refund_order"
        assert refund["payload_schema"]["required"] == ["order_id", "amount_cents"]


async def test_errors_name_what_was_wrong(engine: Engine) -> None:
    async with connect(engine, wait_seconds=0) as client:
        error = await failure(
            client, "trigger_workflow", workflow="refund_order", payload={"order_id": 7}
        )
        assert error["code"] == "invalid_payload"
        assert {e["field"] for e in error["errors"]} == {"order_id", "amount_cents"}
        assert "amount_cents" in error["message"]

        error = await failure(client, "refund_order", order_id="ord_1", amount_cents=-5)
        assert error["code"] == "invalid_payload"
        assert [e["field"] for e in error["errors"]] == ["amount_cents"]

        error = await failure(client, "trigger_workflow", workflow="refnud")
        assert error["code"] == "workflow_not_found"
        assert error["available"] == ["add", "await_event", "greet", "refund_order"]

        error = await failure(client, "get_run", run_id="run_missing")
        assert error["code"] == "run_not_found"

        error = await failure(client, "get_run", id="run_missing")
        assert error["code"] == "invalid_arguments"
        assert {e["field"] for e in error["errors"]} == {"run_id", "id"}

        error = await failure(client, "approve_run", approver="bob")
        assert error["code"] == "invalid_arguments"

        with pytest.raises(MCPError, match="unknown tool 'nope'"):
            await client.call_tool("nope", {})

        # Approving twice: the first decision stands.
        run = (await call(client, "refund_order", order_id="o", amount_cents=1))["run_id"]
        assert await status_of(engine, run) is RunStatus.QUEUED  # no worker: it stays queued
        error = await failure(client, "approve_run", run_id=run)
        assert error["code"] == "not_found"


async def test_workflow_tools_return_the_output_or_the_run_id(engine: Engine) -> None:
    async with running_worker(engine), connect(engine) as client:
        done = await call(client, "greet", name="ada")
        assert done["status"] == "completed"
        assert done["finished"] is True
        assert done["output"] == {"greeting": "hello ada"}
        assert (await call(client, "add", payload=[1, 2, 3]))["output"] == 6

        paused = await call(client, "await_event")
        assert paused["status"] == "waiting"
        assert paused["finished"] is False
        assert "get_run" in paused["message"]
        event = await call(client, "send_event", name="go", payload={"n": 1})
        assert event["resumed_runs"] == 1
        cancelled = await call(client, "refund_order", order_id="o", amount_cents=5)
        run = await call(client, "cancel_run", run_id=cancelled["run_id"])
        assert run["status"] == "cancelled"
        assert (await engine.wait(paused["run_id"], timeout=10)).output == {"n": 1}

    async with connect(engine, workflow_tools=["greet"]) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == READ_TOOLS | WRITE_TOOLS | {"greet"}
    with pytest.raises(ValueError, match="available workflows: add, await_event"):
        build_server(engine, workflow_tools=["refnud"])


# -- resources --------------------------------------------------------------------------------


async def test_runs_are_resources_and_subscribers_hear_of_changes(engine: Engine) -> None:
    async with running_worker(engine), connect(engine) as client:
        run_id = (await call(client, "refund_order", order_id="o1", amount_cents=10))["run_id"]
        uri = f"agentflow://runs/{run_id}"
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "agentflow://runs/{run_id}",
            "agentflow://runs/{run_id}/steps",
            "agentflow://runs/{run_id}/logs",
        }
        assert uri in {r.uri for r in (await client.list_resources()).resources}

        contents = (await client.read_resource(uri)).contents[0]
        assert contents.mime_type == "application/json"
        detail = json.loads(contents.text)  # type: ignore[union-attr]
        assert detail["run"]["status"] == "waiting"
        assert detail["pending_approvals"][0]["name"] == "refund"

        with anyio.fail_after(10):
            async with client.listen(resource_subscriptions=[uri, f"{uri}/steps"]) as events:
                await engine.approve(run_id, "refund", approver="bob")
                seen: set[str] = set()
                async for event in events:
                    assert isinstance(event, ResourceUpdated)
                    seen.add(event.uri)
                    if seen == {uri, f"{uri}/steps"}:
                        break
                await engine.wait(run_id, timeout=10)

        steps = json.loads((await client.read_resource(f"{uri}/steps")).contents[0].text)  # type: ignore[union-attr]
        assert steps == {"items": []}
        logs = json.loads((await client.read_resource(f"{uri}/logs")).contents[0].text)  # type: ignore[union-attr]
        assert logs["items"][0]["fields"] == {"approved": True}
        with pytest.raises(MCPError, match="no run"):
            await client.read_resource("agentflow://runs/run_missing")
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("agentflow://elsewhere")


async def test_earlier_protocol_clients_subscribe_with_resources_subscribe(engine: Engine) -> None:
    updated = anyio.Event()
    uris: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            uris.append(message.params.uri)
            updated.set()

    server = build_server(engine, wait_seconds=0, watch_interval=0.05)
    async with Client(server, mode="legacy", message_handler=on_message) as client:
        assert client.protocol_version == "2025-11-25"
        run_id = (await call(client, "refund_order", order_id="o", amount_cents=1))["run_id"]
        uri = f"agentflow://runs/{run_id}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(uri)
        await engine.cancel(run_id)
        with anyio.fail_after(10):
            await updated.wait()
    assert uris == [uri]


# -- change notifications: errors, steps and chunks, races, duplicates, legacy sessions ------

_GATES: dict[str, list[anyio.Event]] = {}


@workflow(id="gated")
async def gated(ctx: RunContext, key: str) -> int:
    """Journals a step, publishes a chunk, journals another: each when the test says so."""

    async def first() -> int:
        await _GATES[key][0].wait()
        return 1

    async def second() -> int:
        await _GATES[key][1].wait()
        await ctx.publish("out", "tick")
        await _GATES[key][2].wait()
        return 2

    return await ctx.step("first", first) + await ctx.step("second", second)


def watcher_of(server: Server[Any]) -> RunWatcher:
    """The server's watcher (its listen handler holds it)."""
    entry = server.get_request_handler("subscriptions/listen")
    assert entry is not None
    handler = entry.handler
    assert isinstance(handler, ListenStreams)
    return handler.watcher


async def next_update(events: Subscription) -> str:
    with anyio.fail_after(10):
        async for event in events:
            if isinstance(event, ResourceUpdated):
                return event.uri
    raise AssertionError("the listen stream ended")


async def queued_run(engine: Engine) -> str:
    return (await engine.trigger("refund_order", {"order_id": "o", "amount_cents": 1})).id


@contextmanager
def failing_reads(
    engine: Engine, times: int, *, run_id: str | None = None
) -> Iterator[anyio.Event]:
    """``engine.get_run`` fails like a database that restarts: ``times`` times (for every
    run, or only ``run_id``); the event is set once it failed that often."""
    real = engine.get_run
    failed = anyio.Event()
    count = 0

    async def get_run(wanted: str) -> Run:
        nonlocal count
        if (run_id is None or wanted == run_id) and count < times:
            count += 1
            if count == times:
                failed.set()
            raise StorageUnavailableError("sqlite://", OSError("the database is restarting"))
        return await real(wanted)

    engine.get_run = get_run  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        del engine.get_run


async def test_database_errors_do_not_stop_the_watcher(engine: Engine) -> None:
    run_id = await queued_run(engine)
    uri = f"agentflow://runs/{run_id}"
    async with Client(build_server(engine, wait_seconds=0, watch_interval=0.02)) as client:
        async with client.listen(resource_subscriptions=[uri]) as events:
            with failing_reads(engine, times=3) as failed, anyio.fail_after(10):
                await failed.wait()  # three polls in a row failed
            await engine.cancel(run_id)
            assert await next_update(events) == uri
        detail = await client.call_tool("get_run", {"run_id": run_id})
        assert not detail.is_error


async def test_one_unreadable_run_does_not_hold_back_the_others(engine: Engine) -> None:
    bad, good = await queued_run(engine), await queued_run(engine)
    announced: list[str] = []

    async def sink(uri: str) -> None:
        announced.append(uri)

    watcher = RunWatcher(engine, InMemorySubscriptionBus())
    await watcher.subscribe([f"agentflow://runs/{bad}", f"agentflow://runs/{good}"], sink)
    with failing_reads(engine, times=1_000_000, run_id=bad):
        await engine.cancel(good)
        await watcher.poll()  # does not raise: one run could still be read
    assert announced == [f"agentflow://runs/{good}"]


async def test_a_change_a_subscriber_failed_to_take_is_announced_again(engine: Engine) -> None:
    run_id = await queued_run(engine)
    uri = f"agentflow://runs/{run_id}"
    calls: list[str] = []

    async def flaky_sink(uri: str) -> None:
        calls.append(uri)
        if len(calls) == 1:
            raise StorageUnavailableError("the database went away for a moment")

    watcher = RunWatcher(engine, InMemorySubscriptionBus())
    await watcher.subscribe([uri], flaky_sink)
    await engine.cancel(run_id)
    await watcher.poll()  # the sink fails: logged, not raised
    await watcher.poll()  # nothing changed since, yet the change is announced again
    await watcher.poll()  # delivered: not again
    assert calls == [uri, uri]


@dataclass
class StuckSession:
    """A session whose client takes the acknowledgement and then stops reading."""

    sent: int = 0
    acknowledged: anyio.Event = field(default_factory=anyio.Event)
    stuck: anyio.Event = field(default_factory=anyio.Event)

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        self.sent += 1
        if self.sent == 1:
            self.acknowledged.set()
        else:
            self.stuck.set()
            await anyio.sleep_forever()


async def test_a_listen_stream_ended_for_backpressure_gives_its_slot_back(engine: Engine) -> None:
    uri = f"agentflow://runs/{await queued_run(engine)}"
    bus = InMemorySubscriptionBus()
    watcher = RunWatcher(engine, bus)
    streams = ListenStreams(bus, watcher, cast(Tasks, None), max_streams=1, max_buffered=2)
    params = SubscriptionsListenRequestParams.model_validate(
        {"notifications": {"resourceSubscriptions": [uri]}}
    )
    session = StuckSession()
    context = SimpleNamespace(request_id=1, session=session, protocol_version="2026-07-28")
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams, context, params)
        with anyio.fail_after(10):
            await session.acknowledged.wait()
            await bus.publish(ResourceUpdated(uri=uri))
            await session.stuck.wait()  # the handler is stuck writing to the client
        assert watcher.watched_runs
        for _ in range(3):  # more than the buffer holds
            await bus.publish(ResourceUpdated(uri=uri))
        # The slot and the watch are given back although the handler is still stuck.
        assert watcher.watched_runs == frozenset()
        second = StuckSession()
        context = SimpleNamespace(request_id=2, session=second, protocol_version="2026-07-28")
        tg.start_soon(streams, context, params)
        with anyio.fail_after(10):
            await second.acknowledged.wait()  # accepted: the limit is one stream
        tg.cancel_scope.cancel()


async def test_new_steps_and_stream_chunks_are_announced(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([gated])
    key = "steps"
    _GATES[key] = [anyio.Event() for _ in range(3)]
    run_id = (await engine.trigger("gated", key)).id
    uri = f"agentflow://runs/{run_id}/steps"
    server = build_server(engine, wait_seconds=0, watch_interval=0.02)
    async with running_worker(engine), Client(server) as client:

        async def running() -> bool:
            return (await engine.get_run(run_id)).status is RunStatus.RUNNING

        await eventually(running, what="the run to start")
        async with client.listen(resource_subscriptions=[uri]) as events:
            # A journal step changes neither the run's status nor its updated_at.
            _GATES[key][0].set()
            assert await next_update(events) == uri
            assert [s.name for s in await engine.get_steps(run_id)] == ["first"]
            # Nor does a chunk of live output.
            _GATES[key][1].set()
            assert await next_update(events) == uri
            assert [c.data for c in await engine.get_stream(run_id)] == ["tick"]
            assert (await engine.get_run(run_id)).status is RunStatus.RUNNING
            _GATES[key][2].set()
        assert (await engine.wait(run_id, timeout=10)).output == 3
    del _GATES[key]


async def test_unsubscribing_during_a_subscribe_keeps_the_shared_run_watched(
    engine: Engine,
) -> None:
    shared, slow = await queued_run(engine), await queued_run(engine)
    watcher = RunWatcher(engine, InMemorySubscriptionBus())
    real = engine.get_run
    reading, release = anyio.Event(), anyio.Event()

    async def get_run(run_id: str) -> Run:
        if run_id == slow and not release.is_set():
            reading.set()
            await release.wait()  # a busy database
        return await real(run_id)

    announced: list[str] = []

    async def first_sink(uri: str) -> None:
        pass

    async def second_sink(uri: str) -> None:
        announced.append(uri)

    unsubscribe_first = await watcher.subscribe([f"agentflow://runs/{shared}"], first_sink)
    engine.get_run = get_run  # type: ignore[method-assign]
    try:
        async with anyio.create_task_group() as tg:
            uris = [f"agentflow://runs/{shared}", f"agentflow://runs/{slow}"]
            tg.start_soon(watcher.subscribe, uris, second_sink)
            await reading.wait()  # the second subscriber is reading the slow run...
            unsubscribe_first()  # ...when the first one leaves
            release.set()
    finally:
        del engine.get_run
    assert watcher.watched_runs == {shared, slow}
    await engine.cancel(shared)
    await watcher.poll()
    assert announced == [f"agentflow://runs/{shared}"]


async def test_each_change_is_announced_once_per_listen_stream(engine: Engine) -> None:
    first, second = await queued_run(engine), await queued_run(engine)
    uris = [f"agentflow://runs/{first}", f"agentflow://runs/{second}"]
    server = build_server(engine, wait_seconds=0, watch_interval=0.02)
    async with (
        Client(server) as a,
        Client(server) as b,
        a.listen(resource_subscriptions=uris) as a_events,
        b.listen(resource_subscriptions=uris) as b_events,
        a.listen(resource_subscriptions=uris[:1]) as a_again,
    ):
        await engine.cancel(first)
        for events in (a_events, b_events, a_again):
            assert await next_update(events) == uris[0]
        # A second announcement of the first change would come before this one.
        await engine.cancel(second)
        for events in (a_events, b_events):
            assert await next_update(events) == uris[1]


async def test_counting_bus_publishes_each_changed_uri_once(engine: Engine) -> None:
    run_id = await queued_run(engine)
    published: list[str] = []

    class CountingBus(InMemorySubscriptionBus):
        async def publish(self, event: ServerEvent) -> None:
            assert isinstance(event, ResourceUpdated)
            published.append(event.uri)
            await super().publish(event)

    watcher = RunWatcher(engine, CountingBus())
    for _ in range(3):  # three listen streams
        await watcher.subscribe([f"agentflow://runs/{run_id}"])
    await engine.cancel(run_id)
    await watcher.poll()
    assert published == [f"agentflow://runs/{run_id}"]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_legacy_subscriptions_end_with_their_session(engine: Engine) -> None:
    run_ids = [await queued_run(engine) for _ in range(3)]
    server = build_server(engine, wait_seconds=0, watch_interval=0.02)
    watcher = watcher_of(server)
    for run_id in run_ids:
        async with Client(server, mode="legacy") as client:
            await client.subscribe_resource(f"agentflow://runs/{run_id}")
            await client.subscribe_resource(f"agentflow://runs/{run_id}/logs")
            assert watcher.watched_runs == {run_id}
        # The client went away without unsubscribing.

        async def released() -> bool:
            return not watcher.watched_runs

        await eventually(released, what="the session's subscriptions to be released")

    # A live session still hears of changes, and unsubscribing works.
    updated = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.set()

    async with Client(server, mode="legacy", message_handler=on_message) as client:
        uri = f"agentflow://runs/{run_ids[0]}"
        await client.subscribe_resource(uri)
        await engine.cancel(run_ids[0])
        with anyio.fail_after(10):
            await updated.wait()
        await client.unsubscribe_resource(uri)
        assert watcher.watched_runs == frozenset()


# -- tasks ------------------------------------------------------------------------------------


async def task_status(client: Client, task_id: str, *wanted: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        task = await task_request(client.session, "tasks/get", taskId=task_id)
        return task if task["status"] in wanted else None

    return await eventually(probe, what=f"task {task_id} to be {wanted}")


async def test_tasks_follow_the_run_through_approval(engine: Engine) -> None:
    async with connect(engine, tasks=True) as client:
        assert client.server_capabilities.extensions == {TASKS_EXTENSION: {}}
        created = await client.session.call_tool(
            "refund_order", {"order_id": "o9", "amount_cents": 99}, allow_claimed=True
        )
        assert isinstance(created, CreateTaskResult)
        assert created.status == "working"
        task_id = created.task_id
        assert task_id.startswith("run_")
        # No worker yet: the run is queued, the task working.
        task = await task_request(client.session, "tasks/get", taskId=task_id)
        assert task["status"] == "working"
        assert task["resultType"] == "complete"
        assert task["ttlMs"] is None
        assert task["pollIntervalMs"] > 0

        async with running_worker(engine):
            task = await task_status(client, task_id, "input_required")
            [(key, request)] = task["inputRequests"].items()
            assert request["method"] == "elicitation/create"
            assert request["params"]["requestedSchema"]["required"] == ["approved"]
            assert "o9" in request["params"]["message"]

            with pytest.raises(MCPError, match="no outstanding input request"):
                await task_request(
                    client.session, "tasks/update", taskId=task_id, inputResponses={"x": {}}
                )
            ack = await task_request(
                client.session,
                "tasks/update",
                taskId=task_id,
                inputResponses={
                    key: {"action": "accept", "content": {"approved": True, "comment": "ok"}}
                },
            )
            assert ack == {"resultType": "complete", "_meta": ack["_meta"]}
            task = await task_status(client, task_id, "completed")
        result = CallToolResult.model_validate(task["result"])
        assert not result.is_error
        assert result.structured_content["output"]["status"] == "refunded"

    # Task ids are run ids: a new server (after a restart) still knows the task.
    async with connect(engine, tasks=True) as client:
        task = await task_request(client.session, "tasks/get", taskId=task_id)
        assert task["status"] == "completed"
        with pytest.raises(MCPError, match="no task"):
            await task_request(client.session, "tasks/get", taskId="run_missing")


async def test_tasks_reject_and_cancel(engine: Engine) -> None:
    async with running_worker(engine), connect(engine, tasks=True) as client:
        rejected = await client.session.call_tool(
            "refund_order", {"order_id": "o1", "amount_cents": 1}, allow_claimed=True
        )
        cancelled = await client.session.call_tool(
            "refund_order", {"order_id": "o2", "amount_cents": 2}, allow_claimed=True
        )
        assert isinstance(rejected, CreateTaskResult)
        assert isinstance(cancelled, CreateTaskResult)
        task = await task_status(client, rejected.task_id, "input_required")
        [key] = task["inputRequests"]
        answer = {key: {"action": "decline"}}
        await task_request(
            client.session, "tasks/update", taskId=rejected.task_id, inputResponses=answer
        )
        task = await task_status(client, rejected.task_id, "completed")
        assert task["result"]["structuredContent"]["output"]["status"] == "rejected"

        await task_request(client.session, "tasks/cancel", taskId=cancelled.task_id)
        await task_status(client, cancelled.task_id, "cancelled")
        assert await status_of(engine, cancelled.task_id) is RunStatus.CANCELLED
        with pytest.raises(MCPError, match="already ended"):
            await task_request(client.session, "tasks/cancel", taskId=cancelled.task_id)

        # An invalid payload is a tool error, not a task; plain tools stay plain.
        error = await client.session.call_tool("refund_order", {"order_id": "o3"})
        assert isinstance(error, CallToolResult)
        assert error.is_error
        plain = await client.call_tool("list_workflows", {})
        assert not plain.is_error


@workflow(id="refund_via_child", description="Refund through the refund_order workflow.")
async def refund_via_child(ctx: RunContext, req: Refund) -> Any:
    return await ctx.trigger_and_wait(refund_order, req.model_dump())


async def test_task_status_is_pushed_to_listen_streams(engine: Engine) -> None:
    extension = TasksClient()
    acks: list[SubscriptionFilter] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, SubscriptionsAcknowledgedNotification):
            acks.append(message.params.notifications)

    async with (
        running_worker(engine),
        connect(engine, tasks=extension, message_handler=on_message) as client,
    ):
        created = await client.session.call_tool(
            "refund_order", {"order_id": "o7", "amount_cents": 7}, allow_claimed=True
        )
        assert isinstance(created, CreateTaskResult)
        task_id = created.task_id
        polled = await task_status(client, task_id, "input_required")
        async with listening(client.session, taskIds=[task_id, "run_missing", task_id]):
            # The current state comes first, exactly as tasks/get shows it...
            waiting = await next_push(extension.pushed, task_id, "input_required")
            assert waiting["_meta"][SUBSCRIPTION_ID_META_KEY]
            assert {k: v for k, v in waiting.items() if k != "_meta"} == {
                k: v for k, v in polled.items() if k not in ("_meta", "resultType")
            }
            # ...and the acknowledgement lists the tasks followed: the unknown one is left out.
            [ack] = acks
            assert ack.model_extra == {"taskIds": [task_id]}
            [key] = waiting["inputRequests"]
            answer = {key: {"action": "accept", "content": {"approved": True}}}
            await task_request(
                client.session, "tasks/update", taskId=task_id, inputResponses=answer
            )
            # ...then each change.
            done = await next_push(extension.pushed, task_id, "completed")
            assert done["result"]["structuredContent"]["output"]["status"] == "refunded"


@workflow(id="refund_on_go")
async def refund_on_go(ctx: RunContext, req: Refund) -> bool:
    await ctx.wait_for_event("go")
    return (await ctx.wait_for_approval("refund", data=req.model_dump())).approved


@workflow(id="refund_via_child_on_go")
async def refund_via_child_on_go(ctx: RunContext, req: Refund) -> Any:
    return await ctx.trigger_and_wait(refund_on_go, req.model_dump())


async def test_a_child_runs_approval_is_pushed_for_the_parents_task(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([*WORKFLOWS, refund_on_go, refund_via_child_on_go])
    extension = TasksClient()
    async with running_worker(engine), connect(engine, tasks=extension) as client:
        created = await client.session.call_tool(
            "refund_via_child_on_go", {"order_id": "c2", "amount_cents": 4}, allow_claimed=True
        )
        assert isinstance(created, CreateTaskResult)

        async def child_waits_for_go() -> bool:
            return bool(await engine.list_waitpoints(kind="event", status="pending"))

        await eventually(child_waits_for_go, what="the child run to wait for the event")
        async with listening(client.session, taskIds=[created.task_id]):
            await next_push(extension.pushed, created.task_id, "working")
            # The child stops for its approval; the parent, waiting for the child, does not
            # change itself, and its task still becomes input_required.
            await engine.send_event("go")
            task = await next_push(extension.pushed, created.task_id, "input_required")
        [request] = task["inputRequests"].values()
        assert "waits for its child run" in request["params"]["message"]


async def test_a_child_runs_approval_holds_up_the_parents_task(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([*WORKFLOWS, refund_via_child])
    async with running_worker(engine), connect(engine, tasks=True) as client:
        created = await client.session.call_tool(
            "refund_via_child", {"order_id": "c1", "amount_cents": 3}, allow_claimed=True
        )
        assert isinstance(created, CreateTaskResult)
        task = await task_status(client, created.task_id, "input_required")
        [(key, request)] = task["inputRequests"].items()
        assert "waits for its child run" in request["params"]["message"]
        # get_run sends the caller to the child run, where the approval is answered.
        [pending] = (await call(client, "get_run", run_id=created.task_id))["pending_approvals"]
        child_id = pending["run_id"]
        assert child_id != created.task_id
        assert (await engine.get_run(child_id)).parent_id == created.task_id

        answer = {key: {"action": "accept", "content": {"approved": True}}}
        await task_request(
            client.session, "tasks/update", taskId=created.task_id, inputResponses=answer
        )
        task = await task_status(client, created.task_id, "completed")
        assert task["result"]["structuredContent"]["output"]["status"] == "refunded"
        # Answering again is acknowledged: the first decision stands.
        await task_request(
            client.session, "tasks/update", taskId=created.task_id, inputResponses=answer
        )


async def test_tasks_need_the_extension_declared(engine: Engine) -> None:
    run_id = await queued_run(engine)
    async with connect(engine) as client:
        for method, params in (
            ("tasks/get", {}),
            ("tasks/cancel", {}),
            ("tasks/update", {"inputResponses": {}}),
        ):
            with pytest.raises(MCPError, match="Missing required client capability") as exc:
                await task_request(client.session, method, taskId=run_id, **params)
            assert exc.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
            assert exc.value.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
        listen = ListenRequest(params={"notifications": {"taskIds": [run_id]}})
        with pytest.raises(MCPError, match="Missing required client capability"):
            await client.session.send_request(listen, AnyResult)
    assert await status_of(engine, run_id) is RunStatus.QUEUED
    async with connect(engine, tasks=True) as client:
        for task_ids in (run_id, [1], ["run_x"] * (MAX_TASK_IDS + 1)):
            listen = ListenRequest(params={"notifications": {"taskIds": task_ids}})
            with pytest.raises(MCPError, match="taskIds") as exc:
                await client.session.send_request(listen, AnyResult)
            assert exc.value.code == INVALID_PARAMS


# -- read-only --------------------------------------------------------------------------------


async def test_read_only_mode_hides_write_tools(engine: Engine) -> None:
    run_id = (await engine.trigger("refund_order", {"order_id": "o", "amount_cents": 1})).id
    async with connect(engine, read_only=True, tasks=True) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == READ_TOOLS
        with pytest.raises(MCPError, match="read-only"):
            await client.call_tool("approve_run", {"run_id": run_id})
        assert (await call(client, "get_run", run_id=run_id))["run"]["id"] == run_id
        assert (await task_request(client.session, "tasks/get", taskId=run_id))["taskId"] == run_id
        with pytest.raises(MCPError, match="Method not found"):
            await task_request(client.session, "tasks/cancel", taskId=run_id)
    assert await status_of(engine, run_id) is RunStatus.QUEUED


async def test_read_only_server_says_write_tools_and_workflow_tools_change_state(
    engine: Engine,
) -> None:
    async with connect(engine, read_only=True) as client:
        for tool in ("refund_order", "greet", "trigger_workflow", "send_event"):
            with pytest.raises(MCPError, match="changes state; this server is read-only") as exc:
                await client.call_tool(tool, {})
            assert exc.value.code == INVALID_PARAMS
            assert exc.value.data == {"tool": tool, "read_only": True}
        with pytest.raises(MCPError, match="unknown tool 'nope'"):
            await client.call_tool("nope", {})
        # The workflow tools the full server would have are not offered, just named.
        workflows = await call(client, "list_workflows")
        assert {w["tool"] for w in workflows["items"]} == {None}
    assert await engine.list_runs() == []


# -- findings: tool arguments, workflow ids, logs, tasks/update ------------------------------


async def test_arguments_out_of_the_databases_range_are_refused_by_field(engine: Engine) -> None:
    run_id = (await engine.trigger("greet", {"name": "a"})).id
    too_long = "x" * 201
    async with connect(engine, wait_seconds=0) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("trigger_workflow", {"workflow": "greet", "delay": 1e300}, "delay"),
            ("trigger_workflow", {"workflow": "greet", "delay": MAX_DELAY * 1.01}, "delay"),
            ("trigger_workflow", {"workflow": "greet", "delay": -1}, "delay"),
            (
                "trigger_workflow",
                {"workflow": "greet", "idempotency_key": too_long},
                "idempotency_key",
            ),
            ("trigger_workflow", {"workflow": "greet", "tags": [too_long]}, "tags.0"),
            ("send_event", {"name": too_long}, "name"),
            ("send_event", {"name": "go", "id": too_long}, "id"),
            ("approve_run", {"run_id": run_id, "approver": too_long}, "approver"),
            ("get_run_logs", {"run_id": run_id, "after_id": 2**70}, "after_id"),
            ("get_run_logs", {"run_id": run_id, "after_id": 2**62}, "after_id"),
            ("get_run_logs", {"run_id": run_id, "limit": 1001}, "limit"),
        ]
        for tool, arguments, field in cases:
            error = await failure(client, tool, **arguments)
            assert error["code"] == "invalid_arguments", (tool, arguments, error)
            assert [e["field"] for e in error["errors"]] == [field], (tool, arguments, error)
            assert f"{field}:" in error["message"]
        # The longest accepted values fit the database (Postgres refuses longer ones).
        fits = "k" * 200
        started = await call(
            client,
            "trigger_workflow",
            workflow="greet",
            payload={"name": "b"},
            idempotency_key=fits,
            delay=MAX_DELAY,
        )
        assert started["run"]["idempotency_key"] == fits
        event = await call(client, "send_event", name=fits, id=fits)
        assert event["id"] == fits
        runs = await call(client, "list_runs")
        assert {r["id"] for r in runs["items"]} == {run_id, started["run"]["id"]}


async def test_workflows_that_cannot_be_tools_are_left_out_unless_named(
    make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(id="send_event")
    async def clash(ctx: RunContext) -> int:
        return 1

    @workflow(id="billing/refund order")
    async def odd(ctx: RunContext) -> int:
        return 2

    assert TOOL_NAMES == READ_TOOLS | WRITE_TOOLS  # the names workflows cannot take
    engine = make_engine([*WORKFLOWS, clash, odd])
    with caplog.at_level(logging.WARNING, logger="agentflow.mcp"):
        async with connect(engine, wait_seconds=0) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == READ_TOOLS | WRITE_TOOLS | WORKFLOW_TOOLS
            # send_event is still the built-in tool; both workflows run through trigger_workflow.
            assert tools["send_event"].input_schema["required"] == ["name"]
            workflows = await call(client, "list_workflows")
            assert {w["id"]: w["tool"] for w in workflows["items"]}["billing/refund order"] is None
            started = await call(client, "trigger_workflow", workflow="billing/refund order")
            assert started["run"]["workflow_id"] == "billing/refund order"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'send_event' is the name of a built-in tool" in warned
    assert "'billing/refund order' is not a valid tool name" in warned
    # The HTTP API, which mounts the MCP server, still starts.
    create_app(engine, auth=False)
    # Naming such a workflow is a mistake worth stopping for.
    with pytest.raises(ValueError, match="'send_event' is the name of a built-in tool"):
        build_server(engine, workflow_tools=["greet", "send_event"])
    with pytest.raises(ValueError, match="not a valid tool name"):
        build_server(engine, workflow_tools=["billing/refund order"])


@workflow(id="chatty")
async def chatty(ctx: RunContext, count: int) -> int:
    for n in range(count):
        ctx.log.info(f"line {n}")
    return count


async def test_logs_come_in_bounded_pages(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine([chatty])
    run_id = (await engine.trigger("chatty", 5)).id
    async with running_worker(engine):
        await engine.wait(run_id, timeout=10)
    async with connect(engine) as client:
        lines: list[str] = []
        after_id = 0
        for _ in range(3):
            page = await call(client, "get_run_logs", run_id=run_id, after_id=after_id, limit=2)
            lines += [e["message"] for e in page["items"]]
            if page["next_after_id"] is None:
                break
            assert page["next_after_id"] == page["items"][-1]["id"]
            after_id = page["next_after_id"]
        assert lines == [f"line {n}" for n in range(5)]
        everything = await call(client, "get_run_logs", run_id=run_id, limit=5)
        assert len(everything["items"]) == 5
        assert everything["next_after_id"] is None
        error = await failure(client, "get_run_logs", run_id="run_missing")
        assert error["code"] == "run_not_found"

        # The resource holds the newest entries, and says when older ones were left out.
        uri = f"agentflow://runs/{run_id}/logs"
        monkeypatch.setattr("mcp_server.resources.MAX_LOGS", 3)
        logs = json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert [e["message"] for e in logs["items"]] == ["line 2", "line 3", "line 4"]
        assert logs["truncated"] is True
        monkeypatch.setattr("mcp_server.resources.MAX_LOGS", 5)
        logs = json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert len(logs["items"]) == 5
        assert logs["truncated"] is False


async def test_tasks_update_checks_every_answer_before_applying_any(engine: Engine) -> None:
    async with running_worker(engine), connect(engine, tasks=True) as client:
        created = await client.session.call_tool(
            "refund_order", {"order_id": "u1", "amount_cents": 1}, allow_claimed=True
        )
        assert isinstance(created, CreateTaskResult)
        task_id = created.task_id
        task = await task_status(client, task_id, "input_required")
        [key] = task["inputRequests"]

        async def update(**responses: Any) -> dict[str, Any]:
            return await task_request(
                client.session, "tasks/update", taskId=task_id, inputResponses=responses
            )

        malformed: list[tuple[Any, str]] = [
            ({"action": "accept", "content": {"approved": "true"}}, "approved must be a boolean"),
            ({"action": "accept", "content": {"approved": 1}}, "approved must be a boolean"),
            ({"action": "accept", "content": {"approve": False}}, "unexpected content field"),
            ({"action": "accept", "content": {"comment": 5}}, "comment must be a string"),
            ({"action": "decline", "content": {"approved": True}}, "a decline rejects"),
            ({"action": "approve"}, "not an elicitation result"),
            ("yes", "not an elicitation result"),
        ]
        for answer, problem in malformed:
            with pytest.raises(MCPError, match=problem) as exc:
                await update(**{key: answer})
            assert exc.value.code == INVALID_PARAMS
            assert key in exc.value.message
        # A good answer next to a bad one: nothing is applied.
        with pytest.raises(MCPError, match="no outstanding input request 'bogus'"):
            await update(**{key: {"action": "accept"}, "bogus": {"action": "accept"}})
        assert [wp.id for wp in await engine.pending_approvals(task_id)] == [key]
        assert (await task_request(client.session, "tasks/get", taskId=task_id))["status"] == (
            "input_required"
        )

        # Accepting an approval without content approves it.
        assert (await update(**{key: {"action": "accept"}}))["resultType"] == "complete"
        task = await task_status(client, task_id, "completed")
        assert task["result"]["structuredContent"]["output"]["status"] == "refunded"
        # A retried update (the answer was applied, the acknowledgement lost) is acknowledged,
        # and the first decision stands.
        assert (await update(**{key: {"action": "decline"}}))["resultType"] == "complete"
        [decided] = await engine.list_waitpoints(run_id=task_id, kind="approval")
        assert decided.status == "approved"
