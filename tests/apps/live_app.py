"""Workflows the live-update (SSE) tests watch while a worker process runs them
(``tests.apps.live_app:engine``; the database comes from AGENTFLOW_DATABASE_URL)."""

from __future__ import annotations

import os

from agentflow import Engine, RunContext, workflow


@workflow(id="chatty")
async def chatty(ctx: RunContext, topic: str) -> str:
    """Two steps around a wait, with logs, metadata and a live stream."""
    draft = await ctx.step("draft", lambda: f"about {topic}")
    ctx.log.info("drafted", topic=topic)
    ctx.metadata.set("progress", 50)
    for token in ["about", " ", topic]:
        await ctx.publish("tokens", token)
    await ctx.wait_for_event("go", match={"topic": topic})
    final = await ctx.step("polish", lambda: draft.upper())
    ctx.log.info("polished")
    ctx.metadata.set("progress", 100)
    return final


@workflow(id="quick")
async def quick(ctx: RunContext, n: int) -> int:
    return await ctx.step("double", lambda: n * 2)


engine = Engine(os.environ.get("AGENTFLOW_DATABASE_URL", "sqlite:///live.db"), [chatty, quick])
