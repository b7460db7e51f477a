"""The durable agent loop.

``Agent.run`` alternates model requests and tool calls until the model gives a final
answer. Every model request is a journaled step of kind ``llm`` and every tool call one of
kind ``tool``, so a replay (after a crash, a wait or a retry) returns recorded answers and
results instead of calling the model or the tool again, and resumes at the first call that
did not finish.

Positions in the journal must come out the same on every replay, so each model turn's tool
calls are handled in three phases, in the order the model listed them:

1. approvals, one at a time (each approval is a waitpoint; a pending one parks the run);
2. tools without a ``RunContext`` parameter, concurrently: each is a single step whose
   position is taken when it starts, in call order;
3. tools that take the ``RunContext``, one after another: they may take steps and waits of
   their own, whose positions would interleave unpredictably if they ran side by side.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from pydantic import BaseModel

from ..retry import RetryPolicy
from ..workflows import seconds
from .budgets import Budget, enforce
from .errors import (
    ApprovalEditError,
    ContextWindowExceededError,
    MaxTurnsExceededError,
    ModelRetry,
    OutputValidationError,
    ToolDefinitionError,
    ToolResultError,
)
from .messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from .models.base import Model, ModelRequest, ModelResponse, ModelSettings
from .output import InvalidOutput, OutputSpec
from .streaming import StreamBuffer
from .tokens import token_counter
from .tools import Tool, ToolArgumentsError, as_tool, to_json_value
from .trimming import trim_messages
from .usage import RunUsage

if TYPE_CHECKING:
    from ..context import RunContext

__all__ = ["DEFAULT_MODEL_RETRY", "Agent", "AgentResult", "ToolReturn"]

OutputT = TypeVar("OutputT")
T = TypeVar("T")

DEFAULT_MODEL_RETRY = RetryPolicy(max_attempts=4, initial_delay=1.0, factor=2.0, max_delay=30.0)
"""Model requests: rate limits, timeouts and server errors are retried up to 4 attempts."""


@dataclass(slots=True)
class AgentResult(Generic[OutputT]):
    """What ``Agent.run`` returns: the validated output, the conversation and the usage.

    Pass ``messages`` as ``history=`` to a later run to continue the conversation.
    """

    output: OutputT
    messages: list[Message]
    usage: RunUsage


@dataclass(slots=True)
class ToolReturn:
    """A tool call's journaled result: JSON ``value``, or an ``error`` for the model."""

    value: Any = None
    error: str | None = None

    def content(self) -> str:
        if self.error is not None:
            return self.error
        return self.value if isinstance(self.value, str) else json.dumps(self.value)


@dataclass(slots=True)
class _Call:
    """One tool call of a model turn, on its way through the three phases.

    ``arguments`` is ``args`` as canonical JSON data (or, without valid ``args``, what the
    model sent): computed once, it is what the policy, the approval and the journal see.
    """

    call: ToolCall
    tool: Tool | None
    args: BaseModel | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    outcome: ToolReturn | None = None
    note: str = ""
    approver: str | None = None
    ran: bool = False


