"""An OpenAI-compatible chat-completions server on 127.0.0.1, scripted per test.

Real clients (the openai SDK, litellm) talk to it over HTTP. Each request takes the next
action of the script: a reply (text and/or tool calls, streamed as SSE chunks when the
request asks for a stream), or an HTTP error (429 with Retry-After, 400...). A reply can be
held until the test releases it. Every request body is recorded, in order.

    server = LLMServer()
    server.script(Reply(tool_calls=[("lookup", {"q": "x"})]), Reply("done"))
    async with serve(server) as base_url:  # http://127.0.0.1:PORT/v1
        ...
"""

from __future__ import annotations

import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Fail", "LLMServer", "Reply", "serve"]


@dataclass
class Reply:
    """An assistant reply. ``tool_calls`` are ``(name, arguments)`` pairs."""

    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    prompt_tokens: int = 20
    completion_tokens: int = 10
    hold: anyio.Event | None = None  # answer only once the test sets it
    chunk_size: int = 3  # characters per streamed content delta
    drop_stream: bool = False  # break the connection after the first streamed content delta


@dataclass
class Fail:
    """An HTTP error response in OpenAI's error shape."""

    status: int
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


Action = Reply | Fail


class LLMServer:
    def __init__(self, responder: Callable[[dict[str, Any]], Action] | None = None) -> None:
        self._script: deque[Action] = deque()
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self._arrivals: list[tuple[int, anyio.Event]] = []
        self._holds: list[anyio.Event] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def script(self, *actions: Action) -> None:
        self._script.extend(actions)
        self._holds.extend(a.hold for a in actions if isinstance(a, Reply) and a.hold)

    async def wait_for_requests(self, n: int) -> None:
        """Return once ``n`` requests have arrived (call under a deadline)."""
        if len(self.requests) >= n:
            return
        event = anyio.Event()
        self._arrivals.append((n, event))
        await event.wait()

    def release_all(self) -> None:
        for hold in self._holds:
            hold.set()

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        for n, event in self._arrivals:
            if len(self.requests) >= n:
                event.set()
        if self._script:
            action = self._script.popleft()
        elif self.responder is not None:
            action = self.responder(body)
        else:
            action = Fail(500, f"the test script has no answer for request #{len(self.requests)}")
        if isinstance(action, Fail):
            return JSONResponse(
                {"error": {"message": action.message, "type": "test_error", "code": None}},
                status_code=action.status,
                headers=action.headers,
            )
        if action.hold is not None:
            await action.hold.wait()
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _sse(action, body["model"], usage), media_type="text/event-stream"
            )
        return JSONResponse(_completion(action, body["model"]))


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{i}_{name}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
        for i, (name, args) in enumerate(reply.tool_calls)
    ]


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = _calls(reply)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": _usage(reply),
    }


async def _sse(reply: Reply, model: str, include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    text = reply.content or ""
    for start in range(0, len(text), reply.chunk_size):
        yield chunk({"content": text[start : start + reply.chunk_size]})
        if reply.drop_stream:
            # The server fails mid-response: the client sees the body end unfinished.
            raise ConnectionAbortedError("the test dropped the stream")
    for i, call in enumerate(_calls(reply)):
        head = {"index": i, "id": call["id"], "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"]}}]})
        args = call["function"]["arguments"]
        for start in range(0, len(args), 7):
            part = {"index": i, "function": {"arguments": args[start : start + 7]}}
            yield chunk({"tool_calls": [part]})
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if include_usage:
        data = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [],
            "usage": _usage(reply),
        }
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"


class _Uvicorn(uvicorn.Server):
    """Sets ``ready`` once listening (uvicorn itself only has a flag to poll)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@asynccontextmanager
async def serve(server: LLMServer) -> AsyncIterator[str]:
    """Serve ``server`` on a free port of 127.0.0.1 in this event loop; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        server.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    http = _Uvicorn(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.serve, [sock])
            with anyio.fail_after(10):
                await http.ready.wait()
            try:
                yield f"http://127.0.0.1:{port}/v1"
            finally:
                server.release_all()
                http.should_exit = True
    finally:
        sock.close()
