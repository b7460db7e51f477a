"""``Client``: the blocking twin of ``AsyncClient``, for scripts and notebooks."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

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

__all__ = ["Client", "RemoteRun", "ScheduleClient"]


@dataclass(frozen=True)
class RemoteRun:
    """A run started through a :class:`Client`."""

    id: str
    client: Client
    created: bool = True

    def get(self) -> Run:
        return self.client.get_run(self.id)

    def wait(self, timeout: float | None = None) -> Run:
        return self.client.wait(self.id, timeout=timeout)

    def result(self, timeout: float | None = None) -> Any:
        """Raises: RunFailedError, WaitTimeoutError (see :meth:`AsyncRemoteRun.result`)."""
        return _output(self.wait(timeout))


class ScheduleClient:
    """``client.schedules`` of a blocking :class:`Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        missed: Missed = "latest",
        id: str | None = None,
    ) -> Schedule:
        """See :meth:`AsyncScheduleClient.create`."""
        req = _Requests.schedule_create(workflow, cron, timezone, payload, missed, id)
        return self._client._send(req)

    def get(self, id: str) -> Schedule:
        return self._client._send(_Requests.schedule_get(id))

    def list(self, workflow: str | None = None) -> builtins.list[Schedule]:
        return self._client._send(_Requests.schedule_list(workflow))

    def pause(self, id: str) -> Schedule:
        return self._client._send(_Requests.schedule_action("pause", id))

    def resume(self, id: str) -> Schedule:
        return self._client._send(_Requests.schedule_action("resume", id))

    def delete(self, id: str) -> None:
        self._client._send(_Requests.schedule_delete(id))


class Client(_Base):
    """The blocking twin of :class:`AsyncClient`: the same methods, arguments, results and
    errors, for scripts and notebooks. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        self.schedules = ScheduleClient(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, req: _Request[T]) -> T:
        request = self._build(self._http, req)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise ApiConnectionError(self.base_url, exc) from None
        return self._parse(req, response)

    def _handle(self, answer: tuple[str, bool]) -> RemoteRun:
        return RemoteRun(answer[0], self, answer[1])

    def list_workflows(self) -> list[WorkflowInfo]:
        return self._send(_Requests.workflows())

    def trigger(
        self,
        workflow: Any,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        delay: float | timedelta | None = None,
        tags: Sequence[str] = (),
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> RemoteRun:
        """See :meth:`AsyncClient.trigger`."""
        req = _Requests.trigger(
            workflow, payload, idempotency_key, delay, tags, priority, concurrency_key
        )
        return self._handle(self._send(req))

    def send_event(self, name: str, payload: Any = None, *, id: str | None = None) -> EventRecord:
        return self._send(_Requests.send_event(name, payload, id))

    def get_run(self, run_id: str) -> Run:
        return self._send(_Requests.get_run(run_id))

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        limit: int = 50,
    ) -> list[Run]:
        plan = _list_runs(status, limit)
        one, size, cursor = next(plan)
        while True:
            page = self.page_runs(workflow=workflow, status=one, tag=tag, limit=size, cursor=cursor)
            try:
                one, size, cursor = plan.send(page)
            except StopIteration as done:
                runs: list[Run] = done.value
                return runs

    def page_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        return self._send(_Requests.page_runs(workflow, status, tag, limit, cursor))

    def get_steps(self, run_id: str) -> list[StepRecord]:
        return self._send(_Requests.get_steps(run_id))

    def get_logs(self, run_id: str, *, after_id: int = 0) -> list[LogEntry]:
        """Every log entry after ``after_id`` (fetched a page at a time)."""
        entries: list[LogEntry] = []
        while True:
            page = self._send(_Requests.get_logs(run_id, after_id))
            entries += page
            if len(page) < LOG_PAGE:
                return entries
            after_id = page[-1].id

    def get_errors(self, run_id: str) -> list[AttemptError]:
        return self._send(_Requests.get_errors(run_id))

    def list_waitpoints(
        self, *, run_id: str | None = None, kind: str | None = None, status: str | None = None
    ) -> list[WaitpointRecord]:
        return self._send(_Requests.list_waitpoints(run_id, kind, status))

    def pending_approvals(self, run_id: str | None = None) -> list[WaitpointRecord]:
        return self._send(_Requests.pending_approvals(run_id))

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """See :meth:`AsyncClient.wait`. Raises: WaitTimeoutError, RunNotFoundError."""
        backoff = _Backoff(run_id, timeout, time.monotonic)
        while True:
            run = self.get_run(run_id)
            if run.status.is_terminal:
                return run
            time.sleep(backoff.pause())

    def cancel(self, run_id: str) -> Run:
        return self._send(_Requests.cancel(run_id))

    def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[str]:
        return self._send(
            _Requests.cancel_many(workflow, status, tag, created_after, created_before)
        )

    def replay(self, run_id: str) -> RemoteRun:
        return self._handle(self._send(_Requests.replay(run_id)))

    def replay_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[RemoteRun]:
        req = _Requests.replay_many(workflow, status, tag, created_after, created_before, limit)
        return [RemoteRun(run_id, self) for run_id in self._send(req)]

    def fork(self, run_id: str, *, from_step: int | str) -> RemoteRun:
        return self._handle(self._send(_Requests.fork(run_id, from_step)))

    def approve(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
        data: Any = _UNSET,
    ) -> ApprovalDecision:
        """See :meth:`AsyncClient.approve`."""
        return self._send(_Requests.decide(True, run_id, name, token, approver, comment, data))

    def reject(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
    ) -> ApprovalDecision:
        return self._send(_Requests.decide(False, run_id, name, token, approver, comment, _UNSET))