class Agent(Generic[OutputT]):
    """A model with instructions and tools, run durably inside a workflow.

    Args:
        name: names the agent's steps (``<name>:model``, ``<name>:tool:<tool>``) and
            approvals; keep it stable, like a step name.
        model: any :class:`Model` (``OpenAIModel``, ``LiteLLMModel``, ``ScriptedModel``...).
        instructions: the system prompt.
        tools: ``@tool`` functions (plain functions are made tools).
        output_type: ``str`` or any type pydantic validates (e.g. a ``BaseModel``); the
            model is asked for JSON matching its schema.
        max_turns: model requests allowed per run (including output retries).
        model_settings: temperature, max_tokens... sent with every request.
        output_retries: how many times an invalid final answer is sent back to be fixed.
        retry: the model request's step retry policy.
        budget: token/cost limits per run (see :class:`Budget`).
        stream: a live stream name: text deltas are published there while the model writes.
        approval_timeout: default timeout of tool approvals (seconds or a timedelta).
        context_window: overrides the model's context window (tokens).
        reserved_output_tokens: room kept for the answer when trimming (default:
            ``model_settings["max_tokens"]``, else a quarter of the window, at most 4096).
    """

    def __init__(
        self,
        name: str,
        model: Model,
        instructions: str = "",
        *,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        output_type: type[OutputT] = str,  # type: ignore[assignment]
        max_turns: int = 10,
        model_settings: ModelSettings | None = None,
        output_retries: int = 2,
        retry: RetryPolicy | None = None,
        budget: Budget | None = None,
        stream: str | None = None,
        approval_timeout: float | timedelta | None = None,
        context_window: int | None = None,
        reserved_output_tokens: int | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("Agent.max_turns must be at least 1")
        self.name = name
        self.model = model
        self.instructions = instructions
        self.tools: dict[str, Tool] = {}
        for t in map(as_tool, tools):
            if t.name in self.tools:
                raise ToolDefinitionError(f"agent {name!r} has two tools named {t.name!r}")
            self.tools[t.name] = t
        self.output_type = output_type
        self.max_turns = max_turns
        self.model_settings: ModelSettings = model_settings or ModelSettings()
        self.output_retries = output_retries
        self.retry = retry or DEFAULT_MODEL_RETRY
        self.budget = budget
        self.stream = stream
        self.approval_timeout = seconds(approval_timeout)
        self.context_window = context_window
        self.reserved_output_tokens = reserved_output_tokens
        self._output: OutputSpec[OutputT] = OutputSpec(output_type)
        self._definitions = [t.definition for t in self.tools.values()]
        self._tool_tokens: dict[int, int] = {}  # by id of the encoding

    async def run(
        self,
        ctx: RunContext,
        input: str | BaseModel,
        *,
        history: Sequence[Message] | None = None,
    ) -> AgentResult[OutputT]:
        """Run the loop until a valid final answer. Call it from a workflow.

        Raises:
            MaxTurnsExceededError: ``max_turns`` requests without a final answer.
            OutputValidationError: the answer stayed invalid after ``output_retries``.
            BudgetExceededError: a budget was used up (and not extended).
            ContextWindowExceededError: the prompt cannot be trimmed to fit the window.
            ApprovalEditError: an approver's edited tool arguments do not validate.
            StepFailedError: a model request or a tool failed on its last attempt (e.g. a
                ``ModelBadRequestError``, a rate limit that outlasted the retries, or a
                ``ToolResultError``: a tool result that is not JSON-able, never retried).
            ToolResultError: a tool taking the ``RunContext`` returned a value that is not
                JSON-able.
        """
        messages = self._start(input, history)
        asked = len(messages) - 1  # the run's input: never trimmed away
        usage = RunUsage()
        granted = self.budget
        invalid = 0
        counted: dict[int, tuple[Message, int]] = {}  # id(message) -> (message, tokens)
        await self.model.prepare()
        for turn in itertools.count():
            if turn >= self.max_turns:
                raise MaxTurnsExceededError(self.name, self.max_turns)
            if granted is not None and self.budget is not None:
                granted = await enforce(ctx, self.name, granted, self.budget, usage)
            response = await self._request(ctx, messages, turn, counted, asked)
            usage.add_request(response.usage, response.cost_usd)
            messages.append(response.message)
            if response.message.tool_calls:
                if turn + 1 >= self.max_turns:
                    # No turn left to read the results: fail before any tool has an effect.
                    raise MaxTurnsExceededError(self.name, self.max_turns)
                messages.extend(await self._run_tools(ctx, response.message.tool_calls, usage))
                continue
            try:
                output = self._output.validate(response.message.content)
            except InvalidOutput as exc:
                invalid += 1
                if invalid > self.output_retries:
                    raise OutputValidationError(self.name, invalid, str(exc)) from None
                messages.append(UserMessage(str(exc)))
                continue
            return AgentResult(output=output, messages=messages, usage=usage)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- model requests -------------------------------------------------------------------

    def _start(self, input: str | BaseModel, history: Sequence[Message] | None) -> list[Message]:
        system = "\n\n".join(p for p in (self.instructions, self._output.instructions()) if p)
        messages: list[Message] = [SystemMessage(system)] if system else []
        messages.extend(m for m in history or () if m.role != "system")
        text = input if isinstance(input, str) else input.model_dump_json()
        messages.append(UserMessage(text))
        return messages

    async def _request(
        self,
        ctx: RunContext,
        messages: list[Message],
        turn: int,
        counted: dict[int, tuple[Message, int]],
        asked: int,
    ) -> ModelResponse:
        request = ModelRequest(
            messages=list(messages),
            tools=self._definitions,
            output_schema=self._output.schema,
            settings=self.model_settings,
            agent=self.name,
            turn=turn,
        )
        info: dict[str, Any] | None = None
        if not ctx.next_step_recorded:
            # Counting, trimming and the request record only matter for a call that is sent;
            # a journaled call is replayed from its recorded answer.
            info = {"agent": self.name, "model": self.model.name, "turn": turn}
            info.update(await self._fit(request, counted, asked))
            info["messages"] = request.messages  # dumped (once) with the info by ctx.step
            info["tools"] = [t.name for t in request.tools]
            if request.output_schema is not None:
                info["output_schema"] = request.output_schema.name
            if request.settings:
                info["settings"] = dict(request.settings)
        sink = None
        if self.stream is not None:
            stream = self.stream
            sink = StreamBuffer(lambda text: ctx.publish(stream, text))
        response: ModelResponse = await ctx.step(
            f"{self.name}:model",
            _call_model,
            self.model,
            request,
            sink,
            kind="llm",
            retry=self.retry,
            info=info,
        )
        return response

    async def _fit(
        self, request: ModelRequest, counted: dict[int, tuple[Message, int]], asked: int
    ) -> dict[str, Any]:
        """Count the prompt; trim ``request.messages`` when it does not fit the window.

        Message counts are remembered for the run (``counted`` holds each message, so its
        id cannot be reused): each turn counts only its new messages, and a long one is
        counted in a worker thread, off the event loop. ``asked`` is the index of the run's
        input message, which trimming keeps.
        """
        counter = await token_counter(self.model.name)
        key = id(counter.encoding)
        fixed = self._tool_tokens.get(key)
        if fixed is None:
            fixed = self._tool_tokens[key] = counter.overhead(request.tools)

        for message in request.messages:
            if id(message) not in counted:
                counted[id(message)] = (message, await counter.amessage(message))

        def count(message: Message) -> int:
            entry = counted.get(id(message))
            if entry is None:
                entry = counted[id(message)] = (message, counter.message(message))
            return entry[1]

        tokens = fixed + sum(map(count, request.messages))
        info: dict[str, Any] = {
            "prompt_tokens": tokens,
            "token_count": "tiktoken" if counter.exact else "estimate",
        }
        window = self.context_window or self.model.context_window
        if window is None:
            return info
        reserve = self.reserved_output_tokens
        if reserve is None:
            reserve = self.model_settings.get("max_tokens") or min(4096, window // 4)
        limit = window - reserve
        if tokens <= limit:
            return info
        trimmed = trim_messages(
            request.messages, limit=limit, count=count, fixed=fixed, protected=asked
        )
        if trimmed.tokens > limit:
            raise ContextWindowExceededError(self.name, trimmed.tokens, limit)
        request.messages = trimmed.messages
        info["prompt_tokens"] = trimmed.tokens
        info["trimmed"] = {
            "tokens_before": tokens,
            "limit": limit,
            "emptied_tool_results": trimmed.emptied_results,
            "dropped_messages": trimmed.dropped_messages,
        }
        return info

    # -- tool calls -----------------------------------------------------------------------

    async def _run_tools(
        self, ctx: RunContext, calls: list[ToolCall], usage: RunUsage
    ) -> list[ToolMessage]:
        plans = [self._plan(call) for call in calls]
        for plan in plans:  # phase 1
            if (
                plan.args is not None
                and plan.tool is not None
                and await plan.tool.needs_approval(plan.arguments)
            ):
                await self._approve(ctx, plan)
        # Phase 2: plain tools, and the errors for invalid calls (journaled too, so the
        # timeline shows them). A rejected call has no step: its approval is its record.
        side_by_side = [
            p
            for p in plans
            if (p.outcome is None and p.tool is not None and not p.tool.takes_ctx)
            or (p.outcome is not None and p.approver is None)
        ]
        results = await _gather([self._step_for(ctx, p) for p in side_by_side])
        for plan, result in zip(side_by_side, results, strict=True):
            plan.outcome = result
        for plan in plans:  # phase 3
            if plan.outcome is None:
                plan.outcome = await self._run_with_ctx(ctx, plan)
        out = []
        for plan in plans:
            assert plan.outcome is not None
            if plan.ran:
                usage.tool_calls += 1
            content = plan.outcome.content()
            out.append(
                ToolMessage(
                    tool_call_id=plan.call.id,
                    name=plan.call.name,
                    content=f"{plan.note}\n{content}" if plan.note else content,
                    is_error=plan.outcome.error is not None,
                )
            )
        return out

    def _plan(self, call: ToolCall) -> _Call:
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            error = f"unknown tool {call.name!r}; the tools are: {known}"
            return _Call(call, None, arguments=_sent(call), outcome=ToolReturn(error=error))
        try:
            args = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            return _Call(call, tool, arguments=_sent(call), outcome=ToolReturn(error=str(exc)))
        return _Call(call, tool, args=args, arguments=tool.arguments(args))

    async def _approve(self, ctx: RunContext, plan: _Call) -> None:
        tool = plan.tool
        assert tool is not None
        assert plan.args is not None
        timeout = tool.approval_timeout
        decision = await ctx.wait_for_approval(
            tool.name,
            data={
                "agent": self.name,
                "tool": tool.name,
                "call_id": plan.call.id,
                "arguments": plan.arguments,
            },
            timeout=self.approval_timeout if timeout is None else timeout,
        )
        plan.approver = decision.approver or "(unknown)"
        if not decision.approved:
            by = f" by {decision.approver}" if decision.approver else ""
            comment = f" Reviewer's comment: {decision.comment}" if decision.comment else ""
            verb = "not approved in time" if decision.status == "timed_out" else "rejected"
            plan.outcome = ToolReturn(
                error=f"The call to {tool.name} was {verb}{by} and did not run.{comment}"
            )
            return
        if decision.edited:
            asked = plan.arguments
            plan.args = self._edited(tool, asked, decision.data)
            plan.arguments = tool.arguments(plan.args)
            if plan.arguments != asked:
                plan.note = (
                    f"(A reviewer changed the arguments to {json.dumps(plan.arguments)} "
                    "before approving.)"
                )

    def _edited(self, tool: Tool, asked: dict[str, Any], data: Any) -> BaseModel:
        if isinstance(data, dict) and isinstance(data.get("arguments"), dict):
            data = data["arguments"]
        if not isinstance(data, dict):
            raise ApprovalEditError(
                f"edited approval data for tool {tool.name!r} must be a JSON object of arguments",
                agent=self.name,
            )
        try:
            return tool.validate({**asked, **data})
        except ToolArgumentsError as exc:
            raise ApprovalEditError(
                f"the approver's edited arguments for tool {tool.name!r} are invalid: {exc}",
                agent=self.name,
            ) from None

    def _tool_info(self, plan: _Call) -> dict[str, Any]:
        info: dict[str, Any] = {
            "agent": self.name,
            "tool": plan.call.name,
            "call_id": plan.call.id,
            "arguments": plan.arguments,
        }
        if plan.approver is not None:
            info["approved_by"] = plan.approver
        return info

    def _step_for(self, ctx: RunContext, plan: _Call) -> Callable[[], Awaitable[ToolReturn]]:
        name = f"{self.name}:tool:{plan.call.name}"
        info = self._tool_info(plan)
        if plan.outcome is not None:  # invalid arguments or an unknown tool: journal the error
            outcome = plan.outcome
            return lambda: ctx.step(name, _recorded, outcome, kind="tool", info=info)
        tool, args = plan.tool, plan.args
        assert tool is not None
        assert args is not None
        plan.ran = True
        return lambda: ctx.step(
            name, _execute_tool, tool, args, kind="tool", retry=tool.retry, info=info
        )

    async def _run_with_ctx(self, ctx: RunContext, plan: _Call) -> ToolReturn:
        tool, args = plan.tool, plan.args
        assert tool is not None
        assert args is not None
        plan.ran = True
        outcome = await _execute_tool(tool, args, ctx)
        result: ToolReturn = await ctx.step(
            f"{self.name}:tool:{tool.name}",
            _recorded,
            outcome,
            kind="tool",
            info=self._tool_info(plan),
        )
        return result


# Step functions live at module level: their return annotations tell a replay what to build.


async def _call_model(
    model: Model, request: ModelRequest, stream: StreamBuffer | None
) -> ModelResponse:
    response = await model.request(request, stream)
    _name_calls(response.message, request.turn)
    return response


def _name_calls(message: AssistantMessage, turn: int) -> None:
    """Give tool calls the provider sent without an id (or with a repeated one) an id.

    Runs inside the ``llm`` step, so the ids are journaled with the answer and a replay
    pairs results with the same ids. They derive from the step's idempotency key (the run
    and the position), so they do not collide with ids of an earlier run's ``history``.
    """
    ids = [c.id for c in message.tool_calls]
    if all(ids) and len(set(ids)) == len(ids):
        return
    from ..context import step_idempotency_key

    key = step_idempotency_key() or f"turn-{turn}"
    prefix = f"call_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    seen: set[str] = set()
    for i, call in enumerate(message.tool_calls):
        if not call.id or call.id in seen:
            call.id = f"{prefix}_{i}"
        seen.add(call.id)


async def _execute_tool(tool: Tool, args: BaseModel, ctx: Any = None) -> ToolReturn:
    """Call ``tool`` (passing ``ctx`` when it takes one); a ``ModelRetry`` is its error result.

    ``ctx`` is ``Any``: a ``RunContext`` annotation would hide the return type from a replay.
    """
    try:
        value = await tool.call(ctx, args)
    except ModelRetry as exc:
        return ToolReturn(error=exc.message)
    return ToolReturn(value=_json_result(tool, value))


def _json_result(tool: Tool, value: Any) -> Any:
    """``value`` as JSON data; a value that cannot be converted fails without a retry (the
    tool already ran: retrying the step would run its side effects again)."""
    try:
        return to_json_value(value)
    except (TypeError, ValueError) as exc:
        raise ToolResultError(
            f"tool {tool.name!r} returned a {type(value).__name__} that cannot be converted "
            f"to JSON ({exc}); the call ran once and is not retried. Return JSON-able data "
            "(dict, list, str, numbers, pydantic models, dataclasses)"
        ) from exc


async def _recorded(outcome: ToolReturn) -> ToolReturn:
    return outcome


def _sent(call: ToolCall) -> dict[str, Any]:
    """The arguments the model sent for a call that has no valid ``args``, as recorded."""
    parsed = call.parsed_arguments()
    return parsed if isinstance(parsed, dict) else {"(raw)": call.arguments}


async def _gather(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` concurrently, started in order; results in order.

    Each call takes its journal position synchronously when it starts, so positions follow
    the list's order whatever order the calls finish in. A call that fails does not cancel
    the others: they finish and are journaled (a retry of the run replays them instead of
    running them again), then the first failure in call order is raised as itself, not
    wrapped in an exception group, with a note naming any other failures. Run signals (a
    suspension, a lost lease, a cancellation) still stop every call at once.
    """
    if len(calls) <= 1:
        return [await call() for call in calls]
    results: list[Any] = [None] * len(calls)
    failures: dict[int, Exception] = {}

    async def run(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as exc:
            failures[i] = exc

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(run, i)
    except BaseExceptionGroup as group:
        # Only signals and cancellations get here: raise the signal as itself.
        cancelled = anyio.get_cancelled_exc_class()
        real = [e for e in _leaves(group) if not isinstance(e, cancelled)]
        if real:
            raise real[0] from None
        raise
    if failures:
        first, *others = (failures[i] for i in sorted(failures))
        if others:
            first.add_note(
                "Also failed, side by side: "
                + "; ".join(f"{type(e).__name__}: {e}" for e in others)
            )
        raise first
    return results


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]
