"""Waiting for runs to end, for many waiters at the price of one query.

Runs that end in this process wake their waiters at once, handing over the finished row.
For runs other processes finish, one waiter at a time (the "poller") asks the database about
every watched run in a single query, so a thousand waiters cost one query per interval
rather than a thousand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["Completions"]

Probe = Callable[[Sequence[str]], Awaitable[set[str]]]


@dataclass(slots=True)
class _Watch:
    event: anyio.Event = field(default_factory=anyio.Event)
    waiters: int = 0
    row: Mapping[Any, Any] | None = None


class Completions:
    def __init__(self, finished_among: Probe, *, interval: float = 0.05) -> None:
        self._finished_among = finished_among
        self._interval = interval
        self._watches: dict[str, _Watch] = {}
        self._polling = False

    def done(self, run_id: str, row: Mapping[Any, Any] | None = None) -> None:
        """A run ended (in this process when ``row`` is given): wake its waiters now."""
        watch = self._watches.pop(run_id, None)
        if watch is not None:
            watch.row = row
            watch.event.set()

    async def wait(self, run_id: str) -> Mapping[Any, Any] | None:
        """Return once the run has ended, with its row if it ended in this process.

        The caller bounds the wait with a cancel scope.
        """
        watch = self._watches.get(run_id)
        if watch is None:
            watch = self._watches[run_id] = _Watch()
        watch.waiters += 1
        try:
            await self._wait(watch.event)
        finally:
            watch.waiters -= 1
            if not watch.waiters and self._watches.get(run_id) is watch:
                del self._watches[run_id]  # every waiter gave up: stop watching
        return watch.row

    async def _wait(self, event: anyio.Event) -> None:
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
            if own.is_set() or not self._watches:
                return
            for run_id in await self._finished_among(list(self._watches)):
                self.done(run_id)
