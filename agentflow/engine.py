"""The Engine: registered workflows plus the operations on their runs."""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ._completions import Completions
from ._cursor import decode_cursor, encode_cursor
from ._serde import dumps, restore
from .errors import (
    NotFoundError,
    PayloadValidationError,
    RunFailedError,
    WaitTimeoutError,
    WorkflowNotFoundError,
)
from .flow import Queue
from .limits import MAX_DELAY
from .models import (
    ApprovalDecision,
    AttemptError,
    EventRecord,
    LogEntry,
    Run,
    RunPage,
    StepRecord,
    StreamChunk,
    WaitpointRecord,
)
from .retry import RetryPolicy
from .status import RunStatus
from .storage import Database, NewRun, Store
from .storage.database import Synchronous
from .storage.records import FORKED_FROM, RunFilter, new_id
from .workflows import Workflow, seconds

if TYPE_CHECKING:
    from .keys import ApiKeys
    from .schedules import Schedules
    from .webhooks import WebhookSources
    from .worker import Worker

__all__ = ["Engine", "RunHandle"]


O = TypeVar("O")
_UNSET: Any = object()


def _filter(
    workflow: str | None,
    status: RunStatus | str | Sequence[RunStatus | str] | None,
    tag: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunFilter:
    statuses: list[str] = []
    if isinstance(status, str):
        statuses = [RunStatus(status).value]
    elif status is not None:
        statuses = [RunStatus(s).value for s in status]
    return RunFilter(
        workflow_id=workflow,
        status=statuses,
        tag=tag,
        created_after=None if created_after is None else created_after.timestamp(),
        created_before=None if created_before is None else created_before.timestamp(),
    )


@dataclass(frozen=True)
class RunHandle(Generic[O]):
    """A reference to a run returned by :meth:`Engine.trigger`."""

    id: str
    engine: Engine
    workflow: Workflow[Any, O]
    created: bool = True

    async def get(self) -> Run:
        return await self.engine.get_run(self.id)

    async def wait(self, timeout: float | None = None) -> Run:
        return await self.engine.wait(self.id, timeout=timeout)

    async def result(self, timeout: float | None = None) -> O:
        """Wait for the run and return its output, typed by the workflow's return annotation.

        Raises:
            RunFailedError: the run failed, was cancelled or timed out.
            WaitTimeoutError: the run did not finish within ``timeout``.
        """
        run = await self.wait(timeout)
        if run.status is not RunStatus.COMPLETED:
            raise RunFailedError(run.id, run.status.value, run.error)
        return restore(dumps(run.output), self.workflow.output_type)  # type: ignore[no-any-return]


class Engine:
    """Registered workflows and the operations on their runs.

    ``database_url`` defaults to ``AGENTFLOW_DATABASE_URL`` or a SQLite file at
    ``.agentflow/agentflow.db`` under the working directory. The schema is migrated on first use.
    """

    def __init__(
        self,
        database_url: str | None = None,
        workflows: Iterable[Workflow[Any, Any]] = (),
        *,
        step_retry: RetryPolicy | None = None,
        idempotency_ttl: float | timedelta = timedelta(hours=24),
        queues: Iterable[Queue] = (),
        priority_aging: float | timedelta = timedelta(minutes=1),
        sqlite_synchronous: Synchronous | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = Database(database_url, sqlite_synchronous=sqlite_synchronous)
        self.clock = clock
        self.step_retry = step_retry or RetryPolicy()
        self.idempotency_ttl = seconds(idempotency_ttl)
        self.queues: dict[str, Queue] = {q.name: q for q in queues}
        aging = seconds(priority_aging)
        if aging is None or not (math.isfinite(aging) and 0 < aging <= MAX_DELAY):
            raise ValueError(
                "priority_aging must be a positive number of seconds up to 100 years "
                f"(the wait worth one priority level), not {priority_aging!r}"
            )
        self.priority_aging = aging
        self._store = Store(self.db, clock)
        self._workflows: dict[str, Workflow[Any, Any]] = {}
        for wf in workflows:
            self.register(wf)
        self._started = False
        self._start_lock: anyio.Lock | None = None
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        self._completions = Completions(self._store.finished_among)
        self._schedules: Schedules | None = None
        self._api_keys: ApiKeys | None = None
        self._webhooks: WebhookSources | None = None

    # -- setup ---------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.db.url

    @property
    def workflows(self) -> dict[str, Workflow[Any, Any]]:
        return dict(self._workflows)

    def register(self, wf: Workflow[Any, Any]) -> Workflow[Any, Any]:
        if not isinstance(wf, Workflow):
            raise TypeError(f"{wf!r} is not a workflow; decorate it with @workflow")
        existing = self._workflows.get(wf.id)
        if existing is not None and existing is not wf:
            raise ValueError(f"another workflow is already registered as {wf.id!r}")
        self._workflows[wf.id] = wf
        return wf

    def get_workflow(self, workflow: Workflow[Any, O] | str) -> Workflow[Any, O]:
        """Raises: WorkflowNotFoundError naming the registered workflows."""
        if isinstance(workflow, Workflow):
            return self._workflows.get(workflow.id, workflow)
        try:
            return self._workflows[workflow]
        except KeyError:
            raise WorkflowNotFoundError(workflow, list(self._workflows)) from None

    async def start(self) -> None:
        """Open the database and bring its schema up to date (done on first use anyway)."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = anyio.Lock()
        async with self._start_lock:
            if not self._started:
                await self._store.migrate()
                self._started = True

    async def close(self) -> None:
        for worker in list(self._workers):
            worker.stop()
        await anyio.to_thread.run_sync(self.db.close)
        self._started = False

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- triggering ----------------------------------------------------------------------

    async def trigger(
        self,
        workflow: Workflow[Any, O] | str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        idempotency_ttl: float | timedelta | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] = (),
        priority: int | None = None,
        metadata: dict[str, Any] | None = None,
        concurrency_key: str | None = None,
        ttl: float | timedelta | None = None,
        queue: str | None = None,
    ) -> RunHandle[O]:
        """Start a run. The payload is validated first; an invalid one creates no run.

        With ``idempotency_key``, a second trigger of the same workflow with the same key
        (within ``idempotency_ttl``, 24 h by default) returns the first run and starts nothing.
        The scope of a key is the workflow: the same key on two workflows names two runs.
        ``queue``, ``concurrency_key``, ``priority`` and ``ttl`` override the workflow's
        defaults; a run still queued ``ttl`` after it was triggered ends ``expired``.

        Raises:
            WorkflowNotFoundError: unknown workflow id.
            PayloadValidationError: the payload does not match the workflow's model.
            ValueError: ``delay``/``run_at`` is not finite or more than 100 years ahead.
        """
        wf = self.get_workflow(workflow)
        value = wf.validate_payload(payload)
        await self.start()
        now = self.clock()
        # The bound is checked on the delay itself: ``now + delay - now`` may round above it.
        ahead = seconds(delay) or 0.0
        available = now + ahead
        if run_at is not None:
            if run_at.tzinfo is None:
                raise ValueError("run_at needs a timezone-aware datetime")
            available = run_at.timestamp()
            ahead = available - now
        if not (math.isfinite(ahead) and ahead <= MAX_DELAY):
            raise ValueError(f"delay/run_at must be finite and at most {MAX_DELAY:.0f}s ahead")
        key_ttl = seconds(idempotency_ttl) if idempotency_ttl is not None else self.idempotency_ttl
        time_to_live = seconds(ttl) if ttl is not None else wf.ttl
        spec = NewRun(
            workflow_id=wf.id,
            workflow_version=wf.version,
            payload=wf.dump_payload(value),
            status=(RunStatus.DELAYED if available > now else RunStatus.QUEUED).value,
            available_at=available,
            tags=list(tags),
            metadata=metadata or {},
            priority=wf.priority if priority is None else priority,
            queue=queue or wf.queue,
            idempotency_key=idempotency_key,
            idempotency_ttl=key_ttl,
            concurrency_key=concurrency_key or wf.concurrency_key,
            concurrency_limit=wf.concurrency_limit,
            expires_at=None if time_to_live is None else available + time_to_live,
            priority_aging=self.priority_aging,
        )
        row, created = await self._store.create_run(spec)
        if created and available <= now:
            self._notify_work()
        return RunHandle(row["id"], self, wf, created)

    # -- reading -------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """Raises: RunNotFoundError."""
        await self.start()
        return Run.from_row(await self._store.get_run(run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tag: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        created_before: datetime | None = None,
    ) -> list[Run]:
        """Runs, newest first. Page with ``created_before`` = the last run's ``created_at``
        (or use :meth:`page_runs`)."""
        await self.start()
        filters = _filter(workflow, status, tag, None, created_before)
        rows = await self._store.list_runs(filters, parent_id=parent_id, limit=limit)
        return [Run.from_row(r) for r in rows]

    async def page_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first, one page at a time, stable while new runs are added.

        Raises:
            InvalidCursorError: ``cursor`` is not the ``next_cursor`` of an earlier page.
        """
        await self.start()
        filters = _filter(workflow, status, tag, None, None)
        before = None if cursor is None else decode_cursor(cursor)
        rows = await self._store.list_runs(filters, limit=limit + 1, before_key=before)
        page = rows[:limit]
        more = len(rows) > limit
        last = page[-1] if page else None
        return RunPage(
            items=[Run.from_row(r) for r in page],
            next_cursor=encode_cursor(last["created_at"], last["id"]) if more and last else None,
        )

    async def changed_runs(
        self,
        *,
        after: str | None = None,
        since: float | None = None,
        workflow: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tag: str | None = None,
        limit: int = 500,
    ) -> RunPage:
        """Runs in the order they last changed, oldest change first: what live views poll.

        Start at ``since`` (Unix seconds) or continue ``after`` the ``next_cursor`` of an
        earlier page; ``next_cursor`` is always set (the position after the last change
        returned), so a feed keeps polling with it.

        Raises:
            InvalidCursorError: ``after`` is not a cursor this method returned.
        """
        await self.start()
        filters = _filter(workflow, status, tag, None, None)
        key = decode_cursor(after) if after is not None else (since or 0.0, "")
        rows = await self._store.changed_runs(filters, after=key, limit=limit)
        if rows:
            key = (rows[-1]["updated_at"], rows[-1]["id"])
        return RunPage(items=[Run.from_row(r) for r in rows], next_cursor=encode_cursor(*key))

    async def get_steps(
        self, run_id: str, *, finished_after: float | None = None
    ) -> list[StepRecord]:
        """The run's journal, by position; only steps finished after ``finished_after``
        (Unix seconds) when given."""
        await self.start()
        rows = await self._store.get_steps(run_id, finished_after=finished_after)
        return [StepRecord.from_row(r) for r in rows]

    async def get_logs(
        self, run_id: str, *, after_id: int = 0, limit: int | None = None
    ) -> list[LogEntry]:
        """The run's log entries after entry ``after_id``, oldest first (at most ``limit``)."""
        await self.start()
        rows = await self._store.get_logs(run_id, after_id=after_id, limit=limit)
        return [LogEntry.from_row(r) for r in rows]

    async def get_stream(
        self, run_id: str, *, stream: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        """Live output the run published (``RunContext.publish``) after chunk ``after_id``."""
        await self.start()
        rows = await self._store.get_stream(run_id, stream=stream, after_id=after_id, limit=limit)
        return [StreamChunk.from_row(r) for r in rows]

    async def get_errors(self, run_id: str) -> list[AttemptError]:
        """Every failed attempt of the run and its steps, oldest first, with tracebacks."""
        await self.start()
        return [AttemptError.from_row(r) for r in await self._store.get_attempt_errors(run_id)]

    async def list_waitpoints(
        self,
        *,
        run_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        token: str | None = None,
    ) -> list[WaitpointRecord]:
        """Waitpoints, oldest first, filtered by run, kind, status and approval token."""
        await self.start()
        rows = await self._store.get_waitpoints(
            run_id=run_id, kind=kind, status=status, token=token
        )
        return [WaitpointRecord.from_row(r) for r in rows]

    async def pending_approvals(self, run_id: str | None = None) -> list[WaitpointRecord]:
        return await self.list_waitpoints(run_id=run_id, kind="approval", status="pending")

    async def list_events(self, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
        await self.start()
        return [
            EventRecord.from_row(r) for r in await self._store.list_events(name=name, limit=limit)
        ]

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run ends and return it. The run goes on if this gives up.

        Raises:
            WaitTimeoutError: it did not end within ``timeout`` seconds.
            RunNotFoundError: no such run.
        """
        run = await self.get_run(run_id)
        if run.status.is_terminal:
            return run
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            finished = await self._completions.wait(run_id)
            return Run.from_row(finished) if finished else await self.get_run(run_id)
        raise WaitTimeoutError(f"run {run_id} did not finish within {timeout}s", run_id=run_id)

    # -- acting on runs ------------------------------------------------------------------

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run and its unfinished children (cooperatively, for executing ones).

        Raises:
            RunNotFoundError: no such run.
            ConflictError: the run already ended.
        """
        await self.start()
        row, executing = await self._store.cancel(run_id)
        self._stop_locally(executing)
        run = Run.from_row(row)
        if run.status.is_terminal:  # an executing run ends when its worker stops it
            self._notify_done(run_id, row)
        return run

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[str]:
        """Cancel every unfinished run matching the filters, with their children.

        Returns the ids of the matching runs (executing ones stop at their next await).
        """
        await self.start()
        filters = _filter(workflow, status, tag, created_after, created_before)
        ids, executing = await self._store.cancel_where(filters)
        self._stop_locally(executing)
        for rid in set(ids) - set(executing):
            self._notify_done(rid)
        return ids

    async def replay(self, run_id: str) -> RunHandle[Any]:
        """Start a new run of the same workflow with the same payload and tags.

        Raises:
            RunNotFoundError: no such run.
            PayloadValidationError: the payload no longer fits the workflow's model.
        """
        return await self._replay(await self.get_run(run_id))

    async def _replay(self, run: Run) -> RunHandle[Any]:
        return await self.trigger(
            run.workflow_id,
            run.payload,
            tags=run.tags,
            metadata={**run.metadata, "replay_of": run.id},
        )

    async def replay_many(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[RunHandle[Any]]:
        """Replay (as new runs) every run matching the filters, oldest first."""
        await self.start()
        filters = _filter(workflow, status, tag, created_after, created_before)
        rows = await self._store.list_runs(filters, limit=limit)
        return [await self._replay(Run.from_row(r)) for r in reversed(rows)]

    async def fork(self, run_id: str, *, from_step: int | str) -> RunHandle[Any]:
        """Resume a run as a new run from a chosen step, keeping the journal before it.

        ``from_step`` is a journal position (``#`` in ``runs show``) or a step name (its
        first occurrence). Steps before it are not run again; it and everything after are.

        Raises:
            RunNotFoundError, NotFoundError: no such run, or no such step in its journal.
            ConflictError: a wait before that step never resolved.
        """
        source = await self.get_run(run_id)
        wf: Workflow[Any, Any] = self.get_workflow(source.workflow_id)
        if isinstance(from_step, str):
            named = [s.seq for s in await self.get_steps(run_id) if s.name == from_step]
            if not named:
                raise NotFoundError(f"run {run_id} has no step named {from_step!r}", run_id=run_id)
            before = min(named)
        else:
            before = from_step
        if before < 1:
            raise ValueError("from_step must be a journal position (1 or more) or a step name")
        spec = NewRun(
            workflow_id=wf.id,
            workflow_version=wf.version,
            payload=wf.dump_payload(wf.validate_payload(source.payload)),
            tags=source.tags,
            metadata={**source.metadata, FORKED_FROM: {"run_id": run_id, "from_step": before}},
            priority=source.priority,
            queue=wf.queue,
            concurrency_key=source.concurrency_key,
            concurrency_limit=wf.concurrency_limit,
            priority_aging=self.priority_aging,
        )
        row = await self._store.fork(run_id, before, spec)
        self._notify_work()
        return RunHandle(row["id"], self, wf)

    async def approve(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
        data: Any = _UNSET,
    ) -> ApprovalDecision:
        """Approve a pending approval, by run id and approval name or by its token.

        ``data`` replaces the data the run asked to have approved (an edit).

        Raises:
            NotFoundError: no such run or approval.
            ApprovalError: already resolved (tokens are single use) or the run ended.
        """
        return await self._resolve(True, run_id, name, token, approver, comment, data)

    async def reject(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
    ) -> ApprovalDecision:
        """Reject a pending approval. Raises the same errors as :meth:`approve`."""
        return await self._resolve(False, run_id, name, token, approver, comment, _UNSET)

    async def _resolve(
        self,
        approved: bool,
        run_id: str | None,
        name: str | None,
        token: str | None,
        approver: str | None,
        comment: str | None,
        data: Any,
    ) -> ApprovalDecision:
        await self.start()
        _wp, decision = await self._store.resolve_approval(
            approved=approved,
            run_id=run_id,
            name=name,
            token=token,
            approver=approver,
            comment=comment,
            data=None if data is _UNSET else data,
            has_data=data is not _UNSET,
        )
        self._notify_work()
        return ApprovalDecision.model_validate(decision)

    async def send_event(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> EventRecord:
        """Record an event, start the workflows subscribed to it (``on_event``) and resume
        every run waiting for it whose filter matches.

        A subscriber whose payload model rejects the event gets no run; the mismatch is
        recorded on the event (``errors``). Re-sending an event ``id`` changes nothing.
        """
        await self.start()
        encoded = dumps(payload)
        value = restore(encoded, Any)
        event_id = id or new_id("evt")
        start: list[NewRun] = []
        errors: list[dict[str, Any]] = []
        for wf in self._workflows.values():
            if name not in wf.on_event:
                continue
            try:
                validated = wf.validate_payload(value)
            except PayloadValidationError as exc:
                errors.append({"workflow": wf.id, "message": exc.message, "errors": exc.errors})
                continue
            start.append(
                NewRun(
                    workflow_id=wf.id,
                    workflow_version=wf.version,
                    payload=wf.dump_payload(validated),
                    priority=wf.priority,
                    queue=wf.queue,
                    concurrency_key=wf.concurrency_key,
                    concurrency_limit=wf.concurrency_limit,
                    # One run per workflow and event, even if the event is re-sent.
                    idempotency_key=f"event:{event_id}",
                    metadata={"event_id": event_id, "event": name},
                    priority_aging=self.priority_aging,
                )
            )
        row, created, resumed = await self._store.send_event(
            name, encoded, event_id, value, start=start, errors=errors
        )
        if resumed or (created and start):
            self._notify_work()
        return EventRecord.from_row(row, duplicate=not created)

    # -- schedules -----------------------------------------------------------------------

    @property
    def schedules(self) -> Schedules:
        """Cron schedules: declared on workflows, or created and managed at runtime."""
        if self._schedules is None:
            from .schedules import Schedules

            self._schedules = Schedules(self)
        return self._schedules

    # -- access ----------------------------------------------------------------------------

    @property
    def api_keys(self) -> ApiKeys:
        """API keys for the HTTP API: create (shown once), list, revoke, verify."""
        if self._api_keys is None:
            from .keys import ApiKeys

            self._api_keys = ApiKeys(self)
        return self._api_keys

    @property
    def webhooks(self) -> WebhookSources:
        """Webhook sources: signed deliveries to ``/api/v1/webhooks/<source>`` become events."""
        if self._webhooks is None:
            from .webhooks import WebhookSources

            self._webhooks = WebhookSources(self)
        return self._webhooks

    # -- workers -------------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A worker for this engine (see :class:`agentflow.Worker` for the options)."""
        from .worker import Worker

        return Worker(self, **options)

    async def run_worker(self, concurrency: int = 50, **options: Any) -> None:
        """Run a worker until cancelled or stopped."""
        await self.worker(concurrency=concurrency, **options).run()

    def _attach(self, worker: Worker) -> None:
        self._workers.add(worker)

    def _detach(self, worker: Worker) -> None:
        self._workers.discard(worker)

    def _stop_locally(self, run_ids: Iterable[str]) -> None:
        """Cancel at once the runs executing in this process (others stop at a heartbeat)."""
        for run_id in run_ids:
            for worker in list(self._workers):
                worker.cancel_local(run_id)

    def _notify_work(self) -> None:
        for worker in list(self._workers):
            worker._work.notify()

    def _notify_done(self, run_id: str, row: Mapping[Any, Any] | None = None) -> None:
        self._completions.done(run_id, row)
