"""Flow control: concurrency keys, queue limits, priority with aging, rate limits, TTL."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from agentflow import Engine, RunContext, RunStatus, workflow
from agentflow.flow import Queue, RateLimit

from ._support import FakeClock, eventually, running_worker

pytestmark = pytest.mark.anyio


class Gauge:
    """Counts runs inside a section per key and remembers the highest count seen.

    With `fill`, runs wait inside (up to a timeout) until that many are in at once, so a test
    can tell "the limit was used" from "the runs happened not to overlap".
    """

    def __init__(self, fill: int = 0) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.done = 0
        self.fill = fill
        self.filled = anyio.Event()

    async def hold(self, key: str) -> None:
        self.now[key] += 1
        self.peak[key] = max(self.peak[key], self.now[key])
        if self.now[key] >= self.fill:
            self.filled.set()
        with anyio.move_on_after(10):
            await self.filled.wait()
        await anyio.sleep(0.002)  # stay inside long enough for overlaps to show
        self.now[key] -= 1
        self.done += 1


gauge = Gauge()


@workflow(id="keyed", concurrency_key="default", concurrency_limit=2)
async def keyed(ctx: RunContext, payload: dict[str, str]) -> None:
    await ctx.step("hold", gauge.hold, payload["key"])


@asynccontextmanager
async def workers(engines: list[Engine], **options: object) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for engine in engines:
            await stack.enter_async_context(running_worker(engine, **options))
        yield


async def test_per_key_concurrency_is_never_exceeded_by_competing_workers(
    make_engine: Callable[..., Engine],
) -> None:
    global gauge
    gauge = Gauge()
    # Three engines: three sets of connections claiming at once, as three processes would.
    engines = [make_engine([keyed]) for _ in range(3)]
    keys = [f"customer-{n}" for n in range(5)]
    runs = 150
    async with workers(engines, concurrency=8):
        for n in range(runs):
            key = keys[n % len(keys)]
            await engines[0].trigger(keyed, {"key": key}, concurrency_key=key)

        async def all_done() -> bool:
            return gauge.done == runs

        await eventually(all_done, timeout=60, what="all runs")
    assert max(gauge.peak.values()) <= 2, f"observed per-key maximum: {dict(gauge.peak)}"
    assert set(gauge.peak) == set(keys)


@workflow(id="queued_work")  # joins the "narrow" queue per trigger
async def queued_work(ctx: RunContext, payload: dict[str, str]) -> None:
    await ctx.step("hold", gauge.hold, "narrow")


@pytest.mark.parametrize(
    ("queue", "engines_count", "limit"),
    [(Queue("narrow", concurrency=2), 3, 2), (Queue("narrow", worker_concurrency=1), 1, 1)],
)
async def test_queue_limits_hold_across_workers(
    make_engine: Callable[..., Engine], queue: Queue, engines_count: int, limit: int
) -> None:
    global gauge
    gauge = Gauge(fill=limit)
    engines = [make_engine([queued_work], queues=[queue]) for _ in range(engines_count)]
    async with workers(engines, concurrency=10):
        for _ in range(40):
            await engines[0].trigger(queued_work, {}, queue="narrow")

        async def all_done() -> bool:
            return gauge.done == 40

        await eventually(all_done, timeout=60, what="all runs")
    assert gauge.peak["narrow"] == limit


order: list[str] = []


@workflow(id="ordered")
async def ordered(ctx: RunContext, payload: dict[str, str]) -> None:
    order.append(payload["name"])


async def test_higher_priority_first_and_waiting_raises_priority(
    make_engine: Callable[..., Engine],
) -> None:
    order.clear()
    clock = FakeClock()
    engine = make_engine([ordered], clock=clock, priority_aging=60)
    await engine.trigger(ordered, {"name": "old-low"}, priority=0)
    clock.offset += 600  # old-low has waited ten minutes: +10 priority
    await engine.trigger(ordered, {"name": "low"}, priority=0)
    await engine.trigger(ordered, {"name": "high"}, priority=5)
    await engine.trigger(ordered, {"name": "urgent"}, priority=20)
    async with running_worker(engine, concurrency=1, lease=3600):
        await eventually(lambda: _length(order, 4), what="four runs")
    assert order == ["urgent", "old-low", "high", "low"]


async def _length(items: list[str], n: int) -> bool:
    return len(items) >= n


@workflow(id="rated", queue="rated")
async def rated(ctx: RunContext, payload: dict[str, int]) -> None:
    order.append(str(payload["n"]))


async def test_rate_limit_caps_starts_per_window(make_engine: Callable[..., Engine]) -> None:
    order.clear()
    clock = FakeClock()
    queue = Queue("rated", rate_limit=RateLimit(limit=3, period=60))
    engine = make_engine([rated], queues=[queue], clock=clock)
    handles = [await engine.trigger(rated, {"n": n}) for n in range(7)]

    async def statuses() -> Counter[RunStatus]:
        return Counter([(await h.get()).status for h in handles])

    async def first_window_done() -> bool:
        return (await statuses())[RunStatus.COMPLETED] == 3

    async with running_worker(engine, lease=3600):
        await eventually(first_window_done, what="the first window")
        assert await statuses() == {RunStatus.COMPLETED: 3, RunStatus.QUEUED: 4}
        clock.offset += 61
        engine._notify_work()
        await eventually(lambda: _length(order, 6), what="the second window")
        assert len(order) == 6
        clock.offset += 61
        engine._notify_work()
        await eventually(lambda: _length(order, 7), what="the last run")


@workflow(id="short_lived", ttl=30)
async def short_lived(ctx: RunContext) -> str:
    return "ran"


async def test_a_run_still_queued_after_its_ttl_expires(
    make_engine: Callable[..., Engine],
) -> None:
    clock = FakeClock()
    engine = make_engine([short_lived], clock=clock)
    stale = await engine.trigger(short_lived)
    fresh = await engine.trigger(short_lived, ttl=3600)
    clock.offset += 31
    async with running_worker(engine, lease=3600):
        run = await stale.wait(timeout=10)
        assert await fresh.result(timeout=10) == "ran"
    assert run.status is RunStatus.EXPIRED
    assert run.error is not None
    assert run.error["type"] == "RunExpired"
    assert run.started_at is None
