"""Tool calls that need a human: approve, approve with edited arguments, reject, policies.

The approval is bound to the exact arguments the model sent; the replays that follow the
decision never run an approved call twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from agentflow import Engine, RunContext, RunHandle, RunStatus, WaitpointRecord, workflow
from agentflow.agents import Agent, ScriptedModel, ToolMessage, tool, tool_call

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

refunds: Counter[str] = Counter()


@tool(requires_approval=lambda args: args["amount"] > 100)
def refund(order_id: str, amount: int) -> str:
    """Refund part of an order (over 100 needs a human)."""
    refunds[f"{order_id}:{amount}"] += 1
    return f"refunded {amount} on {order_id}"


@tool
def note(text: str) -> str:
    """Add a note to the ticket."""
    refunds[f"note:{text}"] += 1
    return "noted"


def make_agent(amount: int) -> Agent[str]:
    return Agent(
        "refunds",
        ScriptedModel(
            [
                [
                    tool_call("note", text="customer upset"),
                    tool_call("refund", order_id="ord_7", amount=amount),
                ],
                "handled",
            ]
        ),
        tools=[refund, note],
    )


@workflow(id="refund_agent")
async def refund_agent(ctx: RunContext, amount: int) -> dict[str, Any]:
    result = await make_agent(amount).run(ctx, f"refund {amount}")
    return {
        "output": result.output,
        "tool_results": [m.content for m in result.messages if isinstance(m, ToolMessage)],
        "errors": [m.is_error for m in result.messages if isinstance(m, ToolMessage)],
        "tool_calls": result.usage.tool_calls,
    }


async def pending(engine: Engine, handle: RunHandle[Any]) -> WaitpointRecord:
    [approval] = await eventually(
        lambda: engine.pending_approvals(handle.id), what="the refund approval"
    )
    return approval


async def test_approved_call_runs_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_agent])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(refund_agent, 250)
        approval = await pending(engine, handle)
        assert approval.name == "refund"
        assert approval.data == {
            "agent": "refunds",
            "tool": "refund",
            "call_id": "call_0_1",
            "arguments": {"order_id": "ord_7", "amount": 250},
        }
        # Nothing has run while the approval waits: the turn's tools start after it.
        assert refunds == Counter()
        await engine.approve(handle.id, "refund", approver="lead")
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["tool_results"] == ["noted", "refunded 250 on ord_7"]
    assert refunds == Counter({"note:customer upset": 1, "ord_7:250": 1})
    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.kind, s.name) for s in steps] == [
        (1, "llm", "refunds:model"),
        (3, "tool", "refunds:tool:note"),
        (4, "tool", "refunds:tool:refund"),
        (5, "llm", "refunds:model"),
    ]
    assert steps[2].info is not None
    assert steps[2].info["approved_by"] == "lead"
    [wait] = await engine.list_waitpoints(run_id=handle.id)
    assert (wait.seq, wait.kind, wait.status) == (2, "approval", "approved")


async def test_approver_edits_the_arguments(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_agent])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(refund_agent, 900)
        await pending(engine, handle)
        decision = await engine.approve(handle.id, "refund", approver="lead", data={"amount": 300})
        assert decision.edited
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert refunds == Counter({"note:customer upset": 1, "ord_7:300": 1})
    result = run.output["tool_results"][1]
    assert "changed the arguments" in result
    assert result.endswith("refunded 300 on ord_7")
    [step] = [s for s in await engine.get_steps(handle.id) if s.name == "refunds:tool:refund"]
    assert step.info is not None
    assert step.info["arguments"] == {"order_id": "ord_7", "amount": 300}


async def test_an_invalid_edit_fails_the_run_without_calling_the_tool(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_agent])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(refund_agent, 900)
        await pending(engine, handle)
        await engine.approve(handle.id, "refund", data={"arguments": {"amount": "a lot"}})
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "ApprovalEditError"
    assert "ord_7:900" not in refunds


async def test_rejection_and_comment_go_back_to_the_model(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([refund_agent])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(refund_agent, 5000)
        await pending(engine, handle)
        await engine.reject(handle.id, "refund", approver="lead", comment="too much, offer 50")
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert refunds == Counter({"note:customer upset": 1})
    assert run.output["errors"] == [False, True]
    rejection = run.output["tool_results"][1]
    assert "rejected by lead" in rejection
    assert "too much, offer 50" in rejection
    assert run.output["tool_calls"] == 1
    # A rejected call has no tool step: its approval is its record.
    steps = await engine.get_steps(handle.id)
    assert [s.name for s in steps] == ["refunds:model", "refunds:tool:note", "refunds:model"]


async def test_the_policy_lets_small_calls_through(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([refund_agent])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(refund_agent, 40)
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert refunds == Counter({"note:customer upset": 1, "ord_7:40": 1})
    assert await engine.list_waitpoints(run_id=handle.id) == []


@tool(requires_approval=True, approval_timeout=0.2)
def wipe(target: str) -> str:
    """Delete everything."""
    refunds[f"wipe:{target}"] += 1
    return "wiped"


timeout_agent = Agent(
    "ops", ScriptedModel([tool_call("wipe", target="prod"), "gave up"]), tools=[wipe]
)


@workflow(id="approval_timeout")
async def approval_timeout(ctx: RunContext) -> list[str]:
    result = await timeout_agent.run(ctx, "wipe prod")
    return [m.content for m in result.messages if isinstance(m, ToolMessage)]


async def test_an_unanswered_approval_times_out_and_the_model_is_told(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([approval_timeout])
    refunds.clear()
    async with running_worker(engine):
        handle = await engine.trigger(approval_timeout)
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == ["The call to wipe was not approved in time and did not run."]
    assert refunds == Counter()
