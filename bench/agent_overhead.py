"""Journaling overhead of the agent loop, per model call and per tool call, on the offline
model (no network: the model answers in microseconds, so what is measured is agentflow).

Three workflows run one after another, each ``--runs`` times (after warm-up runs), started
and awaited with an in-process worker:

* ``agent``: an agent whose ``ScriptedModel`` asks for one no-op tool per turn for
  ``--turns`` turns, then answers: ``turns + 1`` llm steps and ``turns`` tool steps;
* ``agent_parallel``: the same with ``--fanout`` tool calls per turn (run side by side);
* ``steps``: a workflow of as many plain no-op ``ctx.step`` calls as the ``agent`` run has
  journaled calls: the floor the agent loop adds its own work to.

It also times the **replay** of a finished agent loop: the same agent followed by an
approval; the clock runs from the approval to the run's completion, so it measures
re-executing the loop from the journal (no model or tool is called again).

The tool is async, like the plain steps (a sync tool adds a worker-thread hop per call).

Reported: wall time per run and per journaled call (µs), for SQLite (a fresh file) and, with
``--postgres URL``, for Postgres (a fresh database, dropped afterwards).

    python bench/agent_overhead.py [--turns 10] [--fanout 3] [--runs 50] [--postgres URL]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import sqlalchemy as sa

from agentflow import Engine, RunContext, workflow
from agentflow.agents import Agent, ScriptedModel, tool, tool_call

TURNS = 10
FANOUT = 3


@tool
async def noop(i: int) -> int:
    """Return i."""
    return i


def make_agent(turns: int, fanout: int) -> Agent[str]:
    replies: list[object] = [
        [tool_call("noop", i=t * fanout + k) for k in range(fanout)]
        if fanout > 1
        else tool_call("noop", i=t)
        for t in range(turns)
    ]
    replies.append("done")
    return Agent("bench", ScriptedModel(replies), tools=[noop], max_turns=turns + 1)  # type: ignore[arg-type]


AGENTS: dict[str, Agent[str]] = {}


@workflow(id="agent")
async def agent_wf(ctx: RunContext, key: str) -> str:
    return (await AGENTS[key].run(ctx, "go")).output


@workflow(id="agent_then_approval")
async def agent_then_approval(ctx: RunContext, key: str) -> str:
    result = await AGENTS[key].run(ctx, "go")
    await ctx.wait_for_approval("replay", data=None)
    return result.output


async def _noop_step(i: int) -> int:
    return i


@workflow(id="steps")
async def steps_wf(ctx: RunContext, n: int) -> int:
    for i in range(n):
        await ctx.step("s", _noop_step, i)
    return n


async def timed(engine: Engine, wf: object, payload: object, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        await (await engine.trigger(wf, payload)).result(timeout=60)  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(runs):
        await (await engine.trigger(wf, payload)).result(timeout=60)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / runs


async def replay_time(engine: Engine, runs: int) -> float:
    samples = []
    for _ in range(runs):
        handle = await engine.trigger(agent_then_approval, "seq")
        while not await engine.pending_approvals(handle.id):  # noqa: ASYNC110 - database state
            await anyio.sleep(0.005)
        started = time.perf_counter()
        await engine.approve(handle.id, "replay")
        await handle.result(timeout=60)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def measure(url: str, label: str, turns: int, fanout: int, runs: int) -> None:
    engine = Engine(url, [agent_wf, agent_then_approval, steps_wf])
    calls_seq = 2 * turns + 1
    calls_par = turns * (fanout + 1) + 1
    async with engine, anyio.create_task_group() as tg:
        worker = await tg.start(engine.worker(concurrency=50, poll_interval=0.01).run)
        try:
            agent = await timed(engine, agent_wf, "seq", runs, 3)
            parallel = await timed(engine, agent_wf, "par", runs, 3)
            floor = await timed(engine, steps_wf, calls_seq, runs, 3)
            replay = await replay_time(engine, max(5, runs // 5))
        finally:
            worker.stop()
    print(f"\n{label}")
    print(
        f"  agent, {turns} turns x 1 tool   {agent * 1000:8.2f} ms/run   "
        f"{agent / calls_seq * 1e6:8.0f} µs per journaled call ({calls_seq} calls)"
    )
    print(
        f"  agent, {turns} turns x {fanout} tools  {parallel * 1000:8.2f} ms/run   "
        f"{parallel / calls_par * 1e6:8.0f} µs per journaled call ({calls_par} calls)"
    )
    print(
        f"  plain steps, same count      {floor * 1000:8.2f} ms/run   "
        f"{floor / calls_seq * 1e6:8.0f} µs per step ({calls_seq} steps)"
    )
    print(f"  agent loop cost over steps   {(agent - floor) / calls_seq * 1e6:8.0f} µs per call")
    print(
        f"  replay of the finished loop  {replay * 1000:8.2f} ms (approval -> completed, "
        f"median; {calls_seq} calls from the journal, none made again)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--fanout", type=int, default=FANOUT)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--postgres", help="also measure on this Postgres server")
    args = parser.parse_args()
    AGENTS["seq"] = make_agent(args.turns, 1)
    AGENTS["par"] = make_agent(args.turns, args.fanout)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        anyio.run(
            measure, url, "SQLite (WAL, synchronous=normal)", args.turns, args.fanout, args.runs
        )
    if args.postgres:
        name = f"agentflow_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(
            args.postgres.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            url = sa.make_url(args.postgres).set(database=name).render_as_string(False)
            anyio.run(measure, url, "Postgres", args.turns, args.fanout, args.runs)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()


if __name__ == "__main__":
    main()
