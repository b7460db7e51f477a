"""Heavy provider libraries load only when used: importing agentflow, the worker, the agents
package or an agent application pulls in none of openai, litellm and tiktoken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("openai", "litellm", "tiktoken")


def python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTFLOW_MODEL")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_imports_do_not_load_provider_libraries() -> None:
    done = python(
        "-c",
        "import sys, agentflow, agentflow.engine, agentflow.worker, agentflow.agents, "
        "examples.support_agent\n"
        "agentflow.Agent, agentflow.OpenAIModel, agentflow.LiteLLMModel, agentflow.tool\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_import_time_and_cli_help_do_not_load_them() -> None:
    for args in (["-c", "import agentflow"], ["-m", "agentflow.cli", "--help"]):
        done = python("-X", "importtime", *args)
        assert done.returncode == 0, done.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        assert not {m for m in imported if m.split(".")[0] in HEAVY}, args


def test_counting_tokens_loads_tiktoken_but_not_litellm() -> None:
    """The encoding files bundled with litellm are found without importing litellm."""
    done = python(
        "-c",
        "import sys, anyio\n"
        "from agentflow.agents.tokens import token_counter\n"
        "counter = anyio.run(token_counter, 'gpt-4o-mini')\n"
        "print(counter.exact, counter.text('hello world'),"
        f" sorted(m for m in {HEAVY!r} if m in sys.modules))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True 2 ['tiktoken']"
