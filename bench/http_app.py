"""The app the HTTP API benchmark serves (``bench.http_app:engine``); the database comes
from AGENTFLOW_DATABASE_URL."""

from __future__ import annotations

import os

from agentflow import Engine, RunContext, workflow


@workflow(id="bench_http")
async def one_step(ctx: RunContext, n: int) -> int:
    return await ctx.step("double", lambda: n * 2)


engine = Engine(os.environ.get("AGENTFLOW_DATABASE_URL", "sqlite:///bench_http.db"), [one_step])
