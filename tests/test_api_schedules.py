"""The schedules endpoints of the HTTP API, in process: the whole lifecycle and every error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from agentflow import Engine, RunContext, workflow
from agentflow.api import create_app

pytestmark = pytest.mark.anyio


class Report(BaseModel):
    team: str


@workflow(id="report")
async def report(ctx: RunContext, req: Report) -> str:
    return req.team


@workflow(id="digest", schedule="0 9 * * 1-5", timezone="Europe/Paris")
async def digest(ctx: RunContext) -> None:
    return None


@pytest.fixture
async def client(make_engine: Callable[..., Engine]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(make_engine([report, digest]), auth=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


def field_of(response: httpx.Response, code: str = "invalid_schedule") -> str:
    [error] = error_of(response, 422, code)["details"]["errors"]
    return str(error["field"])


WEEKLY = {
    "workflow": "report",
    "cron": "30 7 * * mon",
    "timezone": "America/New_York",
    "payload": {"team": "sales"},
    "missed": "all",
    "id": "weekly-sales",
}


async def test_create_list_get_pause_resume_delete(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/schedules", json=WEEKLY)
    assert r.status_code == 201, r.text
    created = r.json()
    assert {k: created[k] for k in WEEKLY if k != "workflow"} == {
        k: v for k, v in WEEKLY.items() if k != "workflow"
    }
    assert created["workflow_id"] == "report"
    assert (created["paused"], created["declared"], created["last_tick_at"]) == (False, False, None)

    listed = (await client.get("/api/v1/schedules")).json()["items"]
    assert [s["id"] for s in listed] == ["digest:declared", "weekly-sales"]
    only = (await client.get("/api/v1/schedules", params={"workflow": "report"})).json()
    assert [s["id"] for s in only["items"]] == ["weekly-sales"]
    # A declared schedule's id has a colon: it is one path segment all the same.
    declared = (await client.get("/api/v1/schedules/digest%3Adeclared")).json()
    assert (declared["declared"], declared["timezone"]) == (True, "Europe/Paris")

    assert (await client.get("/api/v1/schedules/weekly-sales")).json() == created
    paused = (await client.post("/api/v1/schedules/weekly-sales/pause")).json()
    assert paused["paused"] is True
    resumed = (await client.post("/api/v1/schedules/weekly-sales/resume")).json()
    assert resumed["paused"] is False

    r = await client.delete("/api/v1/schedules/weekly-sales")
    assert (r.status_code, r.json()) == (200, {"deleted": "weekly-sales"})
    gone = error_of(await client.get("/api/v1/schedules/weekly-sales"), 404, "schedule_not_found")
    assert gone["details"] == {"schedule_id": "weekly-sales"}


async def test_invalid_schedules_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    async def create(**changes: Any) -> httpx.Response:
        return await client.post("/api/v1/schedules", json={**WEEKLY, **changes})

    assert field_of(await create(cron="61 * * * *")) == "cron"
    assert field_of(await create(cron="every day")) == "cron"
    assert field_of(await create(timezone="Mars/Olympus")) == "timezone"
    assert field_of(await create(id="has space")) == "id"
    assert field_of(await create(id="x:declared")) == "id"
    assert field_of(await create(missed="never"), "invalid_request") == "missed"
    assert field_of(await create(bogus=1), "invalid_request") == "bogus"
    payload = error_of(await create(payload={"team": 3}), 422, "invalid_payload")
    assert [e["field"] for e in payload["details"]["errors"]] == ["team"]
    missing = error_of(await create(workflow="nope"), 404, "workflow_not_found")
    assert missing["details"]["available"] == ["digest", "report"]
    assert (await client.get("/api/v1/schedules")).json()["items"][1:] == []  # none created


async def test_unknown_and_conflicting_schedules(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/v1/schedules/nope"),
        ("POST", "/api/v1/schedules/nope/pause"),
        ("POST", "/api/v1/schedules/nope/resume"),
        ("DELETE", "/api/v1/schedules/nope"),
    ]:
        error = error_of(await client.request(method, path), 404, "schedule_not_found")
        assert error["details"] == {"schedule_id": "nope"}

    assert (await client.post("/api/v1/schedules", json=WEEKLY)).status_code == 201
    error_of(await client.post("/api/v1/schedules", json=WEEKLY), 409, "conflict")
    # A schedule a registered workflow declares would come back: pause it instead.
    error_of(await client.delete("/api/v1/schedules/digest%3Adeclared"), 409, "conflict")


async def test_openapi_documents_the_schedule_operations(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    create = doc["paths"]["/api/v1/schedules"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScheduleCreateRequest"
    }
    assert set(create["responses"]) == {"201", "404", "409", "413", "422"}
    assert set(doc["paths"]["/api/v1/schedules/{schedule_id}"]) == {"get", "delete"}
    missed = doc["components"]["schemas"]["ScheduleCreateRequest"]["properties"]["missed"]
    assert missed["enum"] == ["skip", "latest", "all"]
