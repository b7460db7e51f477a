"""The real openai SDK against an OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py):
tool calls, streaming, structured output, a 429 honoured with its Retry-After, a 400 and a
401 that are not retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agentflow import Engine, RetryPolicy, RunContext, RunStatus, workflow
from agentflow.agents import Agent, ModelRequest, OpenAIModel, UserMessage, tool

from ._support import running_worker
from .llm_server import Fail, LLMServer, Reply, serve

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, factor=2, max_delay=1, jitter=0)


@pytest.fixture
async def llm() -> AsyncIterator[tuple[LLMServer, str]]:
    server = LLMServer()
    async with serve(server) as base_url:
        yield server, base_url


@tool
def weather(city: str) -> dict[str, Any]:
    """Current weather.

    Args:
        city: City name.
    """
    return {"city": city, "temp_c": 21}


class Forecast(BaseModel):
    city: str
    summary: str


_models: dict[str, OpenAIModel] = {}


def model_for(base_url: str) -> OpenAIModel:
    # One model per server: its client (one per event loop) is reused across runs.
    return _models.setdefault(base_url, OpenAIModel("test-model", base_url=base_url))


@workflow(id="openai_agent")
async def openai_agent(ctx: RunContext, job: dict[str, Any]) -> Any:
    agent: Agent[Any] = Agent(
        "weather",
        model_for(job["base_url"]),
        "You report the weather.",
        tools=[weather],
        output_type=Forecast if job.get("structured") else str,
        stream="tokens" if job.get("stream") else None,
        retry=FAST_RETRY,
        model_settings={"temperature": 0.0},
    )
    result = await agent.run(ctx, "Weather in Paris?")
    out = result.output
    return out.model_dump() if isinstance(out, BaseModel) else out


async def run_agent(engine: Engine, job: dict[str, Any]) -> Any:
    async with running_worker(engine):
        handle = await engine.trigger(openai_agent, job)
        return await engine.wait(handle.id, timeout=20)


async def test_tool_calls_through_the_openai_sdk(
    make_engine: Callable[..., Engine], llm: tuple[LLMServer, str]
) -> None:
    server, base_url = llm
    server.script(
        Reply(tool_calls=[("weather", {"city": "Paris"})], prompt_tokens=31, completion_tokens=9),
        Reply("Sunny, 21C in Paris."),
    )
    engine = make_engine([openai_agent])
    run = await run_agent(engine, {"base_url": base_url})

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == "Sunny, 21C in Paris."
    first, second = server.requests
    assert first["model"] == "test-model"
    assert first["temperature"] == 0.0
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["tools"][0]["function"]["name"] == "weather"
    assert first["tools"][0]["function"]["parameters"]["properties"]["city"] == {
        "description": "City name.",
        "title": "City",
        "type": "string",
    }
    assistant, result = second["messages"][2:]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city": "Paris"}',
    }
    assert result == {
        "role": "tool",
        "tool_call_id": "call_0_weather",
        "content": '{"city": "Paris", "temp_c": 21}',
    }
    steps = await engine.get_steps(run.id)
    assert [s.kind for s in steps] == ["llm", "tool", "llm"]
    assert steps[0].output["usage"] == {"input_tokens": 31, "output_tokens": 9}
    assert steps[0].output["model_name"] == "test-model"
    assert steps[0].output["finish_reason"] == "tool_calls"
    # A local server's model has no known price.
    assert steps[0].output["cost_usd"] is None


async def test_streamed_deltas_are_published_and_the_message_journaled(
    make_engine: Callable[..., Engine], llm: tuple[LLMServer, str]
) -> None:
    server, base_url = llm
    text = "It is sunny in Paris today, with a light breeze from the west."
    server.script(
        Reply(tool_calls=[("weather", {"city": "Paris"})]),
        Reply(text, prompt_tokens=50, completion_tokens=14, chunk_size=2),
    )
    engine = make_engine([openai_agent])
    run = await run_agent(engine, {"base_url": base_url, "stream": True})

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == text
    assert all(r["stream"] for r in server.requests)
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    chunks = await engine.get_stream(run.id, stream="tokens")
    assert "".join(c.data for c in chunks) == text
    assert len(chunks) < len(text) // 2  # batched, not one write per delta
    steps = await engine.get_steps(run.id)
    # Tool calls streamed in pieces come back whole.
    assert steps[0].output["message"]["tool_calls"] == [
        {"name": "weather", "arguments": '{"city": "Paris"}', "id": "call_0_weather"}
    ]
    assert steps[2].output["message"]["content"] == text
    assert steps[2].output["usage"] == {"input_tokens": 50, "output_tokens": 14}


async def test_structured_output_sends_a_json_schema(
    make_engine: Callable[..., Engine], llm: tuple[LLMServer, str]
) -> None:
    server, base_url = llm
    server.script(Reply('{"city": "Paris", "summary": "sunny"}'))
    engine = make_engine([openai_agent])
    run = await run_agent(engine, {"base_url": base_url, "structured": True})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"city": "Paris", "summary": "sunny"}
    response_format = server.requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Forecast"
    assert response_format["json_schema"]["schema"]["required"] == ["city", "summary"]


async def test_rate_limit_is_retried_after_the_requested_delay(
    make_engine: Callable[..., Engine], llm: tuple[LLMServer, str]
) -> None:
    server, base_url = llm
    server.script(
        Fail(429, "slow down", headers={"retry-after-ms": "50", "retry-after": "1"}),
        Reply("Sunny."),
    )
    engine = make_engine([openai_agent])
    run = await run_agent(engine, {"base_url": base_url})

    assert run.status is RunStatus.COMPLETED, run.error
    assert len(server.requests) == 2  # the SDK's own retries are off: one retry, ours
    [step] = await engine.get_steps(run.id)
    assert (step.kind, step.attempts) == ("llm", 2)
    [error] = await engine.get_errors(run.id)
    assert error.type == "ModelRateLimitError"
    assert "retry after 0.05s" in error.message


@pytest.mark.parametrize(
    ("status", "error_type"), [(400, "ModelBadRequestError"), (401, "ModelAuthError")]
)
async def test_bad_requests_and_auth_errors_are_not_retried(
    make_engine: Callable[..., Engine],
    llm: tuple[LLMServer, str],
    status: int,
    error_type: str,
) -> None:
    server, base_url = llm
    server.script(Fail(status, "nope"))
    engine = make_engine([openai_agent])
    run = await run_agent(engine, {"base_url": base_url})

    assert run.status is RunStatus.FAILED
    assert len(server.requests) == 1
    [step] = await engine.get_steps(run.id)
    assert (step.status, step.attempts) == ("failed", 1)
    assert step.error is not None
    assert step.error["type"] == error_type
    assert run.error["type"] == "StepFailedError"


async def test_server_holds_a_request_until_released(llm: tuple[LLMServer, str]) -> None:
    """The harness the crash test relies on: a held reply waits for the test's event."""
    server, base_url = llm
    release = anyio.Event()
    server.script(Reply("late", hold=release))
    model = OpenAIModel("test-model", base_url=base_url)
    async with anyio.create_task_group() as tg:
        answers: list[str | None] = []

        async def ask() -> None:
            response = await model.request(ModelRequest([UserMessage("hi")]))
            answers.append(response.message.content)

        tg.start_soon(ask)
        with anyio.fail_after(10):
            await server.wait_for_requests(1)
        assert answers == []
        release.set()
    assert answers == ["late"]
