"""Cron schedules: runtime management, declared schedules, exactly-once ticks with several
schedulers, missed-tick policies after downtime, timezones and DST, and a worker running a
scheduled run.

Every test injects a fake clock into its engines and moves it by hand: no test waits for a
tick in real time.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from typer.testing import CliRunner

from agentflow import (
    ConflictError,
    Engine,
    NotFoundError,
    PayloadValidationError,
    RunContext,
    RunStatus,
    WorkflowNotFoundError,
    workflow,
)
from agentflow.cli.app import app as cli
from agentflow.schedules import Schedule, ScheduleError, next_tick, plan_ticks
from agentflow.storage.tables import schedules as schedules_table

from ._support import eventually, running_worker

pytestmark = pytest.mark.anyio

PARIS = ZoneInfo("Europe/Paris")
MakeEngine = Callable[..., Engine]


class FakeClock:
    """The engines' clock: Unix seconds that move only when the test moves them."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Digest(BaseModel):
    channel: str
    size: int = 10


@workflow(id="report")
async def report(ctx: RunContext) -> str:
    return "reported"


@workflow(id="digest")
async def digest(ctx: RunContext, payload: Digest) -> int:
    return payload.size


@workflow(id="daily", schedule="0 9 * * 1-5", timezone="Europe/Paris")
async def daily(ctx: RunContext) -> str:
    return "daily"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


async def scheduled_times(engine: Engine, schedule_id: str) -> list[datetime]:
    """The scheduled times of the runs a schedule started, in order (duplicates kept)."""
    runs = await engine.list_runs(limit=100_000)
    return sorted(r.scheduled_at for r in runs if r.schedule_id == schedule_id and r.scheduled_at)


# -- runtime management ---------------------------------------------------------------------


