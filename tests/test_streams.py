"""Live run streams and step info: published chunks are readable at once and in order."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from agentflow import Engine, RunContext, workflow

from ._support import running_worker

pytestmark = pytest.mark.anyio


@workflow(id="talk")
async def talk(ctx: RunContext) -> str:
    for part in ["he", "llo"]:
        await ctx.publish("tokens", part)
    await ctx.publish("other", "x")
    return await ctx.step("final", lambda: "hello", kind="llm", info={"prompt": "hi"})


async def test_published_chunks_and_step_info(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([talk])
    async with running_worker(engine):
        run = await engine.trigger("talk")
        done = await engine.wait(run.id, timeout=10)
    assert done.output == "hello"
    chunks = await engine.get_stream(run.id)
    assert [(c.stream, c.data) for c in chunks] == [
        ("tokens", "he"),
        ("tokens", "llo"),
        ("other", "x"),
    ]
    after = await engine.get_stream(run.id, stream="tokens", after_id=chunks[0].id)
    assert [c.data for c in after] == ["llo"]
    (step,) = await engine.get_steps(run.id)
    assert (step.kind, step.info) == ("llm", {"prompt": "hi"})


@workflow(id="fan_logs")
async def fan_logs(ctx: RunContext, n: int) -> int:
    async def one(i: int) -> int:
        ctx.log.info("before", i=i)
        value = await ctx.step(f"s{i}", lambda: i)
        await ctx.publish("out", str(i))
        return value

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return n


async def test_a_reader_following_logs_and_chunks_by_id_misses_none(
    make_engine: Callable[..., Engine],
) -> None:
    """Concurrent steps of one run save their logs one write at a time, so ids become
    visible in order and a cursor that follows them by id never skips one."""
    engine = make_engine([fan_logs])
    n = 40
    seen_logs: list[int] = []
    seen_chunks: list[int] = []
    async with running_worker(engine, concurrency=4):
        run = await engine.trigger("fan_logs", n)

        async def follow() -> None:
            log_cursor = chunk_cursor = 0
            while True:
                done = (await engine.get_run(run.id)).status.is_terminal
                for entry in await engine.get_logs(run.id, after_id=log_cursor):
                    log_cursor = entry.id
                    seen_logs.append(entry.fields["i"])
                for chunk in await engine.get_stream(run.id, after_id=chunk_cursor):
                    chunk_cursor = chunk.id
                    seen_chunks.append(int(chunk.data))
                if done:
                    return
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(30):
            await follow()
    assert sorted(seen_logs) == list(range(n))
    assert sorted(seen_chunks) == list(range(n))
