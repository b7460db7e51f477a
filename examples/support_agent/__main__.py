"""``python -m examples.support_agent``: two e-mails answered end to end in one process.

The first is clear and answered at once; the second is unclear, so the run waits for the
``escalation`` approval, which this demo grants with a corrected category.
"""

from __future__ import annotations

import argparse

import anyio

from agentflow import RunStatus

from . import engine, support_reply
from .workflow import SupportOutcome, SupportQuery

QUERIES = [
    SupportQuery(
        customer_email="ada@example.com", message="Where is my order? It has not arrived."
    ),
    SupportQuery(customer_email="alan@example.com", message="Hi, quick question about my account."),
]


async def demo(queries: list[SupportQuery]) -> list[SupportOutcome]:
    outcomes = []
    async with engine, anyio.create_task_group() as tg:
        worker = await tg.start(engine.worker(poll_interval=0.05, sweep_interval=0.2).run)
        try:
            for query in queries:
                outcomes.append(await _one(query))
        finally:
            worker.stop()
    return outcomes


async def _one(query: SupportQuery) -> SupportOutcome:
    handle = await engine.trigger(support_reply, query)
    print(f"run {handle.id}: {query.message!r}")
    with anyio.fail_after(120):
        while not (run := await engine.get_run(handle.id)).is_finished:
            for approval in await engine.pending_approvals(handle.id):
                print(f"  escalated: {approval.data['classification']}")
                await engine.approve(
                    handle.id, approval.name, approver="demo", data={"category": "technical"}
                )
                print("  -> approved by demo as 'technical'")
            await anyio.sleep(0.05)
    if run.status is not RunStatus.COMPLETED:
        raise SystemExit(f"run {run.id} ended {run.status}: {run.error}")
    for step in await engine.get_steps(handle.id):
        print(f"  #{step.seq} {step.kind:<4} {step.name} ({step.duration_ms:.1f} ms)")
    reply = "".join(c.data for c in await engine.get_stream(handle.id, stream="reply"))
    print(f"  streamed: {reply!r}")
    outcome = SupportOutcome.model_validate(run.output)
    print(f"  result: {outcome.model_dump_json()}")
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.support_agent")
    parser.add_argument("message", nargs="?", help="answer this message instead of the demo's")
    parser.add_argument("--email", default="you@example.com")
    args = parser.parse_args(argv)
    queries = QUERIES
    if args.message:
        queries = [SupportQuery(customer_email=args.email, message=args.message)]
    anyio.run(demo, queries)


if __name__ == "__main__":
    main()
