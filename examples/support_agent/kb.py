"""A tiny knowledge base and an outbox: the example's outside world (in memory, fake)."""

from __future__ import annotations

import re

from pydantic import BaseModel

__all__ = ["ARTICLES", "Article", "SentReply", "outbox", "search"]


class Article(BaseModel):
    id: str
    category: str
    title: str
    body: str


class SentReply(BaseModel):
    message_id: str
    to: str
    subject: str
    body: str


ARTICLES = [
    Article(
        id="kb-101",
        category="shipping",
        title="Where is my order?",
        body="Orders ship within 2 business days; the tracking link is in the shipping "
        "e-mail. Deliveries take 3-5 business days.",
    ),
    Article(
        id="kb-102",
        category="billing",
        title="I was charged twice",
        body="A second charge is usually a card pre-authorisation; it disappears within 5 "
        "business days. If both charges settle, we refund the duplicate automatically.",
    ),
    Article(
        id="kb-103",
        category="returns",
        title="Returning an item",
        body="Items can be returned within 30 days. Start a return from your order page; "
        "the refund arrives 5 days after we receive the parcel.",
    ),
    Article(
        id="kb-104",
        category="technical",
        title="I cannot log in",
        body="Reset your password from the login page. If the reset e-mail does not "
        "arrive, check your spam folder or contact us from the e-mail on your account.",
    ),
]

outbox: list[SentReply] = []


def search(query: str, category: str | None = None, limit: int = 2) -> list[Article]:
    """Articles ranked by the words they share with ``query`` (within ``category``)."""
    words = set(re.findall(r"[a-z]+", query.lower()))
    candidates = [a for a in ARTICLES if category in (None, "", a.category)] or ARTICLES

    def score(article: Article) -> int:
        text = f"{article.title} {article.body} {article.category}".lower()
        return len(words & set(re.findall(r"[a-z]+", text)))

    return sorted(candidates, key=score, reverse=True)[:limit]
