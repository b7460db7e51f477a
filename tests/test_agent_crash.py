"""A worker process killed (SIGKILL) in the middle of an agent loop.

The worker (``tests/apps/agent_app.py``) runs an agent on the real openai SDK against the
test's LLM server. Kill point: the model asked for a tool, the tool ran (its side effect is
in the file) and was journaled, and the next model request has reached the server, which
holds it unanswered. The test kills the worker there, and a new worker recovers the run.

Checked: the completed model call and the completed tool call are not made again (the
server saw the first request once; the side effect is in the file once); only the call that
was in flight at the kill is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from agentflow import Engine, RunStatus

from ._support import running_worker
from .apps.agent_app import AgentJob, agent_crash
from .apps.crash_app import deadline, spawn_worker
from .llm_server import LLMServer, Reply, serve
from .test_crash_recovery import KILLED_LEASE, LIVE_LEASE, killed, read_lines

pytestmark = pytest.mark.anyio


@deadline(60)
async def test_sigkill_between_a_tool_call_and_the_next_model_call(
    make_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    held = anyio.Event()
    server = LLMServer()
    server.script(
        Reply(tool_calls=[("record", {"note": "first"})]),
        Reply("never delivered", hold=held),  # the request in flight at the kill
        Reply("all noted"),  # the same request, sent again by the recovering worker
    )
    engine = make_engine([agent_crash])
    await engine.start()

    async with serve(server) as base_url:
        job = AgentJob(base_url=base_url, side_effects=str(effects))
        async with spawn_worker(
            "tests.apps.agent_app", database_url, tmp_path, "--lease", KILLED_LEASE
        ) as worker:
            await worker.ready()
            handle = await engine.trigger(agent_crash, job)
            await server.wait_for_requests(2)
            steps = await engine.get_steps(handle.id)
            assert [(s.kind, s.status) for s in steps] == [
                ("llm", "completed"),
                ("tool", "completed"),
            ]
            assert await read_lines(effects) == [f"{handle.id}:first"]
            await killed(worker)

        assert (await engine.get_run(handle.id)).status is RunStatus.RUNNING
        async with running_worker(engine, lease=LIVE_LEASE):
            output = await handle.result(timeout=20)

    assert output == "all noted"
    first, in_flight, resent = server.requests
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert [m["role"] for m in in_flight["messages"]] == ["system", "user", "assistant", "tool"]
    assert resent == in_flight
    assert await read_lines(effects) == [f"{handle.id}:first"]
    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.kind, s.attempts) for s in steps] == [
        (1, "llm", 1),
        (2, "tool", 1),
        (3, "llm", 1),
    ]
