"""The agent loop on offline models: journaled model and tool calls, replay without repeats,
structured output, tool argument errors, concurrent tool calls, max_turns, streaming."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from agentflow import Engine, RunContext, RunStatus, workflow
from agentflow.agents import (
    Agent,
    AssistantMessage,
    FunctionModel,
    ModelRequest,
    ModelResponse,
    ModelRetry,
    ScriptedModel,
    StreamBuffer,
    ToolMessage,
    Usage,
    tool,
    tool_call,
)
from agentflow.agents.tools import _parse_docstring

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

calls: Counter[str] = Counter()


async def finish(engine: Engine, wf: Any, payload: Any = None) -> Any:
    async with running_worker(engine):
        handle = await engine.trigger(wf, payload)
        return await engine.wait(handle.id, timeout=20)


# -- a tool loop, journaled ---------------------------------------------------------------


@tool
def lookup_order(order_id: str, include_items: bool = False) -> dict[str, Any]:
    """Look up an order by id.

    Args:
        order_id: The order's id, e.g. ord_1.
        include_items: Whether to list the items too.
    """
    calls[f"lookup:{order_id}"] += 1
    order: dict[str, Any] = {"order_id": order_id, "status": "shipped"}
    if include_items:
        order["items"] = ["kettle"]
    return order


loop_model = ScriptedModel(
    [tool_call("lookup_order", order_id="ord_1", include_items=True), "Your kettle shipped."]
)
loop_agent = Agent("support", loop_model, "Be brief.", tools=[lookup_order])


@workflow(id="agent_loop")
async def agent_loop(ctx: RunContext, question: str) -> dict[str, Any]:
    result = await loop_agent.run(ctx, question)
    # A wait after the agent: the run is replayed from the top once it is approved.
    decision = await ctx.wait_for_approval("send", data={"answer": result.output})
    return {
        "output": result.output,
        "approved": decision.approved,
        "requests": result.usage.requests,
        "tool_calls": result.usage.tool_calls,
        "tokens": result.usage.total_tokens,
        "roles": [m.role for m in result.messages],
    }


async def test_tool_loop_is_journaled_and_replays_without_calling_again(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([agent_loop])
    before = len(loop_model.requests)
    calls.clear()
    async with running_worker(engine):
        handle = await engine.trigger(agent_loop, "Where is my order ord_1?")
        await eventually(lambda: engine.pending_approvals(handle.id), what="the approval")
        await engine.approve(handle.id, "send", approver="lead")
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["output"] == "Your kettle shipped."
    assert run.output["roles"] == ["system", "user", "assistant", "tool", "assistant"]
    assert (run.output["requests"], run.output["tool_calls"]) == (2, 1)
    assert run.output["tokens"] > 0
    # The replay after the approval called neither the model nor the tool again.
    assert len(loop_model.requests) - before == 2
    assert calls == Counter({"lookup:ord_1": 1})

    steps = await engine.get_steps(handle.id)
    assert [(s.seq, s.kind, s.name) for s in steps] == [
        (1, "llm", "support:model"),
        (2, "tool", "support:tool:lookup_order"),
        (3, "llm", "support:model"),
    ]
    first, tool_step, second = steps
    assert first.info is not None
    assert first.info["model"] == "scripted"
    assert [m["role"] for m in first.info["messages"]] == ["system", "user"]
    assert first.info["tools"] == ["lookup_order"]
    assert first.info["prompt_tokens"] > 0
    assert first.output["message"]["tool_calls"][0]["name"] == "lookup_order"
    assert first.output["usage"]["input_tokens"] > 0
    assert first.output["latency_ms"] is not None
    assert tool_step.info == {
        "agent": "support",
        "tool": "lookup_order",
        "call_id": "call_0_0",
        "arguments": {"order_id": "ord_1", "include_items": True},
    }
    assert tool_step.output == {
        "value": {"order_id": "ord_1", "status": "shipped", "items": ["kettle"]},
        "error": None,
    }
    assert second.info is not None
    assert [m["role"] for m in second.info["messages"]] == ["system", "user", "assistant", "tool"]


def test_tool_schema_comes_from_the_signature_and_docstring() -> None:
    definition = lookup_order.definition
    assert definition.name == "lookup_order"
    assert definition.description == "Look up an order by id."
    assert definition.parameters["required"] == ["order_id"]
    props = definition.parameters["properties"]
    assert props["order_id"]["type"] == "string"
    assert props["order_id"]["description"] == "The order's id, e.g. ord_1."
    assert props["include_items"] == {
        "default": False,
        "description": "Whether to list the items too.",
        "title": "Include Items",
        "type": "boolean",
    }
    assert definition.parameters["additionalProperties"] is False

    @tool(name="refund", requires_approval=True)
    async def refund_tool(ctx: RunContext, amount: int) -> str:
        """Refund money.

        :param amount: in cents
        """
        return "ok"

    assert refund_tool.takes_ctx
    assert list(refund_tool.definition.parameters["properties"]) == ["amount"]
    assert refund_tool.definition.parameters["properties"]["amount"]["description"] == "in cents"
    assert _parse_docstring("Summary.\n\nArgs:\n    a (int): first\n        continued\n") == (
        "Summary.",
        {"a": "first continued"},
    )


# -- structured output --------------------------------------------------------------------


class Verdict(BaseModel):
    category: str
    confidence: float = Field(ge=0, le=1)


structured_model = ScriptedModel(
    [
        "I think it is billing.",  # not JSON
        '```json\n{"category": "billing", "confidence": 7}\n```',  # out of range
        '{"category": "billing", "confidence": 0.9}',
    ]
)
structured_agent = Agent("classify", structured_model, output_type=Verdict, output_retries=2)
stubborn_agent = Agent(
    "stubborn", ScriptedModel(["nope", "still nope"]), output_type=Verdict, output_retries=1
)


@workflow(id="structured")
async def structured(ctx: RunContext) -> Verdict:
    return (await structured_agent.run(ctx, "My card was charged twice")).output


@workflow(id="stubborn")
async def stubborn(ctx: RunContext) -> Verdict:
    return (await stubborn_agent.run(ctx, "?")).output


async def test_structured_output_is_retried_with_the_validation_errors(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([structured])
    before = len(structured_model.requests)
    run = await finish(engine, structured)
    assert run.status is RunStatus.COMPLETED, run.error
    assert Verdict.model_validate(run.output) == Verdict(category="billing", confidence=0.9)
    sent = structured_model.requests[before:]
    assert len(sent) == 3
    system = sent[0].messages[0]
    assert system.role == "system"
    assert '"confidence"' in system.content  # the schema is in the instructions
    assert sent[0].output_schema is not None
    feedback = sent[2].messages[-1]
    assert feedback.role == "user"
    assert "confidence" in feedback.content
    assert "less than or equal to 1" in feedback.content


async def test_output_that_stays_invalid_fails_the_run(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([stubborn])
    run = await finish(engine, stubborn)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "OutputValidationError"
    assert run.attempt == 1


# -- tool arguments, unknown tools, ModelRetry --------------------------------------------


@tool
def transfer(amount_cents: int, to: str) -> str:
    """Move money."""
    calls[f"transfer:{amount_cents}:{to}"] += 1
    if to == "nobody":
        raise ModelRetry("no account called 'nobody'; ask the user for the account name")
    return f"moved {amount_cents}"


correcting_model = ScriptedModel(
    [
        [tool_call("transfer", amount_cents="lots", to="bob"), tool_call("teleport", to="mars")],
        tool_call("transfer", amount_cents=500, to="nobody"),
        tool_call("transfer", amount_cents=500, to="bob"),
        "Done.",
    ]
)
correcting_agent = Agent("bank", correcting_model, tools=[transfer])


@workflow(id="correcting")
async def correcting(ctx: RunContext) -> str:
    return (await correcting_agent.run(ctx, "send bob 5 dollars")).output


async def test_invalid_arguments_and_tool_errors_go_back_to_the_model(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([correcting])
    calls.clear()
    before = len(correcting_model.requests)
    run = await finish(engine, correcting)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == "Done."
    assert calls == Counter({"transfer:500:nobody": 1, "transfer:500:bob": 1})

    second = correcting_model.requests[before + 1].messages
    invalid, unknown = second[-2], second[-1]
    assert isinstance(invalid, ToolMessage)
    assert invalid.is_error
    assert "amount_cents" in invalid.content
    assert isinstance(unknown, ToolMessage)
    assert unknown.is_error
    assert "unknown tool 'teleport'" in unknown.content
    retry = correcting_model.requests[before + 2].messages[-1]
    assert isinstance(retry, ToolMessage)
    assert (retry.is_error, retry.content) == (
        True,
        "no account called 'nobody'; ask the user for the account name",
    )

    steps = await engine.get_steps(run.id)
    tools = [(s.name, s.output["error"] is not None) for s in steps if s.kind == "tool"]
    assert tools == [
        ("bank:tool:transfer", True),
        ("bank:tool:teleport", True),
        ("bank:tool:transfer", True),
        ("bank:tool:transfer", False),
    ]


# -- concurrent tool calls ----------------------------------------------------------------

finished: list[str] = []
events: dict[str, anyio.Event] = {}


@tool
async def slow(name: str, after: str | None = None) -> str:
    """A tool that finishes only after another one did."""
    if after is not None:
        await events.setdefault(after, anyio.Event()).wait()
    finished.append(name)
    events.setdefault(name, anyio.Event()).set()
    calls[f"slow:{name}"] += 1
    return name.upper()


parallel_model = ScriptedModel(
    [
        [
            tool_call("slow", name="a", after="b"),
            tool_call("slow", name="b", after="c"),
            tool_call("slow", name="c"),
        ],
        "a, b and c",
    ]
)
parallel_agent = Agent("fan", parallel_model, tools=[slow])


@workflow(id="parallel")
async def parallel(ctx: RunContext) -> list[str]:
    result = await parallel_agent.run(ctx, "run them all")
    await ctx.wait_for_approval("ok", data=None)
    return [m.content for m in result.messages if isinstance(m, ToolMessage)]


async def test_concurrent_tool_calls_journal_in_call_order_and_replay_identically(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([parallel])
    calls.clear()
    finished.clear()
    events.clear()
    async with running_worker(engine):
        handle = await engine.trigger(parallel)
        await eventually(lambda: engine.pending_approvals(handle.id), what="the approval")
        journal = await engine.get_steps(handle.id)
        await engine.approve(handle.id, "ok")
        run = await engine.wait(handle.id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    # They ran side by side and finished in reverse order...
    assert finished == ["c", "b", "a"]
    # ...but positions follow the model's call order, and results pair with their calls.
    assert run.output == ["A", "B", "C"]
    steps = await engine.get_steps(handle.id)
    assert [
        (s.seq, s.name, s.info["arguments"]["name"] if s.kind == "tool" else None) for s in steps
    ] == [
        (1, "fan:model", None),
        (2, "fan:tool:slow", "a"),
        (3, "fan:tool:slow", "b"),
        (4, "fan:tool:slow", "c"),
        (5, "fan:model", None),
    ]
    # The replay after the approval found every call in the journal: nothing ran again and
    # nothing was rewritten.
    assert calls == Counter({"slow:a": 1, "slow:b": 1, "slow:c": 1})
    assert [(s.seq, s.name, s.output, s.finished_at) for s in steps] == [
        (s.seq, s.name, s.output, s.finished_at) for s in journal
    ]


# -- max_turns ----------------------------------------------------------------------------


@tool
def ping() -> str:
    """Ping."""
    calls["ping"] += 1
    return "pong"


looping_agent = Agent(
    "looper", FunctionModel(lambda messages, request: tool_call("ping")), tools=[ping], max_turns=3
)


@workflow(id="looping")
async def looping(ctx: RunContext) -> str:
    return (await looping_agent.run(ctx, "go")).output


async def test_max_turns_fails_the_run_instead_of_succeeding(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([looping])
    calls.clear()
    run = await finish(engine, looping)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "MaxTurnsExceededError"
    assert "max_turns=3" in run.error["message"]
    steps = await engine.get_steps(run.id)
    assert [s.kind for s in steps] == ["llm", "tool", "llm", "tool", "llm"]
    # The last answer asked for tools with no turn left to read them: they did not run.
    assert calls == Counter({"ping": 2})


# -- tools that use the run context -------------------------------------------------------


def _charge(amount: int) -> str:
    calls[f"charge:{amount}"] += 1
    return f"ch_{amount}"


@tool
async def charge(ctx: RunContext, amount: int) -> dict[str, str]:
    """Charge the card, as a step of its own."""
    ctx.log.info("charging", amount=amount)
    charge_id = await ctx.step("charge_card", _charge, amount)
    return {"charge": charge_id}


ctx_model = ScriptedModel([[tool_call("charge", amount=5), tool_call("ping")], "charged"])
ctx_agent = Agent("biller", ctx_model, tools=[charge, ping])


@workflow(id="ctx_tools")
async def ctx_tools(ctx: RunContext) -> str:
    result = await ctx_agent.run(ctx, "charge 5")
    await ctx.sleep(0.05)  # the run replays after the timer
    return result.output


async def test_a_tool_can_take_steps_through_the_run_context(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([ctx_tools])
    calls.clear()
    run = await finish(engine, ctx_tools)
    assert run.status is RunStatus.COMPLETED, run.error
    assert calls == Counter({"charge:5": 1, "ping": 1})
    steps = await engine.get_steps(run.id)
    # Plain tools first (side by side), then tools taking the context, each after its steps.
    assert [(s.seq, s.kind, s.name) for s in steps] == [
        (1, "llm", "biller:model"),
        (2, "tool", "biller:tool:ping"),
        (3, "step", "charge_card"),
        (4, "tool", "biller:tool:charge"),
        (5, "llm", "biller:model"),
    ]
    assert steps[3].output == {"value": {"charge": "ch_5"}, "error": None}
    assert [log.message for log in await engine.get_logs(run.id)] == ["charging"]


# -- streaming ----------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(120))
streaming_agent = Agent("talker", ScriptedModel([LONG]), stream="tokens")


@workflow(id="streaming")
async def streaming(ctx: RunContext) -> str:
    return (await streaming_agent.run(ctx, "talk")).output


async def test_streamed_text_is_published_in_batches_and_journaled_whole(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([streaming])
    run = await finish(engine, streaming)
    assert run.status is RunStatus.COMPLETED, run.error
    chunks = await engine.get_stream(run.id, stream="tokens")
    assert "".join(c.data for c in chunks) == LONG
    # 120 deltas, batched by size (256 chars) or age: far fewer writes than deltas.
    assert 1 < len(chunks) < 120
    [step] = await engine.get_steps(run.id)
    assert step.output["message"]["content"] == LONG


async def test_stream_buffer_flushes_by_size_and_by_age() -> None:
    now = [0.0]
    written: list[str] = []

    async def publish(text: str) -> None:
        written.append(text)

    buffer = StreamBuffer(publish, interval=0.05, max_chars=10, clock=lambda: now[0])
    for delta in ["abc", "def", "ghij"]:  # reaches 10 chars on the third
        await buffer.send(delta)
    assert written == ["abcdefghij"]
    await buffer.send("k")
    now[0] += 0.01
    await buffer.send("l")
    assert written == ["abcdefghij"]
    now[0] += 0.05
    await buffer.send("m")  # older than the interval: written
    assert written == ["abcdefghij", "klm"]
    await buffer.send("n")
    await buffer.flush()
    assert written == ["abcdefghij", "klm", "n"]
    assert buffer.writes == 3


# -- function models and history ----------------------------------------------------------


def echo(messages: list[Any], request: ModelRequest) -> ModelResponse:
    last = messages[-1].content
    return ModelResponse(
        AssistantMessage(content=f"{request.turn}:{last}"), Usage(input_tokens=7, output_tokens=3)
    )


echo_agent = Agent("echo", FunctionModel(echo))


@workflow(id="conversation")
async def conversation(ctx: RunContext) -> list[str]:
    first = await echo_agent.run(ctx, "hello")
    second = await echo_agent.run(ctx, "again", history=first.messages)
    assert second.usage.total_tokens == 10
    return [m.role for m in second.messages] + [json.dumps(second.output)]


async def test_history_continues_a_conversation(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([conversation])
    run = await finish(engine, conversation)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == ["user", "assistant", "user", "assistant", '"0:again"']
