"""The example's agents, tools and model choice."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field

from agentflow.agents import Agent, LiteLLMModel, Model, OpenAIModel, tool

from . import kb
from .offline import offline_model

__all__ = [
    "Classification",
    "SupportTask",
    "build_model",
    "classifier",
    "responder",
    "search_kb",
    "send_reply",
]


def build_model() -> Model:
    """``AGENTFLOW_MODEL`` (``openai:<model>``, or any litellm model string), else OpenAI's
    gpt-4o-mini when ``OPENAI_API_KEY`` is set, else the offline model."""
    name = os.environ.get("AGENTFLOW_MODEL")
    if name:
        if name.startswith("openai:"):
            return OpenAIModel(
                name.removeprefix("openai:"), base_url=os.environ.get("OPENAI_BASE_URL")
            )
        return LiteLLMModel(name)
    if os.environ.get("OPENAI_API_KEY"):
        return OpenAIModel("gpt-4o-mini")
    return offline_model()


class Classification(BaseModel):
    category: Literal["billing", "shipping", "returns", "technical", "other"]
    confidence: float = Field(ge=0, le=1, description="How sure you are, 0 to 1.")
    summary: str = Field(description="The customer's problem in one sentence.")


class SupportTask(BaseModel):
    """What the responder is given (as JSON)."""

    customer_email: str
    message: str
    category: str


@tool
def search_kb(query: str, category: str | None = None) -> list[kb.Article]:
    """Search the help-centre articles.

    Args:
        query: Words from the customer's question.
        category: Only articles of this category (billing, shipping, returns, technical).
    """
    return kb.search(query, category)


@tool
def send_reply(to: str, subject: str, body: str) -> kb.SentReply:
    """Send the reply e-mail to the customer. Call it exactly once.

    Args:
        to: The customer's e-mail address.
        subject: The e-mail subject.
        body: The e-mail text.
    """
    reply = kb.SentReply(
        message_id=f"msg_{len(kb.outbox) + 1:04d}", to=to, subject=subject, body=body
    )
    kb.outbox.append(reply)
    return reply


_model = build_model()

classifier = Agent(
    "classifier",
    _model,
    "Classify the customer's message for a support team. Use 'other' and a low confidence "
    "when it is unclear or mixes several problems.",
    output_type=Classification,
    max_turns=4,
)

responder = Agent(
    "responder",
    _model,
    "You answer customer-support e-mails. You get the customer's message as JSON. Search "
    "the knowledge base, then send one short, friendly reply with send_reply based on what "
    "you found, then say in one sentence what you did.",
    tools=[search_kb, send_reply],
    max_turns=6,
    stream="reply",
)
