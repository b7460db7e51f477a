"""The support workflow: classify, maybe escalate to a human, answer through tools."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from agentflow import Engine, NonRetryableError, RunContext, workflow
from agentflow.agents import ToolMessage

from .agents import Classification, SupportTask, classifier, responder

__all__ = ["CONFIDENCE_THRESHOLD", "SupportOutcome", "SupportQuery", "engine", "support_reply"]

# Below this confidence a human confirms (or corrects) the classification first.
CONFIDENCE_THRESHOLD = 0.6


class SupportQuery(BaseModel):
    customer_email: str = Field(description="Where to send the reply.")
    message: str = Field(min_length=1, description="The customer's message.")
    escalation_timeout_seconds: float = Field(default=2 * 86400, gt=0)


class SupportOutcome(BaseModel):
    status: Literal["replied", "handed_off"]
    category: str
    confidence: float
    escalated: bool = False
    reviewed_by: str | None = None
    reply_id: str | None = None
    summary: str | None = None
    model_requests: int = 0
    total_tokens: int = 0


@workflow(id="support_reply", timeout=600)
async def support_reply(ctx: RunContext, query: SupportQuery) -> SupportOutcome:
    """Answer a customer e-mail. Unclear messages wait for a human approval named
    "escalation" (approve, optionally editing "category"; reject to take it over)."""
    classified = await classifier.run(ctx, query.message)
    label = classified.output
    outcome = SupportOutcome(status="replied", category=label.category, confidence=label.confidence)
    requests, tokens = classified.usage.requests, classified.usage.total_tokens

    if label.confidence < CONFIDENCE_THRESHOLD:
        ctx.log.info("low confidence: escalating", category=label.category)
        decision = await ctx.wait_for_approval(
            "escalation",
            data={"query": query.model_dump(), "classification": label.model_dump()},
            timeout=query.escalation_timeout_seconds,
        )
        outcome = outcome.model_copy(update={"escalated": True, "reviewed_by": decision.approver})
        if not decision.approved:
            ctx.log.info("handed off to a human", comment=decision.comment)
            return outcome.model_copy(update={"status": "handed_off", "summary": decision.comment})
        if decision.edited:
            label = _corrected(label, decision.data)
            outcome = outcome.model_copy(update={"category": label.category})

    task = SupportTask(
        customer_email=query.customer_email, message=query.message, category=label.category
    )
    answered = await responder.run(ctx, task)
    sent = [
        json.loads(m.content)
        for m in answered.messages
        if isinstance(m, ToolMessage) and m.name == "send_reply" and not m.is_error
    ]
    return outcome.model_copy(
        update={
            "reply_id": sent[-1]["message_id"] if sent else None,
            "summary": answered.output,
            "model_requests": requests + answered.usage.requests,
            "total_tokens": tokens + answered.usage.total_tokens,
        }
    )


def _corrected(label: Classification, edit: object) -> Classification:
    """The approver's correction, e.g. ``{"category": "billing"}``, validated."""
    if not isinstance(edit, dict):
        raise NonRetryableError("edited escalation data must be a JSON object")
    fields = edit.get("classification", edit)
    try:
        return Classification.model_validate({**label.model_dump(), **fields})
    except ValidationError as exc:
        raise NonRetryableError(f"the edited classification is invalid: {exc}") from None


engine = Engine(workflows=[support_reply])
