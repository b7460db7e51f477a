"""RunContext: what a workflow uses to take checkpointed steps and to wait.

Every call that touches the outside world takes a position (``seq``) in call order. On
replay, a position already in the journal returns its recorded outcome instead of running
again. Positions are taken synchronously when a call starts, before its first ``await``, so
steps started together (``asyncio.gather``, a task group) get the same positions every time.
"""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import anyio
from sqlalchemy.engine import RowMapping

from ._serde import digest as data_digest
from ._serde import dumps, error_info, loads, restore
from ._signals import Abandon, CancelRun, Suspend
from .errors import ChildRunError, NonDeterminismError, StepFailedError
from .models import ApprovalDecision, ChildResult, ReceivedEvent
from .retry import RetryPolicy
from .status import RunStatus
from .storage import LeaseLost, NewRun, NewWaitpoint
from .storage.records import CancelRequested, Journal

if TYPE_CHECKING:
    from .engine import Engine
    from .workflows import Workflow

__all__ = ["RunContext", "RunLogger", "RunMetadata", "step_idempotency_key"]

T = TypeVar("T")
P = ParamSpec("P")
# Logs, attempt errors and a metadata update waiting to be saved with a run's next write.
PendingRows = tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class _StepScope:
    seq: int
    name: str
    idempotency_key: str


_current_step: ContextVar[_StepScope | None] = ContextVar("agentflow_step", default=None)


def step_idempotency_key() -> str | None:
    """The idempotency key of the step whose function is running in this task (see
    ``RunContext.idempotency_key``), or None outside a step: for code that runs inside a
    step without holding the ``RunContext``, such as an agent's tools."""
    scope = _current_step.get()
    return None if scope is None else scope.idempotency_key


