"""A worker process running an agent, for the agent crash test.

Run as ``python -m tests.apps.agent_app DATABASE_URL [--lease S] ...`` (see ``crash_app``
for the READY/STOPPING/STOPPED protocol). The ``agent_crash`` workflow runs an agent on the
real openai SDK against the test's LLM server (``AgentJob.base_url``); its ``record`` tool
appends ``<run_id>:<note>`` to the side-effect file, fsynced, so the test can count effects
across processes.
"""

from __future__ import annotations

from pydantic import BaseModel

from agentflow import RetryPolicy, RunContext, workflow
from agentflow.agents import Agent, OpenAIModel, tool

from .crash_app import append_line, main


class AgentJob(BaseModel):
    base_url: str
    side_effects: str


@workflow(id="agent_crash")
async def agent_crash(ctx: RunContext, job: AgentJob) -> str:
    @tool
    def record(note: str) -> str:
        """Write a note down."""
        append_line(job.side_effects, f"{ctx.run_id}:{note}")
        return f"recorded {note}"

    agent = Agent(
        "notes",
        OpenAIModel("test-model", base_url=job.base_url),
        "Take notes.",
        tools=[record],
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01),
    )
    return (await agent.run(ctx, "note 'first', then finish")).output


if __name__ == "__main__":
    main([agent_crash])
