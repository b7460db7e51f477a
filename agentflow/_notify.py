"""A re-armable wake-up signal for loops that otherwise poll."""

from __future__ import annotations

import anyio

__all__ = ["Notifier"]


class Notifier:
    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._pending = False

    def notify(self) -> None:
        self._pending = True
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until notified (or ``timeout`` seconds); True when notified."""
        if not self._pending:
            self._event = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._event.wait()
            self._event = None
        notified, self._pending = self._pending, False
        return notified