async def test_create_get_list_pause_resume_delete(make_engine: MakeEngine) -> None:
    clock = FakeClock(utc(2025, 1, 6, 8, 30))  # a Monday
    engine = make_engine([report, digest], clock=clock)
    created = await engine.schedules.create(
        digest, "0 9 * * 1-5", timezone="Europe/Paris", payload={"channel": "ops"}, id="ops"
    )
    assert isinstance(created, Schedule)
    assert (created.id, created.workflow_id, created.cron) == ("ops", "digest", "0 9 * * 1-5")
    assert created.payload == {"channel": "ops", "size": 10}
    assert created.missed == "latest"
    assert not created.paused
    assert not created.declared
    assert created.next_tick_at == utc(2025, 1, 7, 8)  # 09:00 in Paris is 08:00 UTC in winter
    assert created.last_tick_at is None

    other = await engine.schedules.create("report", "@hourly")
    assert other.id.startswith("sch_")
    assert other.cron == "@hourly"
    assert other.next_tick_at == utc(2025, 1, 6, 9)

    assert await engine.schedules.get("ops") == created
    assert [s.id for s in await engine.schedules.list()] == ["ops", other.id]
    assert [s.id for s in await engine.schedules.list(report)] == [other.id]
    assert [s.id for s in await engine.schedules.list("digest")] == ["ops"]

    paused = await engine.schedules.pause("ops")
    assert paused.paused
    assert (await engine.schedules.pause("ops")).paused  # pausing twice changes nothing
    assert (await engine.schedules.get("ops")).paused
    resumed = await engine.schedules.resume("ops")
    assert not resumed.paused
    assert resumed.next_tick_at == created.next_tick_at

    with pytest.raises(ConflictError, match="already exists"):
        await engine.schedules.create(digest, "@daily", payload={"channel": "x"}, id="ops")

    await engine.schedules.delete("ops")
    with pytest.raises(NotFoundError, match="no schedule with id 'ops'"):
        await engine.schedules.get("ops")
    for action in (engine.schedules.delete, engine.schedules.pause, engine.schedules.resume):
        with pytest.raises(NotFoundError):
            await action("ops")
    assert [s.id for s in await engine.schedules.list()] == [other.id]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cron": "61 * * * *"}, ScheduleError, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "* * *"}, ScheduleError, "expected 5 fields"),
        ({"cron": "0 9 * * * 30"}, ScheduleError, "expected 5 fields"),
        ({"cron": "0 0 30 2 *"}, ScheduleError, "invalid cron expression"),
        ({"cron": "@sometimes"}, ScheduleError, "expected 5 fields"),
        ({"timezone": "Mars/Olympus"}, ScheduleError, "unknown timezone 'Mars/Olympus'"),
        ({"missed": "never"}, ScheduleError, "missed must be"),
        ({"id": "has space"}, ScheduleError, "invalid schedule id"),
        ({"id": "x" * 151}, ScheduleError, "invalid schedule id"),
        ({"id": "digest:declared"}, ScheduleError, "reserved"),
        ({"payload": {"size": 3}}, PayloadValidationError, "channel"),
        ({"payload": {"channel": "ops", "size": "big"}}, PayloadValidationError, "size"),
        ({"workflow": "nope"}, WorkflowNotFoundError, "unknown workflow 'nope'"),
    ],
)
async def test_create_rejects_invalid_input(
    make_engine: MakeEngine, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    engine = make_engine([digest], clock=FakeClock(utc(2025, 1, 6)))
    args: dict[str, Any] = {
        "workflow": digest,
        "cron": "@daily",
        "payload": {"channel": "ops"},
        **kwargs,
    }
    with pytest.raises(error, match=match):
        await engine.schedules.create(args.pop("workflow"), args.pop("cron"), **args)
    assert await engine.schedules.list() == []


# -- declared schedules ---------------------------------------------------------------------


async def test_declared_schedules_are_stored_updated_and_removed(make_engine: MakeEngine) -> None:
    clock = FakeClock(utc(2025, 1, 6, 12))  # Monday noon
    first = make_engine([daily, report], clock=clock)
    runtime = await first.schedules.create(report, "@daily", id="nightly")
    assert await first.schedules.tick() == utc(2025, 1, 7).timestamp()  # the earliest tick
    declared = await first.schedules.get("daily:declared")
    assert declared.declared
    assert declared.workflow_id == "daily"
    assert (declared.cron, declared.timezone, declared.missed) == (
        "0 9 * * 1-5",
        "Europe/Paris",
        "latest",
    )
    assert declared.next_tick_at == utc(2025, 1, 7, 8)
    with pytest.raises(ConflictError, match="declared by workflow 'daily'"):
        await first.schedules.delete("daily:declared")

    # An operator pauses it; a deploy moves it to 07:30 in New York and to missed="all".
    await first.schedules.pause("daily:declared")

    @workflow(id="daily", schedule="30 7 * * *", timezone="America/New_York", missed="all")
    async def daily_v2(ctx: RunContext) -> str:
        return "v2"

    clock.advance(60)
    second = make_engine([daily_v2, report], clock=clock)
    changed = await second.schedules.get("daily:declared")
    assert (changed.cron, changed.timezone, changed.missed) == (
        "30 7 * * *",
        "America/New_York",
        "all",
    )
    assert changed.next_tick_at == utc(2025, 1, 6, 12, 30)  # 07:30 in New York, today
    assert changed.paused  # still paused: that was the operator's call

    # The schedule is removed from the code: the declared row goes, the runtime one stays.
    @workflow(id="daily")
    async def daily_v3(ctx: RunContext) -> str:
        return "v3"

    third = make_engine([daily_v3, report], clock=clock)
    assert [s.id for s in await third.schedules.list()] == [runtime.id]

    # An engine that does not register the workflow leaves its declared schedule alone.
    await second.schedules.sync_declared()
    assert (await make_engine([report], clock=clock).schedules.get("daily:declared")).declared


async def test_invalid_declared_schedule_is_reported_and_skipped(
    make_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(id="broken", schedule="0 25 * * *")
    async def broken(ctx: RunContext) -> None:
        return None

    @workflow(id="needs_payload", schedule="@daily")
    async def needs_payload(ctx: RunContext, payload: Digest) -> None:
        return None

    engine = make_engine([broken, needs_payload, daily], clock=FakeClock(utc(2025, 1, 6)))
    with caplog.at_level(logging.ERROR, logger="agentflow.schedules"):
        assert await engine.schedules.tick() is not None
    assert "workflow 'broken': invalid cron expression '0 25 * * *'" in caplog.text
    assert "workflow 'needs_payload': its payload model has required fields" in caplog.text
    assert [s.id for s in await engine.schedules.list()] == ["daily:declared"]
    with pytest.raises(ScheduleError, match="invalid declared schedules"):
        await engine.schedules.sync_declared()


# -- exactly once -----------------------------------------------------------------------------


async def test_two_schedulers_start_every_tick_exactly_once(make_engine: MakeEngine) -> None:
    start = utc(2025, 3, 3, 10, 0, 30)
    clock = FakeClock(start)
    engines = [make_engine([report, daily], clock=clock) for _ in range(2)]
    every_minute = await engines[0].schedules.create(report, "* * * * *", missed="all", id="m")
    every_5 = await engines[0].schedules.create(report, "*/5 * * * *", missed="latest", id="m5")
    rng = random.Random(7)

    async def ticks(engine: Engine) -> None:
        for _ in range(3):
            await engine.schedules.tick()

    # Both schedulers also store the declared schedule at the same moment on their first tick.
    last = clock.now
    for _ in range(60):
        async with anyio.create_task_group() as tg:
            for engine in engines:
                tg.start_soon(ticks, engine)
        last = clock.now
        clock.advance(rng.choice([20, 45, 60, 61, 150]))

    minutes = await scheduled_times(engines[0], every_minute.id)
    assert len(minutes) == len(set(minutes)), "a tick started more than once"
    expected = [start.replace(second=0) + timedelta(minutes=i) for i in range(1, 1000)]
    assert minutes == [t for t in expected if t.timestamp() <= last]
    fives = await scheduled_times(engines[0], every_5.id)
    assert len(fives) == len(set(fives)) > 5
    assert all(t.minute % 5 == 0 and t.second == 0 for t in fives)
    runs = await engines[1].list_runs(limit=100_000)
    keys = [r.idempotency_key for r in runs]
    assert len(keys) == len(set(keys))
    assert len([s for s in await engines[1].schedules.list() if s.declared]) == 1


async def test_a_stale_scheduler_cannot_start_a_tick_again(make_engine: MakeEngine) -> None:
    clock = FakeClock(utc(2025, 3, 3, 10, 0, 30))
    engine = make_engine([report], clock=clock)
    schedule = await engine.schedules.create(report, "*/10 * * * *", missed="all", id="s")
    clock.advance(30 * 60)  # 10:30:30: ticks 10:10, 10:20, 10:30
    await engine.schedules.tick()
    assert len(await scheduled_times(engine, "s")) == 3

    # A scheduler working from the row as it was before (or a replayed transaction) tries to
    # start the same ticks again: the runs' idempotency keys stop it.
    def rewind(conn: sa.Connection) -> None:
        conn.execute(
            sa.update(schedules_table)
            .where(schedules_table.c.id == "s")
            .values(next_tick_at=schedule.next_tick_at.timestamp(), last_tick_at=None)
        )

    await engine.db.write(rewind)
    await engine.schedules.tick()
    assert len(await scheduled_times(engine, "s")) == 3
    assert (await engine.schedules.get("s")).next_tick_at == utc(2025, 3, 3, 10, 40)


# -- missed ticks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed", "expected_hours"),
    [("all", [9, 10, 11, 12]), ("latest", [12]), ("skip", [])],
)
async def test_missed_ticks_after_downtime(
    make_engine: MakeEngine, missed: str, expected_hours: list[int]
) -> None:
    clock = FakeClock(utc(2025, 1, 6, 8, 30))
    engine = make_engine([report], clock=clock)
    await engine.schedules.create(report, "0 * * * *", missed=missed, id="hourly")  # type: ignore[arg-type]
    assert await engine.schedules.tick() == utc(2025, 1, 6, 9).timestamp()

    clock.set(utc(2025, 1, 6, 12, 30))  # the scheduler was down from 08:30 to 12:30
    assert await engine.schedules.tick() == utc(2025, 1, 6, 13).timestamp()
    times = await scheduled_times(engine, "hourly")
    assert times == [utc(2025, 1, 6, h) for h in expected_hours]
    after = await engine.schedules.get("hourly")
    assert after.last_tick_at == utc(2025, 1, 6, 12)  # handled, whether run or skipped
    assert after.next_tick_at == utc(2025, 1, 6, 13)

    # Back to normal: a tick picked up on time runs under every policy, skip included.
    clock.set(utc(2025, 1, 6, 13, 0, 2))
    await engine.schedules.tick()
    assert (await scheduled_times(engine, "hourly"))[-1] == utc(2025, 1, 6, 13)
    runs = await engine.list_runs(limit=100)
    assert all(r.status is RunStatus.QUEUED and r.workflow_id == "report" for r in runs)
    assert {r.idempotency_key for r in runs} == {
        f"schedule:hourly:{int(t.timestamp())}" for t in await scheduled_times(engine, "hourly")
    }


async def test_missed_all_is_capped(
    make_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(utc(2025, 1, 6, 8, 0, 30))
    engine = make_engine([report], clock=clock)
    engine.schedules.max_catchup = 5
    await engine.schedules.create(report, "* * * * *", missed="all", id="minutely")
    clock.set(utc(2025, 1, 9, 8, 0, 30))  # three days down: 4,320 missed ticks
    with caplog.at_level(logging.WARNING, logger="agentflow.schedules"):
        await engine.schedules.tick()
    assert "missed more than 5 ticks" in caplog.text
    assert await scheduled_times(engine, "minutely") == [
        utc(2025, 1, 9, 7, 56) + timedelta(minutes=i) for i in range(5)
    ]


def test_plan_ticks_for_each_policy() -> None:
    row = {
        "id": "s",
        "cron": "0 * * * *",
        "timezone": "UTC",
        "next_tick_at": utc(2025, 1, 6, 9).timestamp(),
        "last_tick_at": None,
    }
    now = utc(2025, 1, 6, 11, 0, 20).timestamp()
    plans = {
        m: plan_ticks({**row, "missed": m}, now, grace=60, max_catchup=100)
        for m in ("all", "latest", "skip")
    }
    hours = [utc(2025, 1, 6, h).timestamp() for h in (9, 10, 11)]
    assert list(plans["all"].ticks) == hours
    assert list(plans["latest"].ticks) == hours[-1:]
    assert list(plans["skip"].ticks) == hours[-1:]  # 11:00 is 20 s late: still on time
    assert {p.next_tick_at for p in plans.values()} == {utc(2025, 1, 6, 12).timestamp()}
    late = plan_ticks({**row, "missed": "skip"}, now + 120, grace=60, max_catchup=100)
    assert list(late.ticks) == []
    assert late.last_tick_at == hours[-1]


# -- timezones ----------------------------------------------------------------------------


async def test_ticks_follow_local_time_across_dst(make_engine: MakeEngine) -> None:
    clock = FakeClock(datetime(2024, 3, 29, 12, tzinfo=PARIS))
    engine = make_engine([report], clock=clock)
    await engine.schedules.create(report, "0 9 * * *", timezone="Europe/Paris", id="paris")
    for day in range(30, 32 + 1):  # 30 and 31 March (clocks go forward on the 31st), 1 April
        when = datetime(2024, 3, 1, 9, 0, 1, tzinfo=PARIS) + timedelta(days=day - 1)
        clock.set(when)
        await engine.schedules.tick()
    times = await scheduled_times(engine, "paris")
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for t in times] == [
        "30 09:00",
        "31 09:00",
        "01 09:00",
    ]
    assert [t.hour for t in times] == [8, 7, 7]  # in UTC: winter, then summer time


def test_next_tick_in_the_hours_dst_skips_and_repeats() -> None:
    def after(local: datetime, cron: str) -> str:
        tick = next_tick(cron, PARIS, local.timestamp())
        return datetime.fromtimestamp(tick, PARIS).isoformat()

    # 02:30 does not exist on 31 March 2024: the job runs when the clocks reach 03:00.
    assert after(datetime(2024, 3, 31, 1, tzinfo=PARIS), "30 2 * * *") == (
        "2024-03-31T03:00:00+02:00"
    )
    # 02:30 happens twice on 27 October 2024: the job runs once.
    first = after(datetime(2024, 10, 27, 1, tzinfo=PARIS), "30 2 * * *")
    assert first == "2024-10-27T02:30:00+02:00"
    repeat = datetime.fromisoformat(first) + timedelta(minutes=1)
    assert after(repeat, "30 2 * * *") == "2024-10-28T02:30:00+01:00"
    # An hourly job keeps its real-time rhythm through the repeated hour.
    start = datetime(2024, 10, 27, 1, 30, tzinfo=PARIS)
    got = [start.timestamp()]
    for _ in range(3):
        got.append(next_tick("0 * * * *", PARIS, got[-1]))
    assert [b - a for a, b in itertools.pairwise(got[1:])] == [3600, 3600]


# -- pause and resume --------------------------------------------------------------------------


async def test_paused_schedule_starts_nothing_and_resumes_from_now(
    make_engine: MakeEngine,
) -> None:
    clock = FakeClock(utc(2025, 1, 6, 8, 30))
    engine = make_engine([report], clock=clock)
    await engine.schedules.create(report, "0 * * * *", missed="all", id="hourly")
    await engine.schedules.pause("hourly")
    assert await engine.schedules.tick() is None  # no active schedule
    clock.set(utc(2025, 1, 6, 11, 30))
    await engine.schedules.tick()
    assert await scheduled_times(engine, "hourly") == []

    resumed = await engine.schedules.resume("hourly")
    assert resumed.next_tick_at == utc(2025, 1, 6, 12)  # 09:00-11:00 fell while paused
    clock.set(utc(2025, 1, 6, 12, 0, 1))
    await engine.schedules.tick()
    assert await scheduled_times(engine, "hourly") == [utc(2025, 1, 6, 12)]


# -- a worker runs it ---------------------------------------------------------------------------


async def test_worker_runs_scheduled_runs(make_engine: MakeEngine) -> None:
    clock = FakeClock(utc(2025, 1, 6, 10, 0, 30))
    engine = make_engine([digest, daily], clock=clock)
    await engine.schedules.create(
        digest, "*/5 * * * *", payload={"channel": "ops", "size": 3}, id="five"
    )
    async with running_worker(engine):
        assert (await engine.schedules.get("daily:declared")).declared
        clock.set(utc(2025, 1, 6, 10, 5, 1))  # the next sweep (0.1 s) finds the tick due

        async def finished() -> Any:
            runs = await engine.list_runs(workflow="digest", status="completed")
            return runs[0] if runs else None

        run = await eventually(finished, what="the scheduled run to complete")
    assert run.schedule_id == "five"
    assert run.scheduled_at == utc(2025, 1, 6, 10, 5)
    assert run.output == 3
    assert run.idempotency_key == f"schedule:five:{int(utc(2025, 1, 6, 10, 5).timestamp())}"


# -- command line ---------------------------------------------------------------------------

_cli_url: str | None = None
APP = f"{__name__}:cli_engine"


def __getattr__(name: str) -> Any:
    """``cli_engine``: a fresh engine on the test's database for each CLI command."""
    if name == "cli_engine" and _cli_url is not None:
        return Engine(_cli_url, [digest, daily])
    raise AttributeError(name)


def test_cli_schedules(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_cli_url", database_url)
    runner = CliRunner()

    def call(*args: str) -> Any:
        result = runner.invoke(cli, ["schedules", *args])
        assert result.exit_code == 0, result.output
        return result

    created = call(
        "create", APP, "digest", "0 9 * * 1-5", "-z", "Europe/Paris", "--id", "ops",
        "--payload", '{"channel": "ops"}', "--missed", "all", "--json",
    )  # fmt: skip
    body = json.loads(created.stdout)
    assert (body["id"], body["missed"], body["payload"]) == (
        "ops",
        "all",
        {"channel": "ops", "size": 10},
    )
    listed = json.loads(call("list", APP, "--json").stdout)
    assert sorted(s["id"] for s in listed) == ["daily:declared", "ops"]
    table = call("list", APP).stdout
    for text in ("ops", "0 9 * * 1-5", "Europe/Paris", "(declared)"):
        assert text in table
    assert json.loads(call("pause", APP, "ops", "--json").stdout)["paused"] is True
    assert "paused schedule ops" in call("pause", APP, "ops").stdout
    assert "resumed schedule ops (next tick" in call("resume", APP, "ops").stdout
    assert json.loads(call("delete", APP, "ops", "--json").stdout) == {"deleted": "ops"}

    missing = runner.invoke(cli, ["schedules", "delete", APP, "ops"])
    assert missing.exit_code == 1
    assert "no schedule with id 'ops'" in missing.output
    bad = runner.invoke(cli, ["schedules", "create", APP, "digest", "bad cron", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stderr)["error"]["code"] == "invalid_schedule"
