"""Batching a model's text deltas into live-stream writes.

Every ``ctx.publish`` is a database write, so deltas are buffered and written when
``max_chars`` have accumulated or ``interval`` seconds have passed since the last write (and
at the end). Streams are not journaled: the ``llm`` step keeps the final message, and a
retried call streams its text again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

__all__ = ["StreamBuffer"]


class StreamBuffer:
    """A ``TextStream`` that publishes batched deltas with ``publish(text)``."""

    def __init__(
        self,
        publish: Callable[[str], Awaitable[None]],
        *,
        interval: float = 0.05,
        max_chars: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._max_chars = max_chars
        self._clock = clock
        self._parts: list[str] = []
        self._size = 0
        self._last = clock()
        self.writes = 0

    async def send(self, delta: str) -> None:
        if not delta:
            return
        self._parts.append(delta)
        self._size += len(delta)
        if self._size >= self._max_chars or self._clock() - self._last >= self._interval:
            await self.flush()

    async def flush(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts, self._size = [], 0
        self._last = self._clock()
        self.writes += 1
        await self._publish(text)
