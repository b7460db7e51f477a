"""The HTTP API: every endpoint and error class in process, and the approval path over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.routing import Route

from agentflow import Engine, RunContext, workflow
from agentflow._cursor import encode_cursor
from agentflow.api import create_app

from ._support import eventually, running_worker
from ._support import serving as serve_app

pytestmark = pytest.mark.anyio


class Greeting(BaseModel):
    name: str
    times: int = 1


@workflow(id="greet")
async def greet(ctx: RunContext, req: Greeting) -> str:
    """Say hello."""
    ctx.log.info("greeting", name=req.name)
    return await ctx.step("hello", lambda: f"hello {req.name}" * req.times)


@workflow(id="refund")
async def refund(ctx: RunContext, req: Greeting) -> dict[str, Any]:
    decision = await ctx.wait_for_approval("refund", data={"name": req.name})
    return {"approved": decision.approved, "by": decision.approver, "data": decision.data}


@workflow(id="waiter")
async def waiter(ctx: RunContext) -> Any:
    return (await ctx.wait_for_event("ping")).payload


WORKFLOWS = [greet, refund, waiter]


@asynccontextmanager
async def client_for(engine: Engine, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine, **{"auth": False, **options}))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
async def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(WORKFLOWS)


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(engine) as c:
        yield c


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code
    return error


async def trigger(client: httpx.AsyncClient, wf: str, payload: Any, **extra: Any) -> Any:
    r = await client.post(f"/api/v1/workflows/{wf}/trigger", json={"payload": payload, **extra})
    assert r.status_code == 202, r.text
    return r.json()


# -- workflows and triggering -----------------------------------------------------------------


async def test_health_ready_and_workflows(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}
    items = (await client.get("/api/v1/workflows")).json()["items"]
    assert [w["id"] for w in items] == ["greet", "refund", "waiter"]
    assert items[0]["description"] == "Say hello."
    assert items[0]["payload_schema"]["required"] == ["name"]
    assert items[0]["output_schema"] == {"type": "string"}


async def test_readyz_reports_an_unreachable_database() -> None:
    engine = Engine("postgresql://nobody@127.0.0.1:1/none", WORKFLOWS)
    try:
        async with client_for(engine, ready_timeout=5.0) as client:
            error_of(await client.get("/readyz"), 503, "not_ready")
    finally:
        await engine.close()


async def test_trigger_is_idempotent_and_delayed(client: httpx.AsyncClient) -> None:
    first = await trigger(client, "greet", {"name": "a"}, idempotency_key="k", tags=["t"])
    assert first["created"] is True
    assert first["run"]["status"] == "queued"
    assert first["run"]["tags"] == ["t"]
    again = await trigger(client, "greet", {"name": "b"}, idempotency_key="k")
    assert again["created"] is False
    assert again["run"]["id"] == first["run"]["id"]
    later = await trigger(client, "greet", {"name": "c"}, delay=3600, priority=5)
    assert later["run"]["status"] == "delayed"
    assert later["run"]["priority"] == 5


async def test_trigger_errors(client: httpx.AsyncClient) -> None:
    error = error_of(await client.post("/api/v1/workflows/nope/trigger", json={}), 404)
    assert error["code"] == "workflow_not_found"
    assert error["details"]["available"] == ["greet", "refund", "waiter"]

    r = await client.post("/api/v1/workflows/greet/trigger", json={"payload": {"times": "x"}})
    error = error_of(r, 422, "invalid_payload")
    assert {e["field"] for e in error["details"]["errors"]} == {"name", "times"}

    r = await client.post("/api/v1/workflows/greet/trigger", content=b"{not json")
    error = error_of(r, 422, "invalid_request")
    assert error["details"]["errors"][0]["message"].startswith("invalid JSON")

    r = await client.post("/api/v1/workflows/greet/trigger", json={"payload": {}, "delay": -1})
    assert error_of(r, 422)["details"]["errors"][0]["field"] == "delay"
    r = await client.post("/api/v1/workflows/greet/trigger", json={"bogus": 1})
    assert error_of(r, 422)["details"]["errors"][0]["field"] == "bogus"
    r = await client.post("/api/v1/workflows/greet/trigger", json=[1, 2])
    error_of(r, 422, "invalid_request")


async def test_body_size_limit(engine: Engine) -> None:
    async with client_for(engine, max_body_bytes=100) as client:
        big = {"payload": {"name": "x" * 200}}
        r = await client.post("/api/v1/workflows/greet/trigger", json=big)
        assert error_of(r, 413, "body_too_large")["details"] == {"limit": 100}

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it streams
            for _ in range(10):
                yield b" " * 50

        r = await client.post("/api/v1/workflows/greet/trigger", content=chunks())
        error_of(r, 413, "body_too_large")


async def test_unknown_paths_and_methods_use_the_error_shape(client: httpx.AsyncClient) -> None:
    error_of(await client.get("/api/v1/nothing"), 404, "not_found")
    error_of(await client.delete("/api/v1/workflows"), 405, "method_not_allowed")


async def test_unexpected_errors_are_a_generic_500(
    engine: Engine, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(engine, "get_run", boom)
    r = await client.get("/api/v1/runs/run_x")
    error = error_of(r, 500, "internal_error")
    assert "secret" not in r.text
    assert error["message"] == "internal server error"


# -- runs -------------------------------------------------------------------------------------


async def test_run_steps_logs_and_replay(engine: Engine, client: httpx.AsyncClient) -> None:
    run_id = (await trigger(client, "greet", {"name": "ann", "times": 2}))["run"]["id"]
    async with running_worker(engine):
        await engine.wait(run_id, timeout=10)
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "completed"
    assert run["output"] == "hello annhello ann"
    steps = (await client.get(f"/api/v1/runs/{run_id}/steps")).json()["items"]
    assert [s["name"] for s in steps] == ["hello"]
    logs = (await client.get(f"/api/v1/runs/{run_id}/logs")).json()["items"]
    assert [entry["message"] for entry in logs] == ["greeting"]
    after = await client.get(f"/api/v1/runs/{run_id}/logs", params={"after": logs[-1]["id"]})
    assert after.json()["items"] == []
    error_of(await client.get(f"/api/v1/runs/{run_id}/logs?after=-1"), 422, "invalid_request")

    replay = (await client.post(f"/api/v1/runs/{run_id}/replay")).json()
    assert replay["created"] is True
    assert replay["run"]["id"] != run_id
    assert replay["run"]["metadata"]["replay_of"] == run_id

    for path in ("", "/steps", "/logs"):
        error_of(await client.get(f"/api/v1/runs/run_missing{path}"), 404, "run_not_found")
    for action in ("cancel", "replay"):
        error_of(await client.post(f"/api/v1/runs/run_missing/{action}"), 404, "run_not_found")


async def test_cancel_then_cancel_again_conflicts(client: httpx.AsyncClient) -> None:
    run_id = (await trigger(client, "greet", {"name": "x"}))["run"]["id"]
    r = await client.post(f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    error_of(await client.post(f"/api/v1/runs/{run_id}/cancel"), 409, "conflict")


async def test_list_runs_filters_and_cursor_pages(client: httpx.AsyncClient) -> None:
    ids = [(await trigger(client, "greet", {"name": str(i)}))["run"]["id"] for i in range(5)]
    tagged = (await trigger(client, "refund", {"name": "r"}, tags=["vip"]))["run"]["id"]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"workflow": "greet", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/runs", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each once

    by_tag = (await client.get("/api/v1/runs", params={"tag": "vip"})).json()
    assert [r["id"] for r in by_tag["items"]] == [tagged]
    assert by_tag["next_cursor"] is None
    queued = (await client.get("/api/v1/runs", params={"status": "queued"})).json()["items"]
    assert len(queued) == 6

    error_of(await client.get("/api/v1/runs", params={"status": "bogus"}), 422)
    error_of(await client.get("/api/v1/runs", params={"limit": 0}), 422)
    error_of(await client.get("/api/v1/runs", params={"cursor": "garbage!"}), 422)
    error_of(await client.get("/api/v1/runs", params={"cursor": encode_cursor(1.0, "x")[:-3]}), 422)


# -- approvals and events ---------------------------------------------------------------------


async def test_approvals_by_name_and_token(engine: Engine, client: httpx.AsyncClient) -> None:
    async with running_worker(engine):
        first = (await trigger(client, "refund", {"name": "a"}))["run"]["id"]
        second = (await trigger(client, "refund", {"name": "b"}))["run"]["id"]

        async def pending() -> list[Any]:
            r = await client.get("/api/v1/approvals")
            return [a for a in r.json()["items"]] if len(r.json()["items"]) == 2 else []

        approvals = await eventually(pending, what="two pending approvals")
        only = (await client.get("/api/v1/approvals", params={"run_id": first})).json()["items"]
        assert [a["run_id"] for a in only] == [first]

        url = f"/api/v1/runs/{first}/approvals/refund"
        r = await client.post(f"{url}/approve", json={"approver": "ann", "data": {"name": "A"}})
        assert r.status_code == 200
        assert r.json()["approved"]
        assert r.json()["edited"]
        error_of(await client.post(f"{url}/approve"), 409, "approval_conflict")
        error_of(await client.post(f"{url}/reject"), 409, "approval_conflict")

        token = next(a["token"] for a in approvals if a["run_id"] == second)
        r = await client.post(f"/api/v1/approvals/{token}/reject", json={"data": 1})
        error_of(r, 422, "invalid_request")
        r = await client.post(f"/api/v1/approvals/{token}/reject", json={"comment": "no"})
        assert r.status_code == 200
        assert r.json()["status"] == "rejected"
        error_of(await client.post(f"/api/v1/approvals/{token}/approve"), 409)

        assert (await engine.wait(first, timeout=10)).output == {
            "approved": True,
            "by": "ann",
            "data": {"name": "A"},
        }
        assert (await engine.wait(second, timeout=10)).output["approved"] is False

    error_of(await client.post("/api/v1/approvals/tok_missing/approve"), 404)
    error_of(await client.post(f"/api/v1/runs/{first}/approvals/other/approve"), 404)


async def test_events(engine: Engine, client: httpx.AsyncClient) -> None:
    async with running_worker(engine):
        run_id = (await trigger(client, "waiter", None))["run"]["id"]

        async def waiting() -> bool:
            waits = await engine.list_waitpoints(run_id=run_id, status="pending")
            return bool(waits)

        await eventually(waiting, what="the run to wait for the event")
        r = await client.post("/api/v1/events", json={"name": "ping", "payload": {"n": 1}})
        assert r.status_code == 202
        assert r.json()["resumed_runs"] == 1
        assert (await engine.wait(run_id, timeout=10)).output == {"n": 1}
    error_of(await client.post("/api/v1/events", json={"payload": 1}), 422)
    error_of(await client.post("/api/v1/events", json={"name": ""}), 422)
    error_of(await client.post("/api/v1/events"), 422)


async def test_openapi_describes_every_route_with_the_route_models(
    engine: Engine, client: httpx.AsyncClient
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    trigger_op = doc["paths"]["/api/v1/workflows/{workflow_id}/trigger"]["post"]
    body = trigger_op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TriggerRequest"}
    assert "idempotency_key" in doc["components"]["schemas"]["TriggerRequest"]["properties"]
    assert set(trigger_op["responses"]) == {"202", "404", "413", "422"}
    params = doc["paths"]["/api/v1/runs"]["get"]["parameters"]
    assert {p["name"] for p in params} == {"workflow", "status", "tag", "limit", "cursor"}
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for route in create_app(engine, auth=False).routes
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served
    assert doc["paths"]["/api/v1/webhooks/{source}"]["post"]["security"] == []


# -- over a real socket -----------------------------------------------------------------------


@asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[str]:
    async with serve_app(create_app(engine, auth=False)) as url:
        yield url


async def test_trigger_approve_complete_over_a_socket(engine: Engine) -> None:
    async with (
        serving(engine) as url,
        running_worker(engine),
        httpx.AsyncClient(base_url=url) as http,
    ):
        r = await http.post("/api/v1/workflows/refund/trigger", json={"payload": {"name": "sock"}})
        assert r.status_code == 202
        run_id = r.json()["run"]["id"]

        async def waiting() -> bool:
            r = await http.get(f"/api/v1/runs/{run_id}")
            return bool(r.json()["status"] == "waiting")

        await eventually(waiting, what="the run to wait for approval")
        r = await http.post(
            f"/api/v1/runs/{run_id}/approvals/refund/approve", json={"approver": "bob"}
        )
        assert r.status_code == 200
        assert r.json()["approved"] is True

        async def completed() -> dict[str, Any] | None:
            run: dict[str, Any] = (await http.get(f"/api/v1/runs/{run_id}")).json()
            return run if run["status"] == "completed" else None

        run = await eventually(completed, what="the run to complete")
        assert run["output"]["by"] == "bob"
