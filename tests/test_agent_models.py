"""The model layer's small parts: Retry-After in retry policies, error helpers, offline models,
model construction without a key, and the example's engine as the CLI loads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from agentflow import Engine, RetryPolicy
from agentflow.agents import (
    ModelAuthError,
    ModelRateLimitError,
    ModelRequest,
    OpenAIModel,
    ScriptedModel,
    ScriptExhaustedError,
    UserMessage,
    tool_call,
)
from agentflow.agents.models.errors import parse_retry_after
from agentflow.cli.loader import load_engine
from agentflow.retry import retry_after

pytestmark = pytest.mark.anyio


def test_retry_policy_waits_at_least_the_requested_delay() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=5, jitter=0)
    limited = ModelRateLimitError("busy", model="m", retry_after=2.0)
    assert retry_after(limited) == 2.0
    assert policy.delay_for(limited, 1) == 2.0
    assert policy.delay_for(limited, 2) == 2.0
    assert policy.delay_for(ModelRateLimitError("busy", model="m", retry_after=60), 1) == 5
    assert policy.delay_for(ValueError(), 2) == policy.delay(2) == 0.02  # no hint: backoff
    assert retry_after(ValueError()) is None


def test_retry_after_headers() -> None:
    assert parse_retry_after({"Retry-After-Ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    when = datetime.now(UTC) + timedelta(seconds=30)
    parsed = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert parsed is not None
    assert 0 < parsed <= 30
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after(None) is None


async def test_a_scripted_model_says_when_its_script_ran_out() -> None:
    model = ScriptedModel([tool_call("a", x=1)])
    first = await model.request(ModelRequest([UserMessage("hi")], turn=0))
    assert first.message.tool_calls[0].id == "call_0_0"
    assert first.message.tool_calls[0].arguments == '{"x": 1}'
    with pytest.raises(ScriptExhaustedError) as exhausted:
        await model.request(ModelRequest([UserMessage("hi")], turn=1))
    assert exhausted.value.code == "script_exhausted"
    assert len(model.requests) == 2


async def test_openai_without_a_key_fails_as_an_auth_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIModel("gpt-4o-mini")
    assert model.context_window == 128_000
    assert model.price is not None
    with pytest.raises(ModelAuthError):
        await model.request(ModelRequest([UserMessage("hi")]))
    # A local server needs no key and has no OpenAI price.
    local = OpenAIModel("gpt-4o-mini", base_url="http://127.0.0.1:1/v1")
    assert local.price is None


def test_the_example_engine_loads_like_the_cli_loads_it() -> None:
    engine = load_engine("examples.support_agent:engine")
    assert isinstance(engine, Engine)
    assert "support_reply" in engine.workflows
