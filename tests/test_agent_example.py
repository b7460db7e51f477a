"""The customer-support example (examples/support_agent), end to end on the offline model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentflow import Engine
from agentflow.agents import FunctionModel, LiteLLMModel, OpenAIModel
from examples.support_agent import (
    SupportOutcome,
    SupportQuery,
    build_model,
    classifier,
    outbox,
    responder,
    support_reply,
)
from examples.support_agent.offline import offline_model

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline model, even where OPENAI_API_KEY happens to be set."""
    model = offline_model()
    monkeypatch.setattr(classifier, "model", model)
    monkeypatch.setattr(responder, "model", model)


def query(message: str) -> SupportQuery:
    return SupportQuery(customer_email="ada@example.com", message=message)


async def test_a_clear_question_is_answered_through_the_tools(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([support_reply])
    sent_before = len(outbox)
    async with running_worker(engine):
        handle = await engine.trigger(support_reply, query("I was charged twice for my order"))
        outcome = await handle.result(timeout=20)

    assert (outcome.status, outcome.category, outcome.escalated) == ("replied", "billing", False)
    [reply] = outbox[sent_before:]
    assert reply.message_id == outcome.reply_id
    assert reply.to == "ada@example.com"
    assert "kb-102" in reply.body
    assert outcome.model_requests == 4
    steps = await engine.get_steps(handle.id)
    assert [(s.kind, s.name) for s in steps] == [
        ("llm", "classifier:model"),
        ("llm", "responder:model"),
        ("tool", "responder:tool:search_kb"),
        ("llm", "responder:model"),
        ("tool", "responder:tool:send_reply"),
        ("llm", "responder:model"),
    ]
    streamed = await engine.get_stream(handle.id, stream="reply")
    assert "".join(c.data for c in streamed) == outcome.summary


async def test_an_unclear_question_waits_for_a_human_who_corrects_it(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([support_reply])
    sent_before = len(outbox)
    async with running_worker(engine):
        handle = await engine.trigger(support_reply, query("Hello, a question about my account"))
        [approval] = await eventually(
            lambda: engine.pending_approvals(handle.id), what="the escalation"
        )
        assert approval.name == "escalation"
        assert approval.data["classification"]["confidence"] < 0.6
        assert outbox[sent_before:] == []  # nothing is sent before the human looked
        await engine.approve(
            handle.id, "escalation", approver="lead", data={"category": "technical"}
        )
        outcome = await handle.result(timeout=20)

    assert (outcome.status, outcome.category) == ("replied", "technical")
    assert (outcome.escalated, outcome.reviewed_by) == (True, "lead")
    [reply] = outbox[sent_before:]
    assert "kb-104" in reply.body
    # The replay after the approval did not classify again.
    steps = await engine.get_steps(handle.id)
    assert [s.name for s in steps].count("classifier:model") == 1


async def test_a_rejected_escalation_is_handed_off_without_a_reply(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([support_reply])
    sent_before = len(outbox)
    async with running_worker(engine):
        handle = await engine.trigger(support_reply, query("Hmm"))
        await eventually(lambda: engine.pending_approvals(handle.id), what="the escalation")
        await engine.reject(handle.id, "escalation", approver="lead", comment="I'll call them")
        outcome = await handle.result(timeout=20)

    assert outcome == SupportOutcome(
        status="handed_off",
        category="other",
        confidence=0.4,
        escalated=True,
        reviewed_by="lead",
        summary="I'll call them",
    )
    assert outbox[sent_before:] == []


def test_the_model_is_chosen_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTFLOW_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(build_model(), FunctionModel)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model: Any = build_model()
    assert (type(model), model.name) == (OpenAIModel, "gpt-4o-mini")
    monkeypatch.setenv("AGENTFLOW_MODEL", "openai:llama3.1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    model = build_model()
    assert (type(model), model.name, model.base_url) == (
        OpenAIModel,
        "llama3.1",
        "http://127.0.0.1:11434/v1",
    )
    monkeypatch.setenv("AGENTFLOW_MODEL", "anthropic/claude-3-5-haiku-latest")
    assert isinstance(build_model(), LiteLLMModel)


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTFLOW_MODEL")}
    env["AGENTFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.db'}"
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "examples.support_agent"], cwd=ROOT, env=env, check=False
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    results = [
        SupportOutcome.model_validate_json(line.split("result:", 1)[1])
        for line in out.splitlines()
        if "result:" in line
    ]
    assert [(r.status, r.category, r.escalated) for r in results] == [
        ("replied", "shipping", False),
        ("replied", "technical", True),
    ]
    assert "approved by demo" in out
