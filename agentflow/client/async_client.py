"""``AsyncClient``: the agentflow HTTP API with the Engine's method names, for async code."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from ..models import (
    ApprovalDecision,
    AttemptError,
    EventRecord,
    LogEntry,
    Run,
    RunPage,
    StepRecord,
    WaitpointRecord,
)
from ..schedules import Missed, Schedule
from ..status import RunStatus
from ._base import DEFAULT_TIMEOUT, _Backoff, _Base, _list_runs, _output
from ._requests import _UNSET, LOG_PAGE, StatusFilter, T, _Request, _Requests
from .errors import ApiConnectionError

if TYPE_CHECKING:
    from ..models import WorkflowInfo

__all__ = ["AsyncClient", "AsyncRemoteRun", "AsyncScheduleClient"]


@dataclass(frozen=True)
class AsyncRemoteRun:
    """A run started through an :class:`AsyncClient` (what ``Engine.trigger``'s handle is)."""

    id: str
    client: AsyncClient
    created: bool = True

    async def get(self) -> Run:
        return await self.client.get_run(self.id)

    async def wait(self, timeout: float | None = None) -> Run:
        return await self.client.wait(self.id, timeout=timeout)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the run and return its output (JSON, not typed: there is no workflow here).

        Raises:
            RunFailedError: the run failed, was cancelled or timed out.
            WaitTimeoutError: the run did not finish within ``timeout``.
        """
        return _output(await self.wait(timeout))


class AsyncScheduleClient:
    """``client.schedules``: the server's cron schedules, as ``engine.schedules``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        missed: Missed = "latest",
        id: str | None = None,
    ) -> Schedule:
        """Start ``workflow`` with ``payload`` at every tick of ``cron`` in ``timezone``.

        Raises:
            WorkflowNotFoundError, PayloadValidationError, ConflictError: as the Engine.
            ScheduleError: invalid cron expression, timezone or id.
        """
        req = _Requests.schedule_create(workflow, cron, timezone, payload, missed, id)
        return await self._client._send(req)

    async def get(self, id: str) -> Schedule:
        """Raises: ScheduleNotFoundError."""
        return await self._client._send(_Requests.schedule_get(id))

    async def list(self, workflow: str | None = None) -> builtins.list[Schedule]:
        return await self._client._send(_Requests.schedule_list(workflow))

    async def pause(self, id: str) -> Schedule:
        """Raises: ScheduleNotFoundError."""
        return await self._client._send(_Requests.schedule_action("pause", id))

    async def resume(self, id: str) -> Schedule:
        """Raises: ScheduleNotFoundError."""
        return await self._client._send(_Requests.schedule_action("resume", id))

    async def delete(self, id: str) -> None:
        """Raises: ScheduleNotFoundError; ConflictError for a schedule a workflow declares."""
        await self._client._send(_Requests.schedule_delete(id))


