"""The worker: claims runs under a lease, executes them, parks them on waits, finishes them.

One worker is a set of tasks in one event loop: a claim loop (woken at once by triggers in the
same process, polling otherwise), a heartbeat that extends leases and picks up cancellations,
and a sweeper that fires due timers and reclaims runs whose worker died.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from ._notify import Notifier
from ._serde import dumps, error_info
from ._signals import Abandon, CancelRun, Suspend
from .context import RunContext
from .errors import PayloadValidationError, StepFailedError
from .status import RunStatus
from .storage import LeaseLost
from .storage.records import FORKED_FROM, Journal

if TYPE_CHECKING:
    from .engine import Engine
    from .workflows import Workflow

__all__ = ["Worker"]

log = logging.getLogger("agentflow.worker")
_EMPTY = Journal(steps={}, waitpoints={})


@dataclass(slots=True)
class _Active:
    scope: anyio.CancelScope
    # The lease holder written to the run row: the worker id plus a claim number, so that two
    # executions of one run by the same worker (after a lapsed lease) are told apart.
    owner: str
    queue: str = "default"
    ctx: RunContext | None = None
    stop: str | None = None  # why the scope was cancelled: "cancel", "shutdown" or "lost"


class Worker:
    """Executes runs of the engine's workflows. Start with ``await worker.run()``."""

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 50,
        lease: float = 30.0,
        poll_interval: float = 0.25,
        sweep_interval: float = 1.0,
        shutdown_grace: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("worker concurrency must be at least 1")
        if lease <= 0:
            raise ValueError("worker lease must be positive")
        self.engine = engine
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.shutdown_grace = shutdown_grace
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._active: dict[str, _Active] = {}
        self._work = Notifier()
        self._slots = Notifier()
        self._timers = Notifier()
        self._next_timer = math.inf
        self._stopping = False
        self._started = False
        self._claims = 0

    @property
    def active_runs(self) -> list[str]:
        return list(self._active)

    def stop(self) -> None:
        """Stop claiming; let running runs finish (up to ``shutdown_grace``), hand back the rest."""
        self._stopping = True
        self._work.notify()
        self._slots.notify()

    async def run(self, *, task_status: TaskStatus[Worker] = anyio.TASK_STATUS_IGNORED) -> None:
        if self._started:
            raise RuntimeError("a Worker can only run once; create a new one")
        self._started = True
        await self.engine.start()
        self.engine._attach(self)
        loop_token = anyio.lowlevel.current_token()

        def on_work() -> None:  # called from the listener thread
            with contextlib.suppress(anyio.RunFinishedError):  # our event loop already ended
                anyio.from_thread.run_sync(self._work.notify, token=loop_token)

        listener = self.engine.db.dialect.listen(on_work)
        try:
            async with anyio.create_task_group() as housekeeping:
                housekeeping.start_soon(self._heartbeat_loop)
                housekeeping.start_soon(self._sweep_loop)
                async with anyio.create_task_group() as runs:
                    task_status.started(self)
                    await self._claim_loop(runs)
                    with anyio.move_on_after(self.shutdown_grace):
                        while self._active:
                            await self._slots.wait(1.0)
                    for active in self._active.values():
                        active.stop = "shutdown"
                        active.scope.cancel()
                housekeeping.cancel_scope.cancel()
        finally:
            self.engine._detach(self)
            if listener is not None:
                with anyio.CancelScope(shield=True):  # also when the worker was cancelled
                    await anyio.to_thread.run_sync(listener.close)

    # -- loops --------------------------------------------------------------------------

    async def _claim_loop(self, runs: TaskGroup) -> None:
        store = self.engine._store
        workflow_ids = list(self.engine._workflows)
        while not self._stopping:
            free = self.concurrency - len(self._active)
            if free <= 0:
                await self._slots.wait(self.poll_interval)
                continue
            if free < min(8, self.concurrency) and self._active:
                # Busy: let a few more runs finish so one claim fills several slots.
                await anyio.sleep(0.002)
                free = self.concurrency - len(self._active)
            self._claims += 1
            owner = f"{self.id}#{self._claims}"
            try:
                rows = await store.claim(
                    owner,
                    min(free, 64),
                    self.lease,
                    workflow_ids,
                    queues=self.engine.queues,
                    worker_free=self._queue_room(),
                )
            except Exception:  # e.g. the database restarting: keep the worker alive, retry
                log.exception("claiming runs failed; retrying")
                await self._work.wait(max(self.poll_interval, 1.0))
                continue
            for row in rows:
                stale = self._active.get(row["id"])
                if stale is not None:  # our own earlier execution, whose lease lapsed
                    stale.stop = "lost"
                    stale.scope.cancel()
                active = self._active[row["id"]] = _Active(
                    scope=anyio.CancelScope(), owner=owner, queue=row["queue"]
                )
                runs.start_soon(self._execute, row, active, name=f"agentflow-run-{row['id']}")
            if len(rows) < free:
                await self._work.wait(self.poll_interval)

    def _queue_room(self) -> dict[str, int]:
        """Free places of this worker in queues with a per-worker limit."""
        busy: dict[str, int] = {}
        for active in self._active.values():
            busy[active.queue] = busy.get(active.queue, 0) + 1
        return {
            name: max(0, q.worker_concurrency - busy.get(name, 0))
            for name, q in self.engine.queues.items()
            if q.worker_concurrency is not None
        }

    async def _heartbeat_loop(self) -> None:
        store = self.engine._store
        while True:
            await anyio.sleep(self.lease / 3)
            owners = {run_id: active.owner for run_id, active in self._active.items()}
            if not owners:
                continue
            try:
                cancel, lost = await store.heartbeat(owners, self.lease)
            except Exception:  # a failed heartbeat is retried at the next beat
                log.exception("heartbeat failed")
                continue
            for run_id, reason in [(r, "cancel") for r in cancel] + [(r, "lost") for r in lost]:
                active = self._active.get(run_id)
                if active is not None and active.stop is None:
                    active.stop = reason
                    active.scope.cancel()
            await self._flush_logs()

    async def _flush_logs(self) -> None:
        """Save logs of runs inside a long step, so they show before the step ends."""
        for run_id, active in list(self._active.items()):
            ctx = active.ctx
            if ctx is None or active.stop is not None:
                continue
            if not ctx._has_pending or ctx._side_lock.locked():
                continue  # nothing to show, or a write of the run is saving it right now
            try:
                async with ctx._pending_rows() as (logs, errors, metadata):
                    await self.engine._store.save_pending(
                        run_id, active.owner, errors, logs=logs, metadata=metadata
                    )
            except LeaseLost:
                continue
            except Exception:  # kept for the run's next write; the worker carries on
                log.exception("saving logs of run %s failed; will retry", run_id)
                ctx._logs[:0], ctx._errors[:0] = logs, errors
                ctx.metadata._dirty = ctx.metadata._dirty or metadata is not None

    async def _sweep_loop(self) -> None:
        store = self.engine._store
        while True:
            try:
                fired, reclaimed = await store.sweep()
            except Exception:  # retried at the next sweep
                log.exception("sweep failed")
                fired = reclaimed = 0
            if fired or reclaimed:
                self.engine._notify_work()
            delay = self.sweep_interval
            try:
                next_tick = await self.engine.schedules.tick()
            except Exception:  # retried at the next sweep
                log.exception("starting scheduled runs failed")
                next_tick = None
            if next_tick is not None:
                delay = min(delay, max(0.0, next_tick - self.engine.clock()))
            if self._next_timer < math.inf:
                delay = min(delay, max(0.0, self._next_timer - self.engine.clock()) + 0.005)
                self._next_timer = math.inf
            await self._timers.wait(delay)

    def cancel_local(self, run_id: str) -> bool:
        active = self._active.get(run_id)
        if active is None:
            return False
        if active.stop is None:
            active.stop = "cancel"
            active.scope.cancel()
        return True

    def timer_at(self, when: float) -> None:
        if when < self._next_timer:
            self._next_timer = when
            self._timers.notify()

    # -- executing one run --------------------------------------------------------------

    async def _execute(self, row: Mapping[str, Any], active: _Active) -> None:
        run_id = row["id"]
        try:
            await self._execute_run(row, active)
        except (LeaseLost, Abandon):
            log.info("run %s: lease lost; another worker owns it now", run_id)
        except Exception:  # the worker must survive anything one run does
            log.exception("run %s: unexpected error while finishing", run_id)
        finally:
            if self._active.get(run_id) is active:
                del self._active[run_id]
            self._slots.notify()

    async def _execute_run(self, row: Mapping[str, Any], active: _Active) -> None:
        engine = self.engine
        store = engine._store
        run_id = row["id"]
        wf = engine._workflows[row["workflow_id"]]
        fresh = row["started_at"] is None and f'"{FORKED_FROM}"' not in row["run_metadata"]
        journal = _EMPTY if fresh else await store.load_journal(run_id)
        ctx = RunContext(
            engine=engine,
            run=row,
            worker_id=active.owner,
            journal=journal,
            step_retry=engine.step_retry,
        )
        active.ctx = ctx
        try:
            payload = wf.load_payload(row["payload"])
        except PayloadValidationError as exc:
            await self._fail(ctx, wf, exc, row, row["executed_seconds"])
            return

        prior = row["executed_seconds"]
        remaining = math.inf if wf.timeout is None else max(0.0, wf.timeout - prior)
        started = time.monotonic()
        failure: BaseException | None = None
        output: Any = None
        completed = False
        with active.scope:
            with anyio.move_on_after(remaining) as deadline:
                try:
                    output = await wf(ctx, payload)
                    completed = True
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    failure = exc
        executed = prior + (time.monotonic() - started)

        if active.stop is not None and not completed:
            await self._stopped(ctx, active.stop, executed)
        elif deadline.cancelled_caught:
            await self._finish(
                ctx,
                RunStatus.TIMED_OUT,
                error={
                    "type": "WorkflowTimeout",
                    "message": f"run exceeded the workflow timeout of {wf.timeout}s",
                    "traceback": "",
                },
                executed=executed,
            )
        elif completed:
            try:
                encoded = dumps(output)
            except TypeError as exc:
                await self._fail(ctx, wf, exc, row, executed, retry=False)
                return
            await self._finish(ctx, RunStatus.COMPLETED, output=encoded, executed=executed)
        else:
            assert failure is not None
            signal = _signal_in(failure)
            if signal is Abandon:
                return
            if signal is CancelRun:
                await self._finish(ctx, RunStatus.CANCELLED, executed=executed)
            elif signal is Suspend:
                await self._suspend(ctx, executed)
            else:
                await self._fail(ctx, wf, _first_error(failure), row, executed)

    async def _suspend(self, ctx: RunContext, executed: float) -> None:
        new, awaited = ctx._suspension()
        async with ctx._pending_rows() as (logs, errors, metadata):
            status = await self.engine._store.suspend(
                ctx.run_id,
                ctx._worker_id,
                new_waitpoints=new,
                awaited=awaited,
                executed_seconds=executed,
                logs=logs,
                errors=errors,
                metadata=metadata,
            )
        if status == "cancel":
            await self._finish(ctx, RunStatus.CANCELLED, executed=executed)
            return
        for wp in new:
            if wp.timeout_at is not None:
                self.timer_at(wp.timeout_at)
        if status == RunStatus.QUEUED.value:
            self.engine._notify_work()

    async def _stopped(self, ctx: RunContext, reason: str, executed: float) -> None:
        if reason == "cancel":
            await self._finish(ctx, RunStatus.CANCELLED, executed=executed)
        elif reason == "shutdown":
            await self.engine._store.release([ctx.run_id], ctx._worker_id)
        # "lost": another worker holds the run now; write nothing.

    async def _fail(
        self,
        ctx: RunContext,
        wf: Workflow[Any, Any],
        exc: BaseException,
        row: Mapping[str, Any],
        executed: float,
        *,
        retry: bool = True,
    ) -> None:
        ctx._errors.append(ctx._error_row(exc, None, None, None))
        retryable = retry and wf.retry.is_retryable(exc)
        if isinstance(exc, StepFailedError) and not exc.retryable:
            retryable = False
        if retryable and row["attempt"] < wf.retry.max_attempts:
            async with ctx._pending_rows() as (logs, errors, metadata):
                await self.engine._store.retry(
                    ctx.run_id,
                    ctx._worker_id,
                    delay=wf.retry.delay_for(exc, row["attempt"]),
                    executed_seconds=executed,
                    logs=logs,
                    errors=errors,
                    metadata=metadata,
                )
            self.engine._notify_work()
            return
        await self._finish(ctx, RunStatus.FAILED, error=error_info(exc), executed=executed)

    async def _finish(
        self,
        ctx: RunContext,
        status: RunStatus,
        *,
        output: str | None = None,
        error: dict[str, Any] | None = None,
        executed: float,
    ) -> None:
        with anyio.CancelScope(shield=True):
            async with ctx._pending_rows() as (logs, errors, metadata):
                woken, finished = await self.engine._store.finish(
                    ctx.run_id,
                    ctx._worker_id,
                    status=status.value,
                    output=output,
                    error=error,
                    executed_seconds=executed,
                    logs=logs,
                    errors=errors,
                    metadata=metadata,
                    has_waits=ctx._has_waits,
                )
        self.engine._notify_done(ctx.run_id, finished)
        if woken:
            self.engine._notify_work()


def _signal_in(exc: BaseException) -> type[BaseException] | None:
    """The control-flow signal an exception (or exception group) carries, if any."""
    if isinstance(exc, Abandon):
        return Abandon
    if isinstance(exc, CancelRun):
        return CancelRun
    if isinstance(exc, Suspend):
        return Suspend
    if isinstance(exc, BaseExceptionGroup):
        if exc.subgroup(Abandon) is not None:
            return Abandon
        if exc.subgroup(CancelRun) is not None:
            return CancelRun
        rest = exc.split(Suspend)[1]
        if rest is None or all(
            isinstance(e, anyio.get_cancelled_exc_class()) for e in _leaves(rest)
        ):
            return Suspend if exc.subgroup(Suspend) is not None else None
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _first_error(exc: BaseException) -> BaseException:
    """The real error inside a group (a task group in the workflow wraps what it raises)."""
    if isinstance(exc, BaseExceptionGroup):
        for leaf in _leaves(exc):
            if not isinstance(leaf, Suspend | anyio.get_cancelled_exc_class()):
                return leaf
    return exc
