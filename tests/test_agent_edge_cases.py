"""Edges of the agent loop: tool results that are not JSON, set arguments, idempotency keys
in tools, trimming around output feedback, concurrent failures, tool call ids, tool
definitions, approval policies and edits."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

import agentflow
from agentflow import (
    Engine,
    NonRetryableError,
    RetryPolicy,
    RunContext,
    RunStatus,
    StepFailedError,
    workflow,
)
from agentflow._serde import digest
from agentflow.agents import (
    Agent,
    AssistantMessage,
    Budget,
    FunctionModel,
    Model,
    ModelConnectionError,
    ModelPrice,
    ModelRequest,
    ModelResponse,
    OpenAIModel,
    ScriptedModel,
    StreamBuffer,
    SystemMessage,
    ToolCall,
    ToolDefinitionError,
    ToolMessage,
    UserMessage,
    tool,
    tool_call,
)
from agentflow.agents.messages import Message
from agentflow.agents.models._chat import chat_messages
from agentflow.agents.models.base import TextStream
from agentflow.agents.models.errors import classify_openai_error
from agentflow.agents.pricing import KNOWN_CONTEXT_WINDOWS, KNOWN_PRICES, lookup
from agentflow.agents.tokens import THREAD_THRESHOLD, TokenCounter, token_counter
from agentflow.agents.trimming import trim_messages

from ._support import eventually, running_worker
from .llm_server import LLMServer, Reply, serve

pytestmark = pytest.mark.anyio

effects: Counter[str] = Counter()
NO_DELAY = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)


async def finish(engine: Engine, wf: Any, payload: Any = None) -> Any:
    async with running_worker(engine):
        handle = await engine.trigger(wf, payload)
        return await engine.wait(handle.id, timeout=20)


# -- 1. a result that is not JSON: the tool ran once, no retry ----------------------------


class Receipt:  # not JSON-able
    def __init__(self, amount: int) -> None:
        self.amount = amount


@tool(retry=NO_DELAY)
def charge_card(amount: int) -> Receipt:
    """Charge the card."""
    effects[f"charge:{amount}"] += 1
    return Receipt(amount)


@workflow(id="unjsonable_result")
async def unjsonable_result(ctx: RunContext, _: Any) -> str:
    agent = Agent(
        "pay", ScriptedModel([tool_call("charge_card", amount=5), "done"]), tools=[charge_card]
    )
    return (await agent.run(ctx, "charge")).output


async def test_a_result_that_is_not_json_fails_without_running_the_tool_again(
    make_engine: Callable[..., Engine],
) -> None:
    effects.clear()
    engine = make_engine([unjsonable_result])
    run = await finish(engine, unjsonable_result)
    assert run.status is RunStatus.FAILED
    assert effects["charge:5"] == 1
    assert "ToolResultError" in run.error["message"]
    assert "returned a Receipt that cannot be converted to JSON" in run.error["message"]
    tool_step = (await engine.get_steps(run.id))[1]
    assert (tool_step.kind, tool_step.status, tool_step.attempts) == ("tool", "failed", 1)


# -- 2. set arguments are canonical ---------------------------------------------------------

TAGS = ["billing", "refund", "urgent", "vip", "escalate", "eu", "chargeback", "fraud"]


class Filter(BaseModel):
    ids: frozenset[int]
    labels: dict[str, set[str]]


@tool
def tag_ticket(ticket: str, tags: set[str], where: Filter | None = None) -> str:
    """Tag a ticket."""
    return ticket


def test_set_arguments_are_sorted_in_their_json() -> None:
    args = tag_ticket.validate(
        {
            "ticket": "t1",
            "tags": TAGS,
            "where": {"ids": [8, 1, 30, 2], "labels": {"x": TAGS[::-1]}},
        }
    )
    arguments = tag_ticket.arguments(args)
    # Hash order (which changes with PYTHONHASHSEED) would be sorted by chance 1 in 8!.
    assert arguments == {
        "ticket": "t1",
        "tags": sorted(TAGS),
        "where": {"ids": [1, 2, 8, 30], "labels": {"x": sorted(TAGS)}},
    }
    assert arguments == json.loads(json.dumps(arguments))


seen_by_policy: list[list[str]] = []


def tags_policy(args: dict[str, Any]) -> bool:
    seen_by_policy.append(args["tags"])
    return True


@tool(requires_approval=tags_policy)
def label(ticket: str, tags: set[str]) -> str:
    """Label a ticket."""
    return f"labelled {ticket}"


@workflow(id="set_approval")
async def set_approval(ctx: RunContext, _: Any) -> str:
    model = ScriptedModel([tool_call("label", ticket="t1", tags=TAGS), "done"])
    return (await Agent("a", model, tools=[label]).run(ctx, "go")).output


async def test_an_approval_of_set_arguments_binds_their_sorted_json(
    make_engine: Callable[..., Engine],
) -> None:
    seen_by_policy.clear()
    engine = make_engine([set_approval])
    async with running_worker(engine):
        handle = await engine.trigger(set_approval)
        [approval] = await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        assert approval.data["arguments"] == {"ticket": "t1", "tags": sorted(TAGS)}
        # The digest the replay checks is computed from the same canonical data.
        assert approval.digest == digest(approval.data)
        await engine.approve(handle.id, "label", approver="lead")
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    assert seen_by_policy
    assert all(tags == sorted(TAGS) for tags in seen_by_policy)


# -- 3. idempotency keys in tools -----------------------------------------------------------

keys: list[tuple[str, str | None]] = []


@tool(retry=NO_DELAY)
def send_invoice(customer: str) -> str:
    """Send an invoice (fails on its first attempt)."""
    keys.append((customer, agentflow.step_idempotency_key()))
    if len([c for c, _ in keys if c == customer]) == 1:
        raise RuntimeError("mail server hiccup")
    return "sent"


@tool
async def send_email(ctx: RunContext, to: str) -> str:
    """Send an e-mail, the documented way for a tool that takes the RunContext."""

    async def send() -> str:
        keys.append((to, ctx.idempotency_key))
        return f"sent to {to}"

    return await ctx.step("send_email", send)


@workflow(id="tool_keys")
async def tool_keys(ctx: RunContext, _: Any) -> str:
    model = ScriptedModel(
        [
            [
                tool_call("send_invoice", customer="a"),
                tool_call("send_invoice", customer="b"),
                tool_call("send_email", to="c@example.com"),
            ],
            "done",
        ]
    )
    agent = Agent("billing", model, tools=[send_invoice, send_email])
    return (await agent.run(ctx, "invoice")).output


async def test_tools_get_a_stable_idempotency_key_per_call(
    make_engine: Callable[..., Engine],
) -> None:
    keys.clear()
    engine = make_engine([tool_keys])
    run = await finish(engine, tool_keys)
    assert run.status is RunStatus.COMPLETED, run.error
    by_call: dict[str, set[str | None]] = {}
    for who, key in keys:
        by_call.setdefault(who, set()).add(key)
    assert sorted(who for who, _ in keys) == ["a", "a", "b", "b", "c@example.com"]
    # Retried attempts of one call share its key; each call has its own.
    assert all(len(k) == 1 for k in by_call.values())
    distinct = {next(iter(k)) for k in by_call.values()}
    assert len(distinct) == 3
    assert None not in distinct
    steps = {s.name: s.seq for s in await engine.get_steps(run.id)}
    assert by_call["c@example.com"] == {f"{run.id}:{steps['send_email']}"}


# -- 4. trimming keeps the run's input when an answer is sent back ----------------------


class Answer(BaseModel):
    category: str


QUESTION = "THE REAL QUESTION: my card was charged twice " + "details " * 60
RESERVE = 50


async def tight_window(agent: Agent[Any], extra: list[Message]) -> int:
    """A context window that fits the system message, the question and ``extra``."""
    counter = await token_counter("trim-test")
    messages = agent._start(QUESTION, None)
    return sum(counter.message(m) for m in [*messages, *extra]) + 3 + RESERVE


def answers(turns_invalid: int) -> Callable[[list[Message], ModelRequest], str]:
    def reply(messages: list[Message], request: ModelRequest) -> str:
        return "not json" if request.turn < turns_invalid else '{"category": "billing"}'

    return reply


@workflow(id="trim_feedback")
async def trim_feedback(ctx: RunContext, options: dict[str, Any]) -> Any:
    model = FunctionModel(answers(options["invalid"]), name="trim-test")
    agent: Agent[Answer] = Agent(
        "classify",
        model,
        "Classify.",
        output_type=Answer,
        reserved_output_tokens=RESERVE,
        context_window=options["window"],
    )
    result = await agent.run(ctx, QUESTION)
    return {
        "output": result.output.model_dump(),
        "sent": [[m.role for m in r.messages] for r in model.requests],
        "questions": [sum(m.content == QUESTION for m in r.messages) for r in model.requests],
    }


async def feedback_pair() -> list[Message]:
    probe: Agent[Answer] = Agent("p", FunctionModel(answers(1)), output_type=Answer)
    try:
        probe._output.validate("not json")
    except ValueError as exc:
        return [AssistantMessage("not json"), UserMessage(str(exc))]
    raise AssertionError("the probe answer validated")


async def test_feedback_on_an_invalid_answer_never_pushes_out_the_question(
    make_engine: Callable[..., Engine],
) -> None:
    probe: Agent[Answer] = Agent(
        "classify", FunctionModel(answers(1)), "Classify.", output_type=Answer
    )
    pair = await feedback_pair()
    engine = make_engine([trim_feedback])

    # Room for the question and one invalid answer with its feedback, not two: the older
    # pair is dropped, the question stays.
    window = await tight_window(probe, pair) + 1
    run = await finish(engine, trim_feedback, {"invalid": 2, "window": window})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["questions"] == [1, 1, 1]
    assert run.output["sent"][2] == ["system", "user", "assistant", "user"]
    [*_, last] = await engine.get_steps(run.id)
    assert last.info["trimmed"]["dropped_messages"] == 2

    # Room for the question only: the feedback cannot be sent with it, and the question is
    # not dropped to make room (the model would answer without it): the run fails.
    window = await tight_window(probe, []) + 1
    run = await finish(engine, trim_feedback, {"invalid": 1, "window": window})
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "ContextWindowExceededError"


def test_trim_messages_protects_the_given_input_not_the_latest_user_message() -> None:
    def count(m: Message) -> int:
        return len(m.content or "")

    messages: list[Message] = [
        SystemMessage("s" * 5),
        UserMessage("h" * 50),  # history
        AssistantMessage("a" * 50),
        UserMessage("q" * 20),  # the run's input
        AssistantMessage("bad1"),
        UserMessage("f" * 10),  # feedback
        AssistantMessage("bad2"),
        UserMessage("g" * 10),  # feedback
    ]
    trimmed = trim_messages(messages, limit=45, count=count, protected=3)
    assert [m.content[:1] for m in trimmed.messages if m.content] == ["s", "q", "b", "g"]
    assert trimmed.tokens == 5 + 20 + 4 + 10
    # Even when nothing fits, the input is kept (the caller reports the overflow).
    trimmed = trim_messages(messages, limit=10, count=count, protected=3)
    assert "q" * 20 in [m.content for m in trimmed.messages]


# -- 7. two concurrent failures: the first is raised as itself --------------------------


@tool
async def first_broken() -> str:
    """A."""
    raise NonRetryableError("a broke")


@tool
async def second_broken() -> str:
    """B."""
    raise NonRetryableError("b broke")


@workflow(id="two_failures")
async def two_failures(ctx: RunContext, _: Any) -> dict[str, Any]:
    model = ScriptedModel([[tool_call("first_broken"), tool_call("second_broken")], "done"])
    agent = Agent("x", model, tools=[first_broken, second_broken])
    try:
        await agent.run(ctx, "go")
    except StepFailedError as exc:
        return {"step": exc.step, "notes": getattr(exc, "__notes__", [])}
    return {}


async def test_two_concurrent_failures_raise_the_first_in_call_order(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([two_failures])
    run = await finish(engine, two_failures)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["step"] == "x:tool:first_broken"
    assert "b broke" in run.output["notes"][0]
    steps = await engine.get_steps(run.id)
    assert [(s.name, s.status) for s in steps[1:]] == [
        ("x:tool:first_broken", "failed"),
        ("x:tool:second_broken", "failed"),
    ]


# -- (e) tool calls without ids get journaled ones -------------------------------------


class NoIdModel(Model):
    """A provider that sends tool calls without ids."""

    @property
    def name(self) -> str:
        return "no-ids"

    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        if request.turn == 0:
            calls = [ToolCall("note", '{"text": "a"}'), ToolCall("note", '{"text": "b"}')]
            return ModelResponse(AssistantMessage(tool_calls=calls))
        return ModelResponse(AssistantMessage("done"))


@tool
def note(text: str) -> str:
    """Take a note."""
    return text


@workflow(id="no_ids")
async def no_ids(ctx: RunContext, _: Any) -> list[list[str]]:
    result = await Agent("n", NoIdModel(), tools=[note]).run(ctx, "go")
    calls = [c.id for m in result.messages if m.role == "assistant" for c in m.tool_calls]
    results = [m.tool_call_id for m in result.messages if isinstance(m, ToolMessage)]
    return [calls, results]


async def test_tool_calls_without_ids_get_ids_in_the_journal(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([no_ids])
    run = await finish(engine, no_ids)
    assert run.status is RunStatus.COMPLETED, run.error
    calls, results = run.output
    assert calls == results
    assert len(set(calls)) == 2
    assert all(calls)
    journaled = (await engine.get_steps(run.id))[0].output["message"]["tool_calls"]
    assert [c["id"] for c in journaled] == calls


# -- lesser: tool definitions, approval policies, edits, wire format, token counting ----


def test_run_context_imported_for_type_checking_only() -> None:
    namespace: dict[str, Any] = {}
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from agentflow import RunContext\n"
        "async def lookup(ctx: RunContext, q: str) -> str:\n"
        "    return q\n"
    )
    exec(source, namespace)
    made = tool(namespace["lookup"])
    assert made.takes_ctx
    assert list(made.definition.parameters["properties"]) == ["q"]


@pytest.mark.parametrize("name", ["_hidden", "model_config", "model_dump"])
def test_parameter_names_pydantic_cannot_use_are_refused(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def f({name}: str) -> str:\n    return {name}\n", namespace)
    with pytest.raises(ToolDefinitionError, match=f"parameter '{name}'"):
        tool(namespace["f"])


def test_other_names_work_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    @tool
    def f(json: str, schema: str, model_name: str) -> str:
        """F."""
        return json

    assert list(f.definition.parameters["properties"]) == ["json", "schema", "model_name"]
    assert not recwarn.list


async def test_async_approval_policies_are_awaited() -> None:
    async def over_100(args: dict[str, Any]) -> bool:
        return bool(args["amount"] > 100)

    @tool(requires_approval=over_100)
    def pay(amount: int) -> str:
        """Pay."""
        return "paid"

    assert await pay.needs_approval({"amount": 500}) is True
    assert await pay.needs_approval({"amount": 5}) is False


def test_an_empty_answer_is_sent_with_empty_content() -> None:
    sent = chat_messages(
        [AssistantMessage(None), AssistantMessage(None, [ToolCall("f", "{}", "c1")])]
    )
    assert sent[0] == {"role": "assistant", "content": ""}
    assert sent[1]["content"] is None
    assert sent[1]["tool_calls"]


async def test_long_messages_are_counted_in_a_worker_thread() -> None:
    threads: list[int] = []

    class Encoding:
        def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
            threads.append(threading.get_ident())
            return [0] * (len(text) // 4)

    counter = TokenCounter(Encoding())
    here = threading.get_ident()
    assert await counter.amessage(UserMessage("x" * 400)) == counter.message(UserMessage("x" * 400))
    assert set(threads) == {here}
    threads.clear()
    big = ToolMessage("c", "fetch", "y" * (THREAD_THRESHOLD + 1))
    assert await counter.amessage(big) == counter.message(big)
    assert threads[0] != here  # the first count (the async one) ran in a thread


@tool(requires_approval=True)
def refund(order_id: str, amount: int) -> str:
    """Refund."""
    return f"refunded {amount}"


@workflow(id="unchanged_edit")
async def unchanged_edit(ctx: RunContext, _: Any) -> list[str]:
    model = ScriptedModel([tool_call("refund", order_id="o1", amount=5), "done"])
    result = await Agent("r", model, tools=[refund]).run(ctx, "go")
    return [m.content for m in result.messages if isinstance(m, ToolMessage)]


async def test_an_edit_that_changes_nothing_is_not_reported_as_a_change(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([unchanged_edit])
    async with running_worker(engine):
        handle = await engine.trigger(unchanged_edit)
        await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        await engine.approve(handle.id, "refund", data={"amount": 5})
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == ["refunded 5"]


@workflow(id="budget_bad_edit")
async def budget_bad_edit(ctx: RunContext, _: Any) -> str:
    model = ScriptedModel([tool_call("note", text="x"), "done"])
    budget = Budget(max_total_tokens=1, on_exceeded="approve")
    return (await Agent("spend", model, tools=[note], budget=budget).run(ctx, "go")).output


async def test_a_non_numeric_budget_edit_fails_clearly(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([budget_bad_edit])
    async with running_worker(engine):
        handle = await engine.trigger(budget_bad_edit)
        await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        await engine.approve(handle.id, "spend:budget", data={"max_total_tokens": "lots"})
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "ApprovalEditError"
    assert "max_total_tokens must be a number or null, not 'lots'" in run.error["message"]


# -- 6. prices: exact names and snapshots only; budgets and unknown prices ------------------


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o", ModelPrice(2.50, 10.00)),
        ("openai/gpt-4o-mini-2024-07-18", ModelPrice(0.15, 0.60)),
        ("o3-2025-04-16", ModelPrice(2.00, 8.00)),
        ("gpt-4o-latest", ModelPrice(2.50, 10.00)),
        ("gpt-4o-2024-05-13", ModelPrice(5.00, 15.00)),
        ("o3-pro", None),
        ("o3-pro-2025-06-10", None),
        ("gpt-5-codex", None),
        ("gpt-4o-audio-preview", None),
    ],
)
def test_prices_match_exact_names_and_snapshots_only(model: str, price: ModelPrice | None) -> None:
    assert lookup(KNOWN_PRICES, model) == price
    assert OpenAIModel(model).price == price


def test_context_windows_still_match_variants() -> None:
    assert OpenAIModel("o3-pro").context_window == KNOWN_CONTEXT_WINDOWS["o3"]


@workflow(id="unpriced_budget")
async def unpriced_budget(ctx: RunContext, options: dict[str, Any]) -> Any:
    model = ScriptedModel([tool_call("note", text="a"), tool_call("note", text="b"), "done"])
    agent = Agent("spend", model, tools=[note], budget=Budget(**options))
    result = await agent.run(ctx, "go")
    return result.usage.to_dict()


async def test_a_cost_budget_stops_at_a_request_without_a_price(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([unpriced_budget])
    run = await finish(engine, unpriced_budget, {"max_cost_usd": 1.0})
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "BudgetExceededError"
    assert (
        "cannot enforce max_cost_usd=$1.0: 1 model request(s) had no known price"
        in (run.error["message"])
    )

    run = await finish(engine, unpriced_budget, {"max_cost_usd": 1.0, "allow_unpriced": True})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["unpriced_requests"] == 3

    # Approving once lets the run go on: it is not asked again at every request.
    async with running_worker(engine):
        handle = await engine.trigger(
            unpriced_budget, {"max_cost_usd": 1.0, "on_exceeded": "approve"}
        )
        [ask] = await eventually(lambda: engine.pending_approvals(handle.id), what="approval")
        assert ask.data["reason"].startswith("cannot enforce max_cost_usd")
        await engine.approve(handle.id, "spend:budget")
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    waits = await engine.list_waitpoints(run_id=handle.id)
    assert [w.name for w in waits] == ["spend:budget"]


# -- 5. provider errors -------------------------------------------------------------------


def _response(status: int) -> Any:
    return httpx.Response(status, request=httpx.Request("POST", "http://x/v1/chat/completions"))


def classify(exc: BaseException) -> tuple[str, bool]:
    error = classify_openai_error(openai, exc, "m")
    assert error is not None
    return type(error).__name__, RetryPolicy().is_retryable(error)


def test_openai_errors_are_classified_by_status() -> None:
    def status_error(status: int, body: Any = None) -> Exception:
        return openai.APIStatusError("boom", response=_response(status), body=body)

    request = httpx.Request("POST", "http://x")
    quota = {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}
    assert classify(status_error(503)) == ("ModelServerError", True)
    assert classify(status_error(409)) == ("ModelServerError", True)
    assert classify(status_error(429)) == ("ModelRateLimitError", True)
    assert classify(status_error(429, quota)) == ("ModelQuotaExceededError", False)
    assert classify(status_error(401)) == ("ModelAuthError", False)
    assert classify(status_error(422)) == ("ModelBadRequestError", False)
    bad_body = openai.APIResponseValidationError(response=_response(200), body=None)
    assert classify(bad_body) == ("ModelServerError", True)
    mid_stream = openai.APIError("An error occurred during streaming", request, body=None)
    assert classify(mid_stream) == ("ModelServerError", True)
    no_key = openai.OpenAIError("The api_key client option must be set")
    assert classify(no_key) == ("ModelAuthError", False)
    assert classify(httpx.ReadTimeout("slow")) == ("ModelTimeoutError", True)
    assert classify(httpx.RemoteProtocolError("peer closed")) == ("ModelConnectionError", True)


async def test_a_stream_dropped_midway_is_a_retryable_connection_error() -> None:
    server = LLMServer()
    server.script(Reply("hello there, world", drop_stream=True))
    published: list[str] = []

    async def publish(text: str) -> None:
        published.append(text)

    async with serve(server) as base_url:
        model = OpenAIModel("test-model", base_url=base_url)
        with pytest.raises(ModelConnectionError, match="RemoteProtocolError") as caught:
            await model.request(ModelRequest([UserMessage("hi")]), StreamBuffer(publish))
    assert RetryPolicy().is_retryable(caught.value)
