"""API keys, scopes, signed webhooks and signed approval links, in process on both databases."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from agentflow import Engine, RunContext, workflow
from agentflow.api import create_app
from agentflow.storage.tables import api_keys
from agentflow.webhooks import sign

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio


@workflow(id="hello")
async def hello(ctx: RunContext, name: str = "world") -> str:
    return await ctx.step("greet", lambda: f"hello {name}")


@workflow(id="refund")
async def refund(ctx: RunContext) -> dict[str, Any]:
    decision = await ctx.wait_for_approval("refund", data={"amount": 10})
    return {"approved": decision.approved, "data": decision.data, "comment": decision.comment}


@workflow(id="paid")
async def paid(ctx: RunContext) -> Any:
    return (await ctx.wait_for_event("webhook.stripe", match={"type": "paid"})).payload


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(make_engine: Callable[..., Engine], clock: Clock) -> Engine:
    return make_engine([hello, refund, paid], clock=clock)


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- API keys -------------------------------------------------------------------------------


async def test_keys_are_stored_hashed_and_shown_once(engine: Engine) -> None:
    created = await engine.api_keys.create("ci", scope="read")
    assert created.secret.startswith("af_")
    assert created.key.scope == "read"
    rows = await engine.db.read(
        lambda c: [dict(r._mapping) for r in c.execute(sa.select(api_keys))]
    )
    assert len(rows) == 1
    assert created.secret not in json.dumps(rows)  # only the hash is kept
    verified = await engine.api_keys.verify(created.secret)
    assert verified is not None
    assert (verified.id, verified.scope) == (created.key.id, "read")
    assert await engine.api_keys.verify("af_not-a-key") is None


async def test_requests_need_a_valid_key(engine: Engine, client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/runs")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get("/api/v1/runs", headers=bearer("af_wrong"))).status_code == 401
    assert (
        await client.get("/api/v1/runs", headers={"Authorization": "Basic x"})
    ).status_code == 401

    full = await engine.api_keys.create("ops")
    assert (await client.get("/api/v1/runs", headers=bearer(full.secret))).status_code == 200
    await engine.api_keys.revoke(full.key.id)
    revoked = await client.get("/api/v1/runs", headers=bearer(full.secret))
    assert revoked.status_code == 401


async def test_public_paths_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_read_keys_can_only_read(engine: Engine, client: httpx.AsyncClient) -> None:
    read = bearer((await engine.api_keys.create("dashboard", scope="read")).secret)
    full = bearer((await engine.api_keys.create("ops", scope="full")).secret)
    trigger = {"payload": "ann"}

    assert (await client.get("/api/v1/workflows", headers=read)).status_code == 200
    refused = await client.post("/api/v1/workflows/hello/trigger", json=trigger, headers=read)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (
        await client.post("/api/v1/events", json={"name": "x"}, headers=read)
    ).status_code == 403
    assert await engine.list_runs() == []  # nothing happened

    ok = await client.post("/api/v1/workflows/hello/trigger", json=trigger, headers=full)
    assert ok.status_code == 202
    run_id = ok.json()["run"]["id"]
    assert (await client.get(f"/api/v1/runs/{run_id}", headers=read)).status_code == 200
    assert (await client.post(f"/api/v1/runs/{run_id}/cancel", headers=read)).status_code == 403


async def test_key_usage_is_recorded(engine: Engine, client: httpx.AsyncClient) -> None:
    created = await engine.api_keys.create("ops")
    assert (await engine.api_keys.list())[0].last_used_at is None
    await client.get("/api/v1/runs", headers=bearer(created.secret))
    assert (await engine.api_keys.list())[0].last_used_at is not None


# -- webhooks -------------------------------------------------------------------------------


def signed(secret: str, body: bytes, at: float, webhook_id: str | None = None) -> dict[str, str]:
    stamp = int(at)
    headers = {
        "X-Agentflow-Timestamp": str(stamp),
        "X-Agentflow-Signature": sign(secret, body, stamp, webhook_id),
        "Content-Type": "application/json",
    }
    if webhook_id is not None:
        headers["X-Agentflow-Webhook-Id"] = webhook_id
    return headers


async def test_signed_webhook_becomes_an_event(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    _, secret = await engine.webhooks.create("stripe")
    async with running_worker(engine):
        run = await engine.trigger("paid")
        await eventually(lambda: engine.list_waitpoints(run_id=run.id, status="pending"))
        body = json.dumps({"type": "paid", "amount": 42}).encode()
        response = await client.post(
            "/api/v1/webhooks/stripe", content=body, headers=signed(secret, body, clock())
        )
        assert response.status_code == 202, response.text
        event = response.json()
        assert event["name"] == "webhook.stripe"
        assert event["resumed_runs"] == 1
        done = await engine.wait(run.id, timeout=10)
    assert done.output == {"type": "paid", "amount": 42}


async def test_webhook_signature_is_checked(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    _, secret = await engine.webhooks.create("stripe", secret="s" * 32)
    body = b'{"type": "paid"}'
    url = "/api/v1/webhooks/stripe"

    async def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return await client.post(url, content=content, headers=headers)

    unsigned = await post(body, {"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "webhook_unsigned")
    wrong_secret = await post(body, signed("x" * 32, body, clock()))
    assert (wrong_secret.status_code, wrong_secret.json()["error"]["code"]) == (
        401,
        "webhook_bad_signature",
    )
    tampered = await post(b'{"type": "refund"}', signed(secret, body, clock()))
    assert tampered.json()["error"]["code"] == "webhook_bad_signature"
    stale = await post(body, signed(secret, body, clock() - 3600))
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "webhook_stale")
    not_json = await post(b"<xml/>", signed(secret, b"<xml/>", clock()))
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (422, "webhook_invalid")
    unknown = await client.post("/api/v1/webhooks/github", content=body)
    assert unknown.status_code == 404
    assert await engine.list_events() == []  # none of them became an event

    headers = signed(secret, body, clock())
    assert (await post(body, headers)).status_code == 202
    replay = await post(body, headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "webhook_replayed")
    assert len(await engine.list_events()) == 1


async def test_webhook_delivery_id_dedupes_resends(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    _, secret = await engine.webhooks.create("crm", event="crm.updated")
    body = b'{"id": 7}'
    first = signed(secret, body, clock(), "dlv_1")
    again = signed(secret, body, clock() + 5, "dlv_1")
    assert (
        await client.post("/api/v1/webhooks/crm", content=body, headers=first)
    ).status_code == 202
    resent = await client.post("/api/v1/webhooks/crm", content=body, headers=again)
    assert resent.status_code == 409
    (event,) = await engine.list_events()
    assert event.name == "crm.updated"


# -- signed approval links ------------------------------------------------------------------


async def test_approval_link_resolves_one_wait_without_a_key(
    engine: Engine, client: httpx.AsyncClient
) -> None:
    full = bearer((await engine.api_keys.create("ops")).secret)
    async with running_worker(engine):
        run = await engine.trigger("refund")
        (wp,) = await eventually(lambda: engine.pending_approvals(run.id))
        assert wp.token is not None
        link = await client.post(f"/api/v1/approvals/{wp.token}/link", headers=full)
        assert link.status_code == 200, link.text
        url = httpx.URL(link.json()["url"])
        assert url.host == "api.test"

        tampered = url.copy_set_param("signature", "0" * 64)
        forged = await client.post(str(tampered), json={})
        assert (forged.status_code, forged.json()["error"]["code"]) == (403, "invalid_signature")
        extended = url.copy_set_param("expires", str(int(url.params["expires"]) + 3600))
        assert (await client.post(str(extended), json={})).status_code == 403

        used = await client.post(str(url), json={"comment": "ok by finance", "data": {"amount": 9}})
        assert used.status_code == 200, used.text
        assert used.json()["approved"] is True
        again = await client.post(str(url), json={})
        assert again.status_code == 409
        done = await engine.wait(run.id, timeout=10)
    assert done.output == {"approved": True, "data": {"amount": 9}, "comment": "ok by finance"}


async def test_approval_link_expires_and_can_reject(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    full = bearer((await engine.api_keys.create("ops")).secret)
    async with running_worker(engine):
        run = await engine.trigger("refund")
        (wp,) = await eventually(lambda: engine.pending_approvals(run.id))
        link = await client.post(
            f"/api/v1/approvals/{wp.token}/link", json={"ttl": 60}, headers=full
        )
        url = link.json()["url"]
        clock.offset += 120
        expired = await client.post(url, json={})
        assert (expired.status_code, expired.json()["error"]["code"]) == (403, "link_expired")
        clock.offset = 0
        rejected = await client.post(url, json={"approved": False, "comment": "too much"})
        assert rejected.json()["approved"] is False
        done = await engine.wait(run.id, timeout=10)
    assert done.output["approved"] is False
    missing = await client.post("/api/v1/approvals/nope/link", headers=full)
    assert missing.status_code == 404


async def test_non_ascii_signatures_are_refused_not_crashed(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    await engine.webhooks.create("stripe")
    headers = {
        "X-Agentflow-Timestamp": str(int(clock())),
        "X-Agentflow-Signature": "sha256=\xe4".encode("latin-1"),
    }
    hook = await client.post("/api/v1/webhooks/stripe", content=b"{}", headers=headers)  # type: ignore[arg-type]
    assert (hook.status_code, hook.json()["error"]["code"]) == (401, "webhook_bad_signature")
    link = await client.post("/api/v1/approvals/tok/complete?expires=1&signature=%C3%A4", json={})
    assert (link.status_code, link.json()["error"]["code"]) == (403, "invalid_signature")


async def test_a_captured_delivery_cannot_be_replayed_under_a_new_id(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    _, secret = await engine.webhooks.create("stripe")
    body = b'{"type": "paid"}'
    for captured in (signed(secret, body, clock()), signed(secret, body, clock(), "dlv_1")):
        assert (
            await client.post("/api/v1/webhooks/stripe", content=body, headers=captured)
        ).status_code == 202
        forged = {**captured, "X-Agentflow-Webhook-Id": "evil-1"}
        replay = await client.post("/api/v1/webhooks/stripe", content=body, headers=forged)
        assert (replay.status_code, replay.json()["error"]["code"]) == (
            401,
            "webhook_bad_signature",
        )
    assert len(await engine.list_events()) == 2


async def test_hostile_bodies_and_headers_are_4xx_not_500(
    engine: Engine, client: httpx.AsyncClient, clock: Clock
) -> None:
    _, secret = await engine.webhooks.create("stripe")
    deep = b"[" * 100_000 + b"]" * 100_000
    link = await client.post("/api/v1/approvals/t/complete?expires=1&signature=x", content=deep)
    assert (link.status_code, link.json()["error"]["code"]) == (422, "invalid_request")
    hook = await client.post(
        "/api/v1/webhooks/stripe", content=deep, headers=signed(secret, deep, clock())
    )
    assert (hook.status_code, hook.json()["error"]["code"]) == (422, "webhook_invalid")
    huge = {"X-Agentflow-Timestamp": "1" + "0" * 400, "X-Agentflow-Signature": "sha256=00"}
    stamp = await client.post("/api/v1/webhooks/stripe", content=b"{}", headers=huge)
    assert (stamp.status_code, stamp.json()["error"]["code"]) == (401, "webhook_unsigned")
    long_id = signed(secret, b"{}", clock(), "x" * 151)
    too_long = await client.post("/api/v1/webhooks/stripe", content=b"{}", headers=long_id)
    assert too_long.status_code == 422

    full = bearer((await engine.api_keys.create("ops")).secret)
    for body, field in [
        ({"payload": "a", "delay": 1e300}, "delay"),
        ({"payload": "a", "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"payload": "a", "priority": 2**70}, "priority"),
    ]:
        bad = await client.post("/api/v1/workflows/hello/trigger", json=body, headers=full)
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["details"]["errors"][0]["field"] == field
    assert await engine.list_runs() == []
    event = await client.post("/api/v1/events", json={"name": "e" * 201}, headers=full)
    assert event.status_code == 422
    with pytest.raises(ValueError, match="delay"):
        await engine.trigger("hello", "a", delay=float("inf"))


async def test_an_unreachable_database_is_a_503_not_a_500(
    engine: Engine, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.errors import StorageUnavailableError

    async def down(secret: str) -> None:
        raise StorageUnavailableError("sqlite:///gone.db", OSError("disk gone"))

    monkeypatch.setattr(engine.api_keys, "verify", down)
    response = await client.get("/api/v1/runs", headers=bearer("af_x"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"


async def test_without_keys_only_loopback_requests_are_answered(engine: Engine) -> None:
    app = create_app(engine, auth=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        assert (await c.get("/api/v1/runs")).status_code == 200
        assert (await c.get("/api/v1/runs", headers={"Host": "localhost:8000"})).status_code == 200
        rebinding = await c.get("/api/v1/runs", headers={"Host": "evil.example"})
        assert (rebinding.status_code, rebinding.json()["error"]["code"]) == (403, "forbidden")
        cross_site = await c.post(
            "/api/v1/workflows/hello/trigger",
            content=b'{"payload": "x"}',
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert cross_site.status_code == 403
    assert await engine.list_runs() == []


async def test_setting_is_created_once_under_concurrency(engine: Engine) -> None:
    import anyio

    from agentflow.storage.auth_store import AuthStore

    store = AuthStore(engine.db, engine.clock)
    await engine.start()
    values: list[str] = []

    async def first(i: int) -> None:
        values.append(await store.setting("k", lambda: f"v{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(first, i)
    assert len(set(values)) == 1
