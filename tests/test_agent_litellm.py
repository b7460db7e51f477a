"""Real litellm against the OpenAI-compatible test server (``openai/<model>`` with an
``api_base``): tool calls, streaming, and error classification.

litellm takes seconds to import, so this module holds every test that needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agentflow import Engine, RetryPolicy, RunContext, RunStatus, workflow
from agentflow.agents import (
    Agent,
    LiteLLMModel,
    ModelBadRequestError,
    ModelRateLimitError,
    ModelRequest,
    UserMessage,
    tool,
)

from ._support import running_worker
from .llm_server import Fail, LLMServer, Reply, serve

pytestmark = [
    pytest.mark.anyio,
    # litellm reads deprecated pydantic attributes internally.
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.fixture
async def llm() -> AsyncIterator[tuple[LLMServer, str]]:
    server = LLMServer()
    async with serve(server) as base_url:
        yield server, base_url


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@workflow(id="litellm_agent")
async def litellm_agent(ctx: RunContext, job: dict[str, Any]) -> str:
    model = LiteLLMModel("openai/test-model", api_base=job["base_url"], api_key="test")
    agent = Agent(
        "calc",
        model,
        "Use the tools.",
        tools=[add],
        stream="tokens",
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0),
    )
    return (await agent.run(ctx, "2 + 3?")).output


async def test_tool_calls_and_streaming_through_litellm(
    make_engine: Callable[..., Engine], llm: tuple[LLMServer, str]
) -> None:
    server, base_url = llm
    server.script(
        Fail(429, "busy", headers={"retry-after-ms": "20"}),
        Reply(tool_calls=[("add", {"a": 2, "b": 3})]),
        Reply("2 + 3 = 5", prompt_tokens=40, completion_tokens=6),
    )
    engine = make_engine([litellm_agent])
    async with running_worker(engine):
        handle = await engine.trigger(litellm_agent, {"base_url": base_url})
        run = await engine.wait(handle.id, timeout=30)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == "2 + 3 = 5"
    assert len(server.requests) == 3  # litellm's own retries are off
    assert server.requests[-1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_0_add",
        "content": "5",
    }
    chunks = await engine.get_stream(handle.id, stream="tokens")
    assert "".join(c.data for c in chunks) == "2 + 3 = 5"
    steps = await engine.get_steps(handle.id)
    assert [(s.kind, s.attempts) for s in steps] == [("llm", 2), ("tool", 1), ("llm", 1)]
    assert steps[2].output["usage"] == {"input_tokens": 40, "output_tokens": 6}
    [error] = await engine.get_errors(handle.id)
    assert error.type == "ModelRateLimitError"


async def test_litellm_errors_are_classified(llm: tuple[LLMServer, str]) -> None:
    server, base_url = llm
    model = LiteLLMModel("openai/test-model", api_base=base_url, api_key="test")
    request = ModelRequest([UserMessage("hi")])
    server.script(Fail(429, "busy", headers={"retry-after": "2"}), Fail(400, "bad"))
    with pytest.raises(ModelRateLimitError) as limited:
        await model.request(request)
    assert limited.value.retry_after == 2.0
    with pytest.raises(ModelBadRequestError) as bad:
        await model.request(request)
    assert bad.value.status == 400
    assert len(server.requests) == 2


async def test_litellm_api_errors_and_exhausted_quotas_are_classified() -> None:
    await LiteLLMModel("openai/test-model").prepare()  # imports litellm, offline
    import litellm
    import openai

    from agentflow.agents.models.errors import classify_openai_error

    def classify(exc: BaseException) -> tuple[str, bool]:
        error = classify_openai_error(openai, exc, "m")
        assert error is not None
        return type(error).__name__, RetryPolicy().is_retryable(error)

    # A provider's 5xx that litellm could not map: transient, not an authentication error.
    server_error = litellm.APIError(
        status_code=503, message="overloaded", llm_provider="cohere", model="c"
    )
    assert classify(server_error) == ("ModelServerError", True)
    quota = litellm.RateLimitError(
        message="You exceeded your current quota ('insufficient_quota')",
        llm_provider="openai",
        model="gpt-4o",
    )
    assert classify(quota) == ("ModelQuotaExceededError", False)
    assert "retrying will not help" in str(classify_openai_error(openai, quota, "m"))
