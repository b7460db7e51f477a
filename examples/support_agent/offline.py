"""The offline model: a deterministic stand-in for an LLM, so the example runs without a key.

It plays both agents by reading the conversation like a model would: the classifier
answers with JSON from keyword rules; the responder searches the knowledge base, sends a
reply built from the best article, and then reports what it did.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentflow.agents import FunctionModel, Message, ModelRequest, ToolMessage, tool_call
from agentflow.agents.models import Reply

__all__ = ["offline_model"]

_RULES = [
    ("billing", r"charge|refund|invoice|billing|payment|paid"),
    ("shipping", r"ship|deliver|tracking|arrive|where is my"),
    ("returns", r"return|send back|exchange"),
    ("technical", r"log ?in|password|error|crash|bug"),
]


def _classify(text: str) -> dict[str, Any]:
    hits = [category for category, pattern in _RULES if re.search(pattern, text.lower())]
    if len(hits) == 1:
        return {"category": hits[0], "confidence": 0.9, "summary": text[:80]}
    # Nothing, or several things at once: unsure, so a human should look.
    return {"category": hits[0] if hits else "other", "confidence": 0.4, "summary": text[:80]}


def _respond(messages: list[Message]) -> Reply:
    task = json.loads(next(m.content for m in messages if m.role == "user"))
    results = [m for m in messages if isinstance(m, ToolMessage)]
    if not results:
        return tool_call("search_kb", query=task["message"], category=task["category"])
    last = results[-1]
    if last.name == "search_kb":
        articles = json.loads(last.content)
        best = articles[0] if articles else None
        body = (
            f"Hello,\n\n{best['body']}\n\n(See {best['id']}: {best['title']}.)"
            if best
            else "Hello,\n\nA colleague will look into this and get back to you."
        )
        return tool_call(
            "send_reply",
            to=task["customer_email"],
            subject=f"Re: your {task['category']} question",
            body=body,
        )
    sent = json.loads(last.content)
    return f"Replied to {task['customer_email']} (message {sent['message_id']})."


def _brain(messages: list[Message], request: ModelRequest) -> Reply:
    if request.agent == "classifier":
        question = next(m.content for m in messages if m.role == "user")
        return json.dumps(_classify(question))
    return _respond(messages)


def offline_model() -> FunctionModel:
    return FunctionModel(_brain, name="offline-support", context_window=16_000)