class AsyncClient(_Base):
    """The agentflow HTTP API at ``base_url`` (e.g. ``"http://127.0.0.1:8000"``), async.

    ``api_key`` defaults to ``AGENTFLOW_API_KEY``; ``timeout`` bounds each request, in
    seconds. ``transport`` is passed to httpx (e.g. ``httpx.ASGITransport(app=...)`` to call
    an app in process). Use as an async context manager, or call :meth:`aclose`.

    Every method raises ``ApiConnectionError`` when the server cannot be reached and
    ``ApiError`` for an error that has no Engine counterpart (e.g. 401).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        self.schedules = AsyncScheduleClient(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, req: _Request[T]) -> T:
        request = self._build(self._http, req)
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise ApiConnectionError(self.base_url, exc) from None
        return self._parse(req, response)

    def _handle(self, answer: tuple[str, bool]) -> AsyncRemoteRun:
        return AsyncRemoteRun(answer[0], self, answer[1])

    # -- workflows and triggering ---------------------------------------------------------

    async def list_workflows(self) -> list[WorkflowInfo]:
        """The server's workflows, with their payload and output JSON schemas."""
        return await self._send(_Requests.workflows())

    async def trigger(
        self,
        workflow: Any,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        delay: float | timedelta | None = None,
        tags: Sequence[str] = (),
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> AsyncRemoteRun:
        """Start a run of ``workflow`` (its id, or the workflow itself); see ``Engine.trigger``.

        Raises:
            WorkflowNotFoundError: unknown workflow id.
            PayloadValidationError: the payload does not match the workflow's model.
        """
        req = _Requests.trigger(
            workflow, payload, idempotency_key, delay, tags, priority, concurrency_key
        )
        return self._handle(await self._send(req))

    async def send_event(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> EventRecord:
        """Send an event: resume matching waits, start subscribed workflows."""
        return await self._send(_Requests.send_event(name, payload, id))

    # -- reading --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """Raises: RunNotFoundError."""
        return await self._send(_Requests.get_run(run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs, newest first. Several statuses cost one request each (the API filters by one)."""
        plan = _list_runs(status, limit)
        one, size, cursor = next(plan)
        while True:
            page = await self.page_runs(
                workflow=workflow, status=one, tag=tag, limit=size, cursor=cursor
            )
            try:
                one, size, cursor = plan.send(page)
            except StopIteration as done:
                runs: list[Run] = done.value
                return runs

    async def page_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """One page of runs, newest first; pass ``next_cursor`` as ``cursor`` for the next.

        Raises:
            InvalidCursorError: ``cursor`` is not the ``next_cursor`` of an earlier page.
        """
        return await self._send(_Requests.page_runs(workflow, status, tag, limit, cursor))

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """Raises: RunNotFoundError."""
        return await self._send(_Requests.get_steps(run_id))

    async def get_logs(self, run_id: str, *, after_id: int = 0) -> list[LogEntry]:
        """Every log entry after ``after_id`` (fetched a page at a time).

        Raises: RunNotFoundError."""
        entries: list[LogEntry] = []
        while True:
            page = await self._send(_Requests.get_logs(run_id, after_id))
            entries += page
            if len(page) < LOG_PAGE:
                return entries
            after_id = page[-1].id

    async def get_errors(self, run_id: str) -> list[AttemptError]:
        """Raises: RunNotFoundError."""
        return await self._send(_Requests.get_errors(run_id))

    async def list_waitpoints(
        self, *, run_id: str | None = None, kind: str | None = None, status: str | None = None
    ) -> list[WaitpointRecord]:
        return await self._send(_Requests.list_waitpoints(run_id, kind, status))

    async def pending_approvals(self, run_id: str | None = None) -> list[WaitpointRecord]:
        return await self._send(_Requests.pending_approvals(run_id))

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Poll the run, backing off, until it ends; return it. The run goes on if this gives up.

        Raises:
            WaitTimeoutError: it did not end within ``timeout`` seconds.
            RunNotFoundError: no such run.
        """
        backoff = _Backoff(run_id, timeout, anyio.current_time)
        while True:
            run = await self.get_run(run_id)
            if run.status.is_terminal:
                return run
            await anyio.sleep(backoff.pause())

    # -- acting on runs -------------------------------------------------------------------

    async def cancel(self, run_id: str) -> Run:
        """Raises: RunNotFoundError; ConflictError if the run already ended."""
        return await self._send(_Requests.cancel(run_id))

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[str]:
        """Cancel every unfinished run matching the filters; return the ids of those runs."""
        req = _Requests.cancel_many(workflow, status, tag, created_after, created_before)
        return await self._send(req)

    async def replay(self, run_id: str) -> AsyncRemoteRun:
        """Raises: RunNotFoundError; PayloadValidationError if the payload no longer fits."""
        return self._handle(await self._send(_Requests.replay(run_id)))

    async def replay_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[AsyncRemoteRun]:
        """Replay (as new runs) every run matching the filters, oldest first."""
        req = _Requests.replay_many(workflow, status, tag, created_after, created_before, limit)
        return [AsyncRemoteRun(run_id, self) for run_id in await self._send(req)]

    async def fork(self, run_id: str, *, from_step: int | str) -> AsyncRemoteRun:
        """Resume a run as a new run from a step (a journal position or a step name).

        Raises:
            RunNotFoundError, NotFoundError: no such run, or no such step in its journal.
            ConflictError: a wait before that step never resolved.
        """
        return self._handle(await self._send(_Requests.fork(run_id, from_step)))

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
        """Approve a pending approval, by run id and name or by token; ``data`` is an edit.

        Raises:
            NotFoundError: no such run or approval.
            ApprovalError: already resolved, or the run ended.
            ValueError: neither or both of (run_id, name) and token.
        """
        req = _Requests.decide(True, run_id, name, token, approver, comment, data)
        return await self._send(req)

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
        req = _Requests.decide(False, run_id, name, token, approver, comment, _UNSET)
        return await self._send(req)
