"""MCP tool-call round trips over streamable HTTP: calls/s and latency percentiles.

A server process serves ``agentflow.api.create_app`` (the MCP endpoint at ``/mcp``) with
uvicorn and runs a worker, on a fresh SQLite file (or ``--url``). This process runs MCP
clients (the SDK's own ``mcp.Client``), each one calling in a loop ``trigger_workflow`` (a
one-step workflow, answered at once) and then ``get_run`` on the run it started. Every tool
call is one HTTP request; its latency is measured from the call to the parsed result.
Configurations: 1 client, then 10 clients at once.

Run ``python bench/mcp_roundtrip.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from agentflow import Engine, RunContext, workflow


@workflow(id="bench_echo")
async def echo(ctx: RunContext, n: int) -> int:
    async def identity(value: int) -> int:
        return value

    return await ctx.step("identity", identity, n)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- server process ---------------------------------------------------------------------------


async def serve(url: str, port: int) -> None:
    import uvicorn

    from agentflow.api import create_app

    engine = Engine(url, [echo])
    app = create_app(engine, auth=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    async with engine, anyio.create_task_group() as tg:
        await tg.start(engine.worker(concurrency=50).run)
        await uvicorn.Server(config).serve()
        tg.cancel_scope.cancel()


# -- clients ----------------------------------------------------------------------------------


async def client_loop(url: str, calls: int, latencies: dict[str, list[float]]) -> None:
    from mcp import Client

    async with Client(url) as client:
        await client.list_tools()
        for i in range(calls // 2):
            start = time.perf_counter()
            result = await client.call_tool(
                "trigger_workflow", {"workflow": "bench_echo", "payload": i}
            )
            latencies["trigger_workflow"].append(time.perf_counter() - start)
            assert not result.is_error
            assert isinstance(result.structured_content, dict)
            run_id = result.structured_content["run"]["id"]
            start = time.perf_counter()
            result = await client.call_tool("get_run", {"run_id": run_id})
            latencies["get_run"].append(time.perf_counter() - start)
            assert not result.is_error


async def measure(url: str, clients: int, calls: int) -> None:
    await client_loop(url, 20, {"trigger_workflow": [], "get_run": []})  # warm-up
    latencies: dict[str, list[float]] = {"trigger_workflow": [], "get_run": []}
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client_loop, url, calls, latencies)
    elapsed = time.perf_counter() - start
    total = sum(len(v) for v in latencies.values())
    print(
        f"{clients:2} client(s): {total} calls in {elapsed:.2f} s = {total / elapsed:7.1f} calls/s"
    )
    every = [v for values in latencies.values() for v in values]
    for tool, values in [("all calls", every), *latencies.items()]:
        ms = [v * 1000 for v in values]
        print(
            f"    {tool:17} p50 {percentile(ms, 50):6.2f} ms   p99 {percentile(ms, 99):6.2f} ms"
            f"   mean {statistics.fmean(ms):6.2f} ms"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until_up(port: int) -> None:
    import httpx

    with anyio.fail_after(30):
        while True:
            try:
                async with httpx.AsyncClient() as http:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="tool calls per client")
    parser.add_argument("--clients", default="1,10", help="client counts to measure")
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        anyio.run(serve, args.url, args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--url", url],
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        try:
            anyio.run(wait_until_up, port)
            print(f"agentflow MCP over streamable HTTP, server + worker in one process, {url}")
            for clients in (int(c) for c in args.clients.split(",")):
                anyio.run(measure, f"http://127.0.0.1:{port}/mcp", clients, args.calls)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
