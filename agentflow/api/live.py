"""Server-Sent Events: live views of one run and of the runs list.

Both are fed by polling the database, so a run executed by any process is seen. Every event
carries an id; a client that reconnects with ``Last-Event-ID`` gets what it missed:

* one run (``/api/v1/runs/{id}/events``): ``run`` (status, output, metadata: sent whenever
  the run row changes), ``step``, ``log``, ``stream`` (live chunks such as model token
  deltas) and a final ``end``. The id records the newest run change, step, log and chunk
  seen. Steps of concurrent branches can be journaled out of order, so a resumed stream
  re-sends steps finished within ``OVERLAP`` seconds of the last one seen: treat ``step``
  events as upserts keyed by ``seq``.
* the runs list (``/api/v1/runs/events``): a ``run`` event per change, filtered like the
  list endpoint. Changes are re-read with the same overlap, so a write that committed late
  is not missed; ``run`` events are snapshots, so a repeat is harmless.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agentflow._cursor import encode_cursor
from agentflow.errors import AgentflowError
from agentflow.status import RunStatus

from .errors import from_exception, from_validation
from .schemas import RequestModel

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["OVERLAP", "live_openapi", "live_routes"]

logger = logging.getLogger("agentflow.api")

OVERLAP = 2.0
KEEPALIVE = 15.0
PAGE = 500
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class RunsFeedQuery(RequestModel):
    workflow: str | None = None
    status: RunStatus | None = None
    tag: str | None = None
    since: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Unix seconds; replay changes from then (default: from now on).",
    )


@dataclass
class _RunPosition:
    run: float = -1.0
    step: float = 0.0
    log: int = 0
    chunk: int = 0

    def encode(self) -> str:
        return f"{self.run!r}_{self.step!r}_{self.log}_{self.chunk}"

    @classmethod
    def decode(cls, text: str | None) -> _RunPosition:
        if not text:
            return cls()
        try:
            run, step, log, chunk = text.split("_")
            pos = cls(float(run), float(step), int(log), int(chunk))
        except ValueError:
            return cls()  # not one of ours: start from the beginning
        if not (math.isfinite(pos.run) and math.isfinite(pos.step)):
            return cls()
        return pos


def _event(kind: str, event_id: str, data: Any) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n".encode()


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


async def _run_events(
    engine: Engine, run_id: str, pos: _RunPosition, interval: float
) -> AsyncIterator[bytes]:
    sent_steps: set[int] = set()
    yield b"retry: 1000\n\n"
    idle = 0.0
    while True:
        run = await engine.get_run(run_id)
        out: list[bytes] = []
        updated = run.updated_at.timestamp()
        if updated != pos.run:
            pos.run = updated
            out.append(_event("run", pos.encode(), _dump(run)))
        for step in await engine.get_steps(run_id, finished_after=pos.step - OVERLAP):
            finished = step.finished_at.timestamp()
            if step.seq in sent_steps:
                continue
            sent_steps.add(step.seq)
            pos.step = max(pos.step, finished)
            out.append(_event("step", pos.encode(), _dump(step)))
        for entry in await engine.get_logs(run_id, after_id=pos.log):
            pos.log = entry.id
            out.append(_event("log", pos.encode(), _dump(entry)))
        for chunk in await engine.get_stream(run_id, after_id=pos.chunk):
            pos.chunk = chunk.id
            out.append(_event("stream", pos.encode(), _dump(chunk)))
        for item in out:
            yield item
        if run.status.is_terminal and not out:
            yield _event("end", pos.encode(), {"run_id": run_id, "status": run.status.value})
            return
        idle = 0.0 if out else idle + interval
        if idle >= KEEPALIVE:
            idle = 0.0
            yield b": keepalive\n\n"
        await anyio.sleep(interval)


async def _runs_events(
    engine: Engine, query: RunsFeedQuery, last_id: str | None, interval: float
) -> AsyncIterator[bytes]:
    high = _feed_since(last_id, query.since, engine.clock())  # newest change sent
    seen: dict[str, datetime] = {}  # run id -> its change already sent, within the window
    yield b"retry: 1000\n\n"
    idle = 0.0
    while True:
        sent = False
        cursor = encode_cursor(high - OVERLAP, "")
        while True:  # every change in the window, a page at a time
            page = await engine.changed_runs(
                after=cursor,
                workflow=query.workflow,
                status=query.status,
                tag=query.tag,
                limit=PAGE,
            )
            for run in page.items:
                if seen.get(run.id) == run.updated_at:
                    continue
                seen[run.id] = run.updated_at
                updated = run.updated_at.timestamp()
                high = max(high, updated)
                sent = True
                yield _event("run", f"{updated!r}_{run.id}", _dump(run))
            if len(page.items) < PAGE or page.next_cursor is None:
                break
            cursor = page.next_cursor
        horizon = high - OVERLAP
        for run_id in [k for k, v in seen.items() if v.timestamp() < horizon]:
            del seen[run_id]
        idle = 0.0 if sent else idle + interval
        if idle >= KEEPALIVE:
            idle = 0.0
            yield b": keepalive\n\n"
        await anyio.sleep(interval)


def _feed_since(last_id: str | None, since: float | None, now: float) -> float:
    if last_id:
        try:
            value = float(last_id.split("_", 1)[0])
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    return now if since is None else since


async def _guarded(request: Request, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Stop polling once the client is gone, and end with an ``error`` event (not a broken
    connection and a server traceback) when the database fails mid-stream."""
    try:
        async for chunk in events:
            yield chunk
            if await request.is_disconnected():
                return
    except AgentflowError as exc:
        yield _event("error", "", {"code": exc.code, "message": exc.message})
    except Exception as exc:
        logger.warning("live stream %s failed: %s", request.url.path, exc)
        yield _event("error", "", {"code": "internal_error", "message": "the stream failed"})


def live_openapi() -> dict[str, dict[str, Any]]:
    """OpenAPI entries for the SSE endpoints (their bodies are event streams, not JSON)."""

    def sse(summary: str, op_id: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": op_id,
                "summary": summary,
                "tags": ["live"],
                "parameters": [
                    *params,
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "An event stream (text/event-stream).",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
            }
        }

    feed = RunsFeedQuery.model_json_schema()["properties"]
    return {
        "/api/v1/runs/events": sse(
            "Live changes of runs (SSE), filtered like the runs list.",
            "runs_events",
            [{"name": k, "in": "query", "schema": v} for k, v in feed.items()],
        ),
        "/api/v1/runs/{run_id}/events": sse(
            "Live events of one run (SSE): run, step, log, stream, end.",
            "run_events",
            [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        ),
    }


def live_routes(engine: Engine, *, interval: float = 0.25) -> list[Route]:
    """The two SSE routes; ``interval`` is how often the database is polled."""

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            await engine.get_run(run_id)  # 404 before the stream starts
        except Exception as exc:
            return from_exception(exc, request)
        pos = _RunPosition.decode(request.headers.get("last-event-id"))
        stream = _guarded(request, _run_events(engine, run_id, pos, interval))
        return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)

    async def runs_events(request: Request) -> Response:
        try:
            query = RunsFeedQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return from_exception(from_validation(exc, "query"), request)
        last_id = request.headers.get("last-event-id")
        stream = _guarded(request, _runs_events(engine, query, last_id, interval))
        return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)

    return [
        Route("/api/v1/runs/events", runs_events, methods=["GET"], name="runs_events"),
        Route("/api/v1/runs/{run_id}/events", run_events, methods=["GET"], name="run_events"),
    ]
