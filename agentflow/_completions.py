"""Waiting for runs to end, for many waiters at the price of one query.

Runs that end in this process wake their waiters at once. For runs other processes finish,
one waiter at a time (the "poller") asks the database about every watched run in a single
query, so a thousand waiters cost one query per interval rather than a thousand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

__all__ = ["Completions"]

Probe = Callable[[Sequence[str]], Awaitable[set[str]]]


class Completions:
    def __init__(self, finished_among: Probe, *, interval: float = 0.05) -> None:
        self._finished_among = finished_among
        self._interval = interval
        self._events: dict[str, anyio.Event] = {}
        self._polling = False

    def done(self, run_id: str) -> None:
        """A run ended in this process: wake its waiters now."""
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()

    async def wait(self, run_id: str) -> None:
        """Return once the run has ended (the caller bounds the wait with a cancel scope)."""
        event = self._events.get(run_id)
        if event is None:
            event = self._events[run_id] = anyio.Event()
        while not event.is_set():
            if self._polling:
                with anyio.move_on_after(self._interval * 4):
                    await event.wait()
                continue
            self._polling = True
            try:
                await self._poll_until(event)
            finally:
                self._polling = False

    async def _poll_until(self, own: anyio.Event) -> None:
        while not own.is_set():
            with anyio.move_on_after(self._interval):
                await own.wait()
            if own.is_set() or not self._events:
                return
            for run_id in await self._finished_among(list(self._events)):
                self.done(run_id)
