"""Keeping a request inside the model's context window.

The agent keeps the whole conversation; only what it *sends* is trimmed, and only when the
counted prompt does not fit ``context_window - reserved_output`` tokens. In order:

1. **Old tool results are emptied**, oldest first: their content becomes a short note, the
   call/result pairing stays valid. The results of the latest assistant turn are kept (the
   model is about to read them).
2. **Old turns before the run's input are dropped** (the ``history``), oldest first, whole:
   a user message, or an assistant message with its tool results.
3. **Then the run's own older turns**, between its input and the model's latest turn, oldest
   first, whole: an assistant message with what answers it (its tool results, or the
   feedback on an invalid answer).
4. Never trimmed: system messages, the run's input (``protected``; by default the latest
   user message) and the latest turn (the last assistant message and what follows it).

If the prompt still does not fit, the call fails with ``ContextWindowExceededError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .messages import Message, ToolMessage

__all__ = ["TRIMMED_RESULT", "Trimmed", "trim_messages"]

TRIMMED_RESULT = "[tool result removed to keep the conversation inside the context window]"


@dataclass(frozen=True, slots=True)
class Trimmed:
    messages: list[Message]
    tokens: int
    emptied_results: int = 0
    dropped_messages: int = 0


def trim_messages(
    messages: list[Message],
    *,
    limit: int,
    count: Callable[[Message], int],
    fixed: int = 0,
    protected: int | None = None,
) -> Trimmed:
    """Trim ``messages`` (per the module's strategy) until they count at most ``limit``.

    ``fixed`` is what the request costs besides the messages (tool schemas, reply priming).
    ``protected`` is the index of the run's input message (default: the latest user
    message); a later user message, such as the feedback on an invalid answer, does not move
    it. The result may still be over ``limit`` when only protected messages are left.
    """
    sizes = [count(m) for m in messages]
    total = fixed + sum(sizes)
    if total <= limit:
        return Trimmed(list(messages), total)
    out = list(messages)
    if protected is None:
        protected = max((i for i, m in enumerate(out) if m.role == "user"), default=len(out))
    last_assistant = max((i for i, m in enumerate(out) if m.role == "assistant"), default=-1)

    emptied = 0
    for i, m in enumerate(out):
        if total <= limit:
            break
        if isinstance(m, ToolMessage) and i < last_assistant and m.content != TRIMMED_RESULT:
            shorter = replace(m, content=TRIMMED_RESULT)
            size = count(shorter)
            if size < sizes[i]:
                out[i], total, sizes[i] = shorter, total - sizes[i] + size, size
                emptied += 1

    # Whole turns that may go, in the order they go: [start, end) ranges of ``out``.
    turns: list[tuple[int, int]] = []
    i = 0
    while i < protected:  # the history: a message and the tool results that answer it
        end = i + 1
        while end < protected and out[end].role == "tool":
            end += 1
        if out[i].role != "system":
            turns.append((i, end))
        i = end
    i = protected + 1
    while i < last_assistant:  # the run's turns: an assistant message and what answers it
        end = i + 1
        while end < last_assistant and out[end].role not in ("assistant", "system"):
            end += 1
        if out[i].role != "system":
            turns.append((i, end))
        i = end

    drop: set[int] = set()
    for start, end in turns:
        if total <= limit:
            break
        total -= sum(sizes[start:end])
        drop.update(range(start, end))
    kept = [m for i, m in enumerate(out) if i not in drop]
    return Trimmed(kept, total, emptied, len(drop))