@lru_cache(maxsize=4096)
def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except (NameError, TypeError):
        return Any


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class RunLogger:
    """Structured logs tied to the run (and the step they were written in).

    Entries are buffered and saved with the run's next journal write, so logging does not add
    a database round trip per line.
    """

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    def debug(self, message: str, **fields: Any) -> None:
        self._ctx._add_log("debug", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._ctx._add_log("info", message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        self._ctx._add_log("warn", message, fields)

    warning = warn

    def error(self, message: str, **fields: Any) -> None:
        self._ctx._add_log("error", message, fields)


class RunMetadata:
    """Progress and facts about a run that callers can read while it goes (``run.metadata``).

    Changes are saved with the run's next journal write, or at once with :meth:`flush`.
    A replay does not apply a change twice: changes made before the journal's last position
    were saved by the execution that made them.
    """

    def __init__(self, ctx: RunContext, initial: dict[str, Any]) -> None:
        self._ctx = ctx
        self._data = dict(initial)
        self._dirty = False

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def set(self, key: str, value: Any) -> None:
        if self._ctx._replaying:
            return
        dumps(value)  # fail here, not at the next write, if it cannot be stored
        self._data[key] = value
        self._dirty = True

    def increment(self, key: str, by: float = 1) -> None:
        if self._ctx._replaying:
            return
        self._data[key] = self._data.get(key, 0) + by
        self._dirty = True

    def append(self, key: str, value: Any) -> None:
        if self._ctx._replaying:
            return
        dumps(value)
        self._data.setdefault(key, []).append(value)
        self._dirty = True

    async def flush(self) -> None:
        """Save pending changes now (they are saved with the next step anyway)."""
        if self._dirty:
            await self._ctx._save_side_rows()

    def _drain(self) -> str | None:
        if not self._dirty:
            return None
        self._dirty = False
        return dumps(self._data)


class _PendingRows:
    """``RunContext._pending_rows``: a plain class, not ``@asynccontextmanager``, because every
    step enters it and a generator-based one costs ~20 extra calls each time."""

    __slots__ = ("_ctx", "_locked")

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._locked = False

    async def __aenter__(self) -> PendingRows:
        ctx = self._ctx
        if not ctx._has_pending:
            return [], [], None
        await ctx._side_lock.acquire()
        try:
            taken = ctx._drain()
        except BaseException:
            ctx._side_lock.release()
            raise
        self._locked = True
        return taken

    async def __aexit__(self, *exc_info: object) -> None:
        if self._locked:
            self._locked = False
            self._ctx._side_lock.release()


class RunContext:
    """Handed to every workflow function; one per execution of a run."""

    def __init__(
        self,
        *,
        engine: Engine,
        run: Mapping[Any, Any],
        worker_id: str,
        journal: Journal,
        step_retry: RetryPolicy,
    ) -> None:
        self.run_id: str = run["id"]
        self.workflow_id: str = run["workflow_id"]
        self.attempt: int = run["attempt"]
        self.parent_id: str | None = run["parent_id"]
        self.tags: list[str] = loads(run["tags"])
        self.concurrency_key: str | None = run["concurrency_key"]
        scheduled = run["scheduled_at"]
        # The tick a scheduled run was started for (not when it actually started).
        self.scheduled_at: datetime | None = (
            None if scheduled is None else datetime.fromtimestamp(scheduled, UTC)
        )
        self.log = RunLogger(self)
        self.metadata = RunMetadata(self, loads(run["run_metadata"]) or {})
        self._engine = engine
        self._store = engine._store
        self._clock = engine.clock
        self._worker_id = worker_id
        self._journal = journal
        self._step_retry = step_retry
        self._seq = 0
        self._logs: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []
        self._new_waitpoints: list[NewWaitpoint] = []
        self._awaited: list[int] = []
        self._inflight = 0
        self._idle: anyio.Event | None = None
        self._closed = False
        # Writes carrying this run's logs (or stream chunks) go one at a time, so that their
        # ids, drawn from a shared sequence, become visible in order: live views follow a
        # run's logs and chunks by id and must never see a later id before an earlier one.
        self._side_lock = anyio.Lock()
        self._stream_lock = anyio.Lock()
        # Positions below the journal's last one were already executed, so logs written
        # there were saved by an earlier execution and must not be written twice.
        self._replay_until = max([*journal.steps, *journal.waitpoints], default=0)

    # -- public API ---------------------------------------------------------------------

    @property
    def idempotency_key(self) -> str:
        """A key unique to the current step of this run, stable across retries and replays.

        Pass it to external APIs (payments, e-mail) so a retried step is not applied twice.

        Raises:
            RuntimeError: when read outside a step function.
        """
        scope = _current_step.get()
        if scope is None:
            raise RuntimeError("ctx.idempotency_key is only available inside a step function")
        return scope.idempotency_key

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: RetryPolicy | None = None,
        kind: str = "step",
        info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
        kind: str = "step",
        info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
        kind: str = "step",
        info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` once and journal its JSON result.

        On replay the journaled result is returned without calling ``fn``; annotate ``fn``'s
        return type to get pydantic models (or other types) back instead of plain JSON.
        Synchronous functions run in a worker thread so they cannot block the event loop.
        ``kind`` labels the step (``llm`` and ``tool`` for agent calls); ``info`` is JSON kept
        with it for people and tools reading the run (e.g. the request an LLM call was sent).

        Raises:
            StepFailedError: ``fn`` failed on its last allowed attempt (also on replay).
            NonDeterminismError: the journal has a different call at this position.
        """
        self._check_open()
        seq = self._next_seq()
        recorded = self._recorded_step(seq, name, kind)
        if recorded is not None:
            return self._replay_step(recorded, fn)  # type: ignore[no-any-return]
        policy = retry or self._step_retry
        self._enter()
        try:
            result: T = await self._execute_step(
                seq, name, kind, policy, fn, args, kwargs, None if info is None else dumps(info)
            )
            return result
        finally:
            self._leave()

    @property
    def next_step_recorded(self) -> bool:
        """Whether the next call at this run's next position is already journaled, so it will
        replay its recorded result instead of running (e.g. to skip preparing its input)."""
        return (self._seq + 1) in self._journal.steps

    async def publish(self, stream: str, data: str) -> None:
        """Append ``data`` to the live stream ``stream`` of this run (e.g. model token deltas).

        Readers (the HTTP API's event stream, ``Engine.get_stream``) see it at once, from any
        process. Streams are not journaled: a replay does not publish again, so keep the final
        value in a step's result.
        """
        self._check_open()
        if not self._replaying:
            async with self._stream_lock:
                await self._store.append_stream(self.run_id, stream, data)

    async def sleep(self, duration: float | timedelta) -> None:
        """Pause durably; the run holds no worker slot while it sleeps."""
        seconds = _seconds(duration)
        await self._wait("sleep", "sleep", timeout=seconds, allow_zero=True)

    async def sleep_until(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("sleep_until needs a timezone-aware datetime")
        await self.sleep(max(0.0, when.timestamp() - self._clock()))

    async def wait_for_approval(
        self, name: str, *, data: Any = None, timeout: float | timedelta | None = None
    ) -> ApprovalDecision:
        """Pause until a human (or agent) approves or rejects, or until ``timeout``.

        The approval is bound to a digest of ``data``: the decision reports it, and a replay
        that asks to approve different data fails as non-deterministic.
        """
        digest = data_digest(data)
        wp = await self._wait(
            "approval",
            name,
            data=dumps(data),
            digest=digest,
            timeout=None if timeout is None else _seconds(timeout),
        )
        if wp["status"] == "timed_out":
            return ApprovalDecision(
                approved=False,
                status="timed_out",
                data=data,
                digest=digest,
                decided_at=datetime.fromtimestamp(wp["resolved_at"], UTC),
            )
        return ApprovalDecision.model_validate(loads(wp["resolution"]))

    async def wait_for_event(
        self,
        name: str,
        *,
        match: Mapping[str, Any] | None = None,
        timeout: float | timedelta | None = None,
    ) -> ReceivedEvent | None:
        """Pause until an event called ``name`` whose payload contains ``match`` is sent.

        Only events sent after the wait begins count. Returns ``None`` on timeout.
        """
        wp = await self._wait(
            "event",
            name,
            target=name,
            data=dumps(dict(match) if match else None),
            timeout=None if timeout is None else _seconds(timeout),
        )
        if wp["status"] == "timed_out":
            return None
        return ReceivedEvent.model_validate(loads(wp["resolution"]))

    async def trigger(
        self,
        workflow: Workflow[Any, Any] | str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> str:
        """Start a child run, exactly once. Returns the child's run id."""
        ids = await self._trigger_children(workflow, [payload], idempotency_key, tags, single=True)
        return ids[0]

    async def trigger_and_wait(
        self,
        workflow: Workflow[Any, T] | str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> T:
        """Start a child run and pause until it ends; return its output.

        Raises:
            ChildRunError: the child failed, was cancelled or timed out.
        """
        self._check_open()
        wf = self._engine.get_workflow(workflow)
        # Both positions are taken before the first await, so that calls running side by side
        # (asyncio.gather) get the same positions on replay as on the first execution.
        trigger_seq, wait_seq = self._next_seq(), self._next_seq()
        child_id = (
            await self._trigger_children(
                wf, [payload], idempotency_key, tags, single=True, seq=trigger_seq
            )
        )[0]
        wp = self._register_wait("child", wf.id, target=child_id, seq=wait_seq)
        if wp is None:
            await self._suspend()
        assert wp is not None
        result = loads(wp["resolution"])
        if result["status"] != RunStatus.COMPLETED.value:
            raise ChildRunError(child_id, result["status"], result.get("error"))
        return restore(dumps(result["output"]), wf.output_type)  # type: ignore[no-any-return]

    async def batch_trigger_and_wait(
        self,
        workflow: Workflow[Any, Any] | str,
        payloads: Sequence[Any],
        *,
        tags: Sequence[str] = (),
    ) -> list[ChildResult]:
        """Fan out: start one child per payload, pause until all end, return every outcome."""
        self._check_open()
        wf = self._engine.get_workflow(workflow)
        batch = self._next_seq()  # the trigger's position names the batch
        wait_seqs = [self._next_seq() for _ in payloads]
        child_ids = await self._trigger_children(
            wf, list(payloads), None, tags, single=False, seq=batch
        )
        resolved = [
            self._register_wait("child", wf.id, target=child_id, batch=batch, seq=seq)
            for child_id, seq in zip(child_ids, wait_seqs, strict=True)
        ]
        if any(r is None for r in resolved):
            await self._suspend()
        results = []
        for child_id, wp in zip(child_ids, resolved, strict=True):
            assert wp is not None
            res = loads(wp["resolution"])
            output = res.get("output")
            if res["status"] == RunStatus.COMPLETED.value:
                output = restore(dumps(output), wf.output_type)
            results.append(
                ChildResult(
                    run_id=child_id,
                    status=RunStatus(res["status"]),
                    output=output,
                    error=res.get("error"),
                )
            )
        return results

    # -- steps --------------------------------------------------------------------------

    def _recorded_step(self, seq: int, name: str, kind: str) -> RowMapping | None:
        recorded = self._journal.steps.get(seq)
        if recorded is not None:
            if recorded["name"] != name or recorded["kind"] != kind:
                raise NonDeterminismError(
                    self.run_id,
                    seq,
                    f"{recorded['kind']} {recorded['name']!r}",
                    f"{kind} {name!r}",
                )
            return recorded
        other = self._journal.waitpoints.get(seq)
        if other is not None:
            raise NonDeterminismError(
                self.run_id, seq, f"{other['kind']} wait {other['name']!r}", f"{kind} {name!r}"
            )
        return None

    def _replay_step(self, recorded: RowMapping, fn: Callable[..., Any]) -> Any:
        if recorded["status"] == "completed":
            return restore(recorded["output"], _return_type(fn))
        err = loads(recorded["error"]) or {}
        raise StepFailedError(
            run_id=self.run_id,
            step=recorded["name"],
            seq=recorded["seq"],
            error_type=err.get("type", "Error"),
            error_message=err.get("message", ""),
            attempts=recorded["attempts"],
            retryable=bool(err.get("retryable", True)),
        )

    async def _execute_step(
        self,
        seq: int,
        name: str,
        kind: str,
        policy: RetryPolicy,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        info: str | None = None,
    ) -> Any:
        scope = _StepScope(seq, name, f"{self.run_id}:{seq}")
        started = self._clock()
        attempt = 0
        is_async = inspect.iscoroutinefunction(fn)
        while True:
            attempt += 1
            token = _current_step.set(scope)
            try:
                if is_async:
                    result = await fn(*args, **kwargs)
                else:
                    result = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
                    if inspect.isawaitable(result):
                        result = await result
            except Exception as exc:
                self._errors.append(self._error_row(exc, seq, name, attempt))
                if policy.should_retry(exc, attempt):
                    await anyio.sleep(policy.delay_for(exc, attempt))
                    continue
                err = error_info(exc)
                err["retryable"] = policy.is_retryable(exc)
                await self._save_step(
                    self._step_row(seq, name, kind, started, attempt, error=dumps(err), info=info)
                )
                raise StepFailedError(
                    run_id=self.run_id,
                    step=name,
                    seq=seq,
                    error_type=err["type"],
                    error_message=err["message"],
                    attempts=attempt,
                    retryable=err["retryable"],
                ) from exc
            finally:
                _current_step.reset(token)
            await self._save_step(
                self._step_row(seq, name, kind, started, attempt, output=dumps(result), info=info)
            )
            return result

    def _step_row(
        self,
        seq: int,
        name: str,
        kind: str,
        started: float,
        attempts: int,
        *,
        output: str | None = None,
        error: str | None = None,
        info: str | None = None,
    ) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": seq,
            "name": name,
            "kind": kind,
            "status": "failed" if error is not None else "completed",
            "output": output,
            "error": error,
            "attempts": attempts,
            "started_at": started,
            "finished_at": self._clock(),
            "info": info,
        }

    async def _save_step(
        self, row: dict[str, Any], children: Sequence[NewRun] = (), single: bool = True
    ) -> None:
        try:
            async with self._pending_rows() as (logs, errors, metadata):
                await self._store.save_step(
                    self.run_id,
                    self._worker_id,
                    row,
                    logs=logs,
                    errors=errors,
                    metadata=metadata,
                    children=children,
                    single=single,
                )
        except LeaseLost:
            self._closed = True
            raise Abandon(self.run_id) from None
        except CancelRequested:
            self._closed = True
            raise CancelRun(self.run_id) from None

    def _error_row(
        self, exc: BaseException, seq: int | None, name: str | None, attempt: int | None
    ) -> dict[str, Any]:
        info = error_info(exc)
        return {
            "run_id": self.run_id,
            "run_attempt": self.attempt,
            "seq": seq,
            "step": name,
            "step_attempt": attempt,
            "error_type": info["type"],
            "message": info["message"],
            "traceback": info["traceback"],
            "ts": self._clock(),
        }

    # -- children -----------------------------------------------------------------------

    async def _trigger_children(
        self,
        workflow: Workflow[Any, Any] | str,
        payloads: list[Any],
        idempotency_key: str | None,
        tags: Sequence[str],
        *,
        single: bool,
        seq: int | None = None,
    ) -> list[str]:
        self._check_open()
        wf = self._engine.get_workflow(workflow)
        if seq is None:
            seq = self._next_seq()
        name = f"trigger:{wf.id}"
        recorded = self._recorded_step(seq, name, "trigger")
        if recorded is not None:
            out = loads(recorded["output"])
            return [out] if single else list(out)
        children = [
            NewRun(
                workflow_id=wf.id,
                workflow_version=wf.version,
                payload=wf.dump_payload(wf.validate_payload(p)),
                tags=tags,
                priority=wf.priority,
                queue=wf.queue,
                parent_id=self.run_id,
                idempotency_key=idempotency_key,
                idempotency_ttl=self._engine.idempotency_ttl if idempotency_key else None,
                priority_aging=self._engine.priority_aging,
            )
            for p in payloads
        ]
        row = self._step_row(seq, name, "trigger", self._clock(), 1)
        self._enter()
        try:
            await self._save_step(row, children, single)
        finally:
            self._leave()
        self._engine._notify_work()
        out = loads(str(row["output"]))
        return [out] if single else list(out)

    # -- waits --------------------------------------------------------------------------

    async def _wait(
        self,
        kind: str,
        name: str,
        *,
        target: str | None = None,
        data: str | None = None,
        digest: str | None = None,
        timeout: float | None = None,
        allow_zero: bool = False,
    ) -> RowMapping:
        self._check_open()
        if kind == "sleep" and allow_zero and timeout is not None and timeout <= 0:
            # Nothing to wait for, but the position is taken all the same (a replay may
            # compute a different duration for `sleep_until` and must line up).
            seq = self._next_seq()
            recorded = self._journal.waitpoints.get(seq)
            if recorded is not None and (recorded["kind"], recorded["name"]) != (kind, name):
                raise NonDeterminismError(
                    self.run_id, seq, f"{recorded['kind']} wait {recorded['name']!r}", "sleep"
                )
            if recorded is not None and recorded["status"] == "pending":
                self._awaited.append(seq)
                await self._suspend()
            return {"status": "completed"}  # type: ignore[return-value]
        resolved = self._register_wait(
            kind, name, target=target, data=data, digest=digest, timeout=timeout
        )
        if resolved is None:
            await self._suspend()
        assert resolved is not None
        return resolved

    def _register_wait(
        self,
        kind: str,
        name: str,
        *,
        target: str | None = None,
        data: str | None = None,
        digest: str | None = None,
        timeout: float | None = None,
        batch: int | None = None,
        seq: int | None = None,
    ) -> RowMapping | None:
        """Take a position for a wait; return its resolution, or ``None`` if still pending."""
        if seq is None:
            seq = self._next_seq()
        recorded = self._journal.waitpoints.get(seq)
        if recorded is None:
            step = self._journal.steps.get(seq)
            if step is not None:
                raise NonDeterminismError(
                    self.run_id, seq, f"{step['kind']} {step['name']!r}", f"{kind} wait {name!r}"
                )
            self._new_waitpoints.append(
                NewWaitpoint(
                    seq=seq,
                    kind=kind,
                    name=name,
                    target=target,
                    data=data,
                    digest=digest,
                    batch=batch,
                    timeout_at=None if timeout is None else self._clock() + timeout,
                )
            )
            self._awaited.append(seq)
            return None
        if recorded["kind"] != kind or recorded["name"] != name:
            raise NonDeterminismError(
                self.run_id,
                seq,
                f"{recorded['kind']} wait {recorded['name']!r}",
                f"{kind} wait {name!r}",
            )
        if kind == "approval" and recorded["digest"] != digest:
            raise NonDeterminismError(
                self.run_id,
                seq,
                f"approval {name!r} for data with digest {recorded['digest'][:12]}",
                f"approval {name!r} for different data (digest {(digest or '')[:12]})",
            )
        if recorded["status"] == "pending":
            self._awaited.append(seq)
            return None
        return recorded

    async def _suspend(self) -> typing.NoReturn:
        # Let steps already running alongside this wait finish and journal their results, so
        # that suspending never throws away completed work.
        while self._inflight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()
        self._closed = True
        raise Suspend()

    # -- bookkeeping --------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _check_open(self) -> None:
        if self._closed:
            # A sibling task (e.g. under asyncio.gather) already suspended the run.
            raise Suspend()

    def _enter(self) -> None:
        self._inflight += 1

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    @property
    def _replaying(self) -> bool:
        return self._seq < self._replay_until

    def _add_log(self, level: str, message: str, fields: dict[str, Any]) -> None:
        if self._replaying:
            return
        scope = _current_step.get()
        self._logs.append(
            {
                "run_id": self.run_id,
                "seq": scope.seq if scope else None,
                "level": level,
                "message": str(message),
                "fields": dumps(fields),
                "ts": time.time(),
            }
        )

    def _drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
        """Take what waits to be saved with the next write: logs, attempt errors, metadata."""
        logs, errors = self._logs, self._errors
        self._logs, self._errors = [], []
        return logs, errors, self.metadata._drain()

    @property
    def _has_pending(self) -> bool:
        return bool(self._logs or self._errors or self.metadata._dirty)

    def _pending_rows(self) -> _PendingRows:
        """What waits to be saved, taken for the write made inside the block.

        Writes that carry something hold the run's side-row lock until they are done, so
        their rows commit in the order their ids were drawn (see ``_side_lock``); writes
        that carry nothing do not wait.
        """
        return _PendingRows(self)

    async def _save_side_rows(self) -> None:
        try:
            async with self._pending_rows() as (logs, errors, metadata):
                await self._store.save_pending(
                    self.run_id, self._worker_id, errors, logs=logs, metadata=metadata
                )
        except LeaseLost:
            self._closed = True
            raise Abandon(self.run_id) from None

    @property
    def _has_waits(self) -> bool:
        return bool(self._journal.waitpoints or self._new_waitpoints)

    def _suspension(self) -> tuple[list[NewWaitpoint], list[int]]:
        return self._new_waitpoints, self._awaited
