"""Token and cost budgets: stop the agent, or pause it on an approval to continue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentflow import Engine, RunContext, RunStatus, workflow
from agentflow.agents import (
    Agent,
    AssistantMessage,
    Budget,
    ModelPrice,
    ModelResponse,
    ScriptedModel,
    Usage,
    tool,
    tool_call,
)

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio


@tool
def step_tool(i: int) -> int:
    """Do one step of work."""
    return i


def costly(reply: AssistantMessage | str) -> ModelResponse:
    message = reply if isinstance(reply, AssistantMessage) else AssistantMessage(content=reply)
    return ModelResponse(message, Usage(input_tokens=40, output_tokens=20))


def work(i: int) -> ModelResponse:
    return costly(AssistantMessage(tool_calls=[tool_call("step_tool", i=i)]))


SCRIPT = [work(1), work(2), work(3), work(4), costly("finished")]


def make_agent(budget: Budget, price: ModelPrice | None = None) -> Agent[str]:
    return Agent("worker", ScriptedModel(SCRIPT, price=price), tools=[step_tool], budget=budget)


@workflow(id="budgeted")
async def budgeted(ctx: RunContext, options: dict[str, Any]) -> dict[str, Any]:
    price = ModelPrice(1000.0, 2000.0) if options.get("priced") else None
    budget = Budget(**options["budget"])
    result = await make_agent(budget, price).run(ctx, "work")
    return {"output": result.output, "usage": result.usage.to_dict()}


async def test_token_budget_stops_the_agent(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([budgeted])
    async with running_worker(engine):
        handle = await engine.trigger(budgeted, {"budget": {"max_total_tokens": 150}})
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "BudgetExceededError"
    assert "token budget used up: 180 of max_total_tokens=150" in run.error["message"]
    # Checked before each request: three calls (60 tokens each) reach 180, no fourth.
    steps = await engine.get_steps(handle.id)
    assert [s.kind for s in steps].count("llm") == 3


async def test_cost_budget_uses_the_model_price(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([budgeted])
    async with running_worker(engine):
        handle = await engine.trigger(budgeted, {"priced": True, "budget": {"max_cost_usd": 0.15}})
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "BudgetExceededError"
    # Each call costs 40 * $1000/M + 20 * $2000/M = $0.08: the second reaches $0.16.
    assert "cost budget used up: $0.160000" in run.error["message"]
    steps = await engine.get_steps(handle.id)
    llm = [s for s in steps if s.kind == "llm"]
    assert [s.output["cost_usd"] for s in llm] == [pytest.approx(0.08)] * 2


async def test_budget_pause_approve_and_continue(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([budgeted])
    options = {"budget": {"max_total_tokens": 120, "on_exceeded": "approve"}}
    async with running_worker(engine):
        handle = await engine.trigger(budgeted, options)
        [first] = await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        assert first.name == "worker:budget"
        assert first.data["usage"]["total_tokens"] == 120
        assert first.data["max_total_tokens"] == 120
        await engine.approve(handle.id, "worker:budget", approver="finance")

        # Another budget's worth (120 more tokens) later, it asks again: approve with an edit.
        async def second_ask() -> list[Any]:
            pending = await engine.pending_approvals(handle.id)
            return [a for a in pending if a.id != first.id]

        [second] = await eventually(second_ask, what="the second budget approval")
        assert second.data["usage"]["total_tokens"] == 240
        assert second.data["max_total_tokens"] == 240
        await engine.approve(handle.id, "worker:budget", data={"max_total_tokens": 10_000})
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["output"] == "finished"
    assert run.output["usage"]["total_tokens"] == 300
    steps = await engine.get_steps(handle.id)
    assert [s.kind for s in steps].count("llm") == 5
    waits = await engine.list_waitpoints(run_id=handle.id)
    assert [(w.name, w.status) for w in waits] == [
        ("worker:budget", "approved"),
        ("worker:budget", "approved"),
    ]


async def test_rejected_budget_extension_fails_the_run(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([budgeted])
    options = {"budget": {"max_total_tokens": 100, "on_exceeded": "approve"}}
    async with running_worker(engine):
        handle = await engine.trigger(budgeted, options)
        await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        await engine.reject(handle.id, "worker:budget", approver="finance", comment="enough")
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "BudgetExceededError"
    assert "rejected by finance: enough" in run.error["message"]
