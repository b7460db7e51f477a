"""Token counting (tiktoken from local files only, or a conservative estimate) and trimming
the history to fit the context window."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentflow import Engine, RunContext, RunStatus, workflow
from agentflow.agents import (
    Agent,
    AssistantMessage,
    FunctionModel,
    Message,
    ModelRequest,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    tokens,
    tool,
    tool_call,
)
from agentflow.agents.tokens import TokenCounter, estimate_tokens, load_encoding
from agentflow.agents.trimming import TRIMMED_RESULT, trim_messages

from ._support import running_worker

pytestmark = pytest.mark.anyio

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture
def fresh_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget loaded encodings and the one-time warning for the length of a test."""
    monkeypatch.setattr(tokens, "_loaded", {})
    monkeypatch.setattr(tokens, "_warned", False)


def test_counts_with_tiktoken_from_a_local_file() -> None:
    encoding = load_encoding("cl100k_base")
    assert encoding is not None
    counter = TokenCounter(encoding)
    assert counter.text("hello world") == 2
    assert counter.exact


@pytest.mark.usefixtures("fresh_encodings")
def test_a_user_set_cache_dir_is_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = tokens._find_file("cl100k_base")
    assert bundled is not None
    key = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    shutil.copy(bundled, tmp_path / key)
    monkeypatch.setattr(tokens, "_USER_CACHE_DIR", str(tmp_path))
    assert tokens._candidate_dirs()[0] == tmp_path
    assert tokens._find_file("cl100k_base") == tmp_path / key
    assert load_encoding("cl100k_base") is not None


@pytest.mark.usefixtures("fresh_encodings")
def test_without_encoding_files_it_estimates_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / hashlib.sha1(CL100K_URL.encode()).hexdigest()).write_text("corrupt")
    monkeypatch.setattr(tokens, "_candidate_dirs", lambda: [tmp_path])
    with caplog.at_level(logging.WARNING, logger="agentflow.agents"):
        assert load_encoding("cl100k_base") is None
        assert load_encoding("o200k_base") is None
    assert len([r for r in caplog.records if "characters / 3" in r.getMessage()]) == 1
    counter = TokenCounter(None)
    assert not counter.exact
    assert counter.text("x" * 30) == estimate_tokens("x" * 30) == 10


def test_encoding_follows_the_model() -> None:
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name("openai/gpt-4.1") == "o200k_base"
    assert tokens.encoding_name("claude-3-5-haiku") == "cl100k_base"


# -- trimming -----------------------------------------------------------------------------


def size(message: Message) -> int:
    if message.role == "assistant":
        return 1 + sum(len(c.arguments) for c in message.tool_calls) + len(message.content or "")
    return 1 + len(message.content)


def conversation() -> list[Message]:
    return [
        SystemMessage("s" * 10),
        UserMessage("old question" + "u" * 20),
        AssistantMessage(tool_calls=[ToolCall("t", "{}", "c1")]),
        ToolMessage("c1", "t", "r" * 300),
        AssistantMessage("old answer"),
        UserMessage("latest" + "q" * 20),
        AssistantMessage(tool_calls=[ToolCall("t", "{}", "c2")]),
        ToolMessage("c2", "t", "n" * 50),
    ]


def test_trimming_empties_old_tool_results_first() -> None:
    messages = conversation()
    total = sum(map(size, messages))
    trimmed = trim_messages(messages, limit=total - 50, count=size)
    assert trimmed.emptied_results == 1
    assert trimmed.dropped_messages == 0
    assert trimmed.messages[3] == ToolMessage("c1", "t", TRIMMED_RESULT)
    assert trimmed.messages[-1].content == "n" * 50  # the latest results are kept
    assert trimmed.tokens == sum(map(size, trimmed.messages)) <= total - 50
    assert messages == conversation()  # the agent's own history is untouched


def test_trimming_then_drops_whole_old_turns_never_system_or_latest_user_turn() -> None:
    messages = conversation()
    trimmed = trim_messages(messages, limit=100, count=size)
    assert [m.role for m in trimmed.messages] == ["system", "user", "assistant", "tool"]
    assert trimmed.messages[0] == messages[0]
    assert trimmed.messages[1:] == messages[5:]
    assert trimmed.dropped_messages == 4
    assert trimmed.tokens <= 100
    # Nothing left to remove: the result says how far over it still is.
    assert trim_messages(messages, limit=10, count=size).tokens > 10


@tool
def fetch_page(n: int) -> str:
    """Fetch a long page."""
    return f"page {n}: " + "lorem ipsum dolor sit amet " * 40


def browse(messages: list[Message], request: ModelRequest) -> Any:
    if request.turn < 4:
        return tool_call("fetch_page", n=request.turn)
    return "summary"


browse_model = FunctionModel(browse, context_window=1200)
browser = Agent("browser", browse_model, "Summarise pages.", tools=[fetch_page])
tiny = Agent("tiny", FunctionModel(browse, context_window=60), "Summarise pages.")


@workflow(id="browse")
async def browse_wf(ctx: RunContext) -> int:
    result = await browser.run(ctx, "Read pages 0 to 3")
    return len(result.messages)


@workflow(id="too_big")
async def too_big(ctx: RunContext) -> str:
    return (await tiny.run(ctx, "word " * 200)).output


async def test_requests_are_trimmed_to_the_context_window(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine([browse_wf])
    before = len(browse_model.requests)
    async with running_worker(engine):
        handle = await engine.trigger(browse_wf)
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == 11  # the agent keeps the whole conversation

    counter = await tokens.token_counter("function")
    limit = 1200 - 300  # a quarter of the window is kept for the answer
    sent = browse_model.requests[before:]
    for request in sent:
        assert counter.prompt(request.messages, request.tools) <= limit
        assert request.messages[0] == SystemMessage("Summarise pages.")
        assert UserMessage("Read pages 0 to 3") in request.messages
    last = sent[-1].messages
    assert TRIMMED_RESULT in [m.content for m in last if isinstance(m, ToolMessage)]
    assert last[-1].role == "tool"
    assert last[-1].content.startswith("page 3: ")  # the newest result is always sent

    steps = [s for s in await engine.get_steps(handle.id) if s.kind == "llm"]
    assert steps[0].info is not None
    assert "trimmed" not in steps[0].info
    assert steps[-1].info is not None
    assert steps[-1].info["trimmed"]["limit"] == limit
    assert steps[-1].info["prompt_tokens"] <= limit


async def test_a_prompt_that_cannot_fit_fails_clearly(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine([too_big])
    async with running_worker(engine):
        handle = await engine.trigger(too_big)
        run = await engine.wait(handle.id, timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "ContextWindowExceededError"
    assert await engine.get_steps(handle.id) == []
