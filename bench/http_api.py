"""HTTP API throughput and latency: trigger and get-run over loopback, worker running.

Three processes, as in production: ``agentflow serve`` (the API), ``agentflow worker``
(executes the triggered runs) and this load generator (N concurrent keep-alive
connections). Each phase sends a fixed number of requests and reports requests/s and
p50/p99 latency as seen by the client. Auth is on (a full-access key, as users run it).

    python bench/http_api.py                  # SQLite file in a temp dir
    python bench/http_api.py --postgres URL   # a Postgres database (emptied first)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx

REPO = Path(__file__).resolve().parent.parent
AGENTFLOW = [sys.executable, "-m", "agentflow.cli"]
APP = "bench.http_app:engine"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less than the
    server it measures (httpx spends ~1 ms of CPU per request, more than the API itself)."""

    def __init__(self, stream: anyio.abc.SocketStream, port: int, key: str) -> None:
        self.stream = stream
        self.head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        self.buffer = b""

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        head = f"{method} {path} HTTP/1.1\r\n{self.head}{extra if body else ''}\r\n"
        await self.stream.send(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive()
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), json.loads(payload)


Request = Callable[[Connection, int], Awaitable[tuple[int, Any]]]


async def phase(
    port: int, key: str, name: str, requests: int, concurrency: int, make: Request
) -> list[str]:
    latencies: list[float] = []
    ids: list[str] = []
    todo = iter(range(requests))

    async def user() -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            conn = Connection(stream, port, key)
            for i in todo:
                start = time.perf_counter()
                status, body = await make(conn, i)
                latencies.append(time.perf_counter() - start)
                assert status in (200, 202), body
                ids.append(body["run"]["id"] if "run" in body else body["id"])

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(user)
    elapsed = time.perf_counter() - began
    print(
        f"{name:<10} c={concurrency:<3} {requests / elapsed:8.0f} req/s   "
        f"p50 {percentile(latencies, 50) * 1000:6.2f} ms   "
        f"p99 {percentile(latencies, 99) * 1000:6.2f} ms   ({requests} requests)"
    )
    return ids


def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="agentflow-http-bench-"))
    url = args.postgres or f"sqlite:///{workdir / 'bench.db'}"
    env = {**os.environ, "AGENTFLOW_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    if args.postgres:
        sys.path.insert(0, str(REPO))
        from tests._support import reset_postgres

        subprocess.run([*AGENTFLOW, "db", "upgrade", APP], env=env, check=True, cwd=REPO)
        reset_postgres(args.postgres)
    created = subprocess.run(
        [*AGENTFLOW, "keys", "create", APP, "bench"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    quiet = ["--log-level", "warning"]
    server = subprocess.Popen(
        [*AGENTFLOW, "serve", APP, "--port", str(args.port), *quiet], env=env, cwd=REPO
    )
    worker = subprocess.Popen([*AGENTFLOW, "worker", APP, *quiet], env=env, cwd=REPO)
    print(f"database: {url.split('@')[-1]}")
    try:
        anyio.run(load, args.port, created.stdout.strip(), args)
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


async def load(port: int, key: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            await anyio.sleep(0.1)

    async def trigger(conn: Connection, i: int) -> tuple[int, Any]:
        body = json.dumps({"payload": i}).encode()
        return await conn.request("POST", "/api/v1/workflows/bench_http/trigger", body)

    await phase(port, key, "warmup", 200, 4, trigger)
    ids: list[str] = []
    for concurrency in args.concurrency:
        ids += await phase(port, key, "trigger", args.requests, concurrency, trigger)

    async def get_run(conn: Connection, i: int) -> tuple[int, Any]:
        return await conn.request("GET", f"/api/v1/runs/{ids[i % len(ids)]}")

    for concurrency in args.concurrency:
        await phase(port, key, "get-run", args.requests, concurrency, get_run)
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        _, last = await Connection(stream, port, key).request("GET", f"/api/v1/runs/{ids[-1]}")
    print(f"last triggered run: {last['status']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--postgres", metavar="URL", help="benchmark on this Postgres database")
    main(parser.parse_args())
