"""Change notifications for subscribed runs.

A run may be executed by a worker in another process, so the only shared truth is the
database: the watcher polls the runs someone subscribed to (and only those) every
``interval`` seconds and announces the resources of each run that changed. Clients subscribe
with ``subscriptions/listen`` (protocol 2026-07-28, delivered through the server's subscription
bus, see :mod:`mcp_server.listen`) or ``resources/subscribe`` (earlier protocol versions, sent
on the client's session).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from agentflow.errors import RunNotFoundError
from agentflow.status import RunStatus

from .queries import awaited_activity, latest_activity
from .uris import run_id_of, run_uris

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["RunWatcher", "Sink"]

logger = logging.getLogger("agentflow.mcp")

Sink = Callable[[str], Awaitable[None]]
"""Delivers "the resource at this URI changed" to one subscriber."""

_Fingerprint = tuple[Any, ...]


@dataclass(frozen=True)
class _Subscription:
    uris: frozenset[str]
    runs: frozenset[str]
    sink: Sink | None
    """None: deliver through the subscription bus (``subscriptions/listen`` streams)."""


_MISSING: Any = object()
_UNDELIVERED: Any = object()
"""Recorded instead of a fingerprint when a subscriber failed to take a change: it differs
from every fingerprint, so the next poll announces the run again."""
_MAX_BACKOFF = 30.0


class RunWatcher:
    """Polls subscribed runs and tells their subscribers when they change."""

    def __init__(self, engine: Engine, bus: SubscriptionBus, interval: float = 0.5) -> None:
        self.engine = engine
        self.bus = bus
        self.interval = interval
        self._ids = itertools.count()
        self._subscriptions: dict[int, _Subscription] = {}
        self._seen: dict[str, _Fingerprint | None] = {}
        """The last fingerprint of each watched run (a run is watched while a subscription
        names it; one without an entry yet gets its baseline at the next poll)."""
        self._failing: set[str] = set()
        self._wake = anyio.Event()

    @property
    def watched_runs(self) -> frozenset[str]:
        """The runs someone is subscribed to (the ones each poll reads)."""
        return frozenset(self._watched())

    async def subscribe(self, uris: Iterable[str], sink: Sink | None = None) -> Callable[[], None]:
        """Watch the runs behind ``uris``; returns the (idempotent) unsubscribe callable.

        ``sink`` receives the URIs that changed; without one they are published on the
        subscription bus, once per change however many ``subscriptions/listen`` streams
        watch them (the bus fans out to the streams, each filtering by its own URIs).

        The subscription is registered first, then the runs' current state is recorded
        before this returns, so any change made after the subscription was acknowledged is
        announced, and a concurrent unsubscribe of another subscriber cannot drop a run this
        one watches.

        Raises:
            Exception: reading the runs' state failed (nothing stays subscribed).
        """
        by_uri = {uri: run_id for uri in uris if (run_id := run_id_of(uri)) is not None}
        runs = frozenset(by_uri.values())
        key = next(self._ids)
        self._subscriptions[key] = _Subscription(frozenset(by_uri), runs, sink)

        def unsubscribe() -> None:
            if self._subscriptions.pop(key, None) is None:
                return
            live = self._watched()
            for run_id in runs - live:
                self._seen.pop(run_id, None)
                self._failing.discard(run_id)

        try:
            for run_id in runs:
                if run_id in self._seen:
                    continue
                fingerprint = await self._fingerprint(run_id)
                if key in self._subscriptions:
                    self._seen.setdefault(run_id, fingerprint)
        except BaseException:
            unsubscribe()
            raise
        self._wake.set()
        return unsubscribe

    async def publish(self, uri: str) -> None:
        """Announce on the subscription bus (each listen stream filters by its own URIs)."""
        await self.bus.publish(ResourceUpdated(uri=uri))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled; sleeps without polling while nobody is subscribed.

        A failed poll (the database restarting, say) is logged and retried with a growing
        delay: the watcher runs in the server's lifespan task group, so letting it raise
        would take the whole server down.
        """
        task_status.started()
        failures = 0
        while True:
            if not self._subscriptions:
                self._wake = anyio.Event()
                await self._wake.wait()
            await anyio.sleep(min(self.interval * 2**failures, max(_MAX_BACKOFF, self.interval)))
            try:
                await self.poll()
            except Exception as exc:
                failures = min(failures + 1, 16)
                if failures == 1:
                    logger.exception("checking subscribed runs failed; retrying")
                else:
                    logger.warning("checking subscribed runs failed %d times: %r", failures, exc)
            else:
                failures = 0

    async def poll(self) -> None:
        """Check every watched run once and notify the subscribers of those that changed.

        A run that cannot be read is logged and checked again next time: it does not hold
        back the others.

        Raises:
            Exception: no watched run could be read (the database is likely down).
        """
        changed: set[str] = set()
        watched = sorted(self._watched())
        failed: dict[str, Exception] = {}
        for run_id in watched:
            before = self._seen.get(run_id, _MISSING)
            try:
                now = await self._fingerprint(run_id)
            except Exception as exc:
                failed[run_id] = exc
                continue
            self._failing.discard(run_id)
            if self._seen.get(run_id, _MISSING) is not before:
                continue  # recorded or unsubscribed meanwhile: that record stands
            if before is _MISSING:
                if run_id in self._watched():
                    self._seen[run_id] = now  # a baseline: nothing to compare with yet
                continue
            if now != before:
                self._seen[run_id] = now
                changed.update(run_uris(run_id))
        if changed:
            await self._deliver(changed)
        if failed and len(failed) == len(watched):
            raise next(iter(failed.values()))
        for run_id, error in failed.items():
            if run_id not in self._failing:
                self._failing.add(run_id)
                logger.warning("cannot check run %s for changes: %r", run_id, error)

    async def _deliver(self, changed: set[str]) -> None:
        on_bus: set[str] = set()
        direct: dict[tuple[int, str], tuple[Sink, str]] = {}
        for sub in list(self._subscriptions.values()):
            hits = sub.uris & changed
            if sub.sink is None:
                on_bus |= hits
            else:
                for uri in hits:
                    direct[(id(sub.sink), uri)] = (sub.sink, uri)
        for uri in sorted(on_bus):
            await self.publish(uri)
        for sink, uri in direct.values():
            try:
                await sink(uri)
            except Exception:
                logger.exception("delivering a change notification for %s failed", uri)
                # Announce the run again at the next poll rather than lose the change (other
                # subscribers of the run may hear of it twice: notifications are idempotent).
                run_id = run_id_of(uri)
                if run_id is not None and run_id in self._seen:
                    self._seen[run_id] = _UNDELIVERED

    def _watched(self) -> set[str]:
        return {run_id for sub in self._subscriptions.values() for run_id in sub.runs}

    async def _fingerprint(self, run_id: str) -> _Fingerprint | None:
        """The run's state in two indexed reads: its row, and its newest step, log entry
        and stream chunk (steps do not touch the run's ``updated_at``); and for a waiting
        run a third, the child runs it waits for, whose approvals hold it up too."""
        try:
            run = await self.engine.get_run(run_id)
        except RunNotFoundError:
            return None
        activity = await latest_activity(self.engine, run_id)
        children = (
            await awaited_activity(self.engine, run_id) if run.status is RunStatus.WAITING else None
        )
        return (run.status, run.updated_at, run.cancel_requested, *activity, children)

    # -- subscription front doors ----------------------------------------------------------

    def session_sink(self, send: Sink) -> Sink:
        """A sink for a session of an earlier protocol version, which may close any time."""

        async def sink(uri: str) -> None:
            try:
                await send(uri)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                logger.debug("dropping a notification for %s: the session is closed", uri)

        return sink
