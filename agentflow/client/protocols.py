"""What an Engine and an ``AsyncClient`` have in common, as protocols to type code against."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

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
from ._requests import StatusFilter

__all__ = ["Backend", "Handle", "ScheduleBackend"]


class Handle(Protocol):
    """A started run: ``Engine.trigger``'s ``RunHandle`` or an :class:`AsyncRemoteRun`."""

    @property
    def id(self) -> str: ...

    @property
    def created(self) -> bool: ...

    async def get(self) -> Run: ...

    async def wait(self, timeout: float | None = None) -> Run: ...


class ScheduleBackend(Protocol):
    """``engine.schedules`` or ``client.schedules``."""

    async def create(
        self,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        missed: Missed = "latest",
        id: str | None = None,
    ) -> Schedule: ...

    async def get(self, id: str) -> Schedule: ...

    async def list(self, workflow: str | None = None) -> builtins.list[Schedule]: ...

    async def pause(self, id: str) -> Schedule: ...

    async def resume(self, id: str) -> Schedule: ...

    async def delete(self, id: str) -> None: ...


class Backend(Protocol):
    """The operations an :class:`~agentflow.Engine` and an :class:`AsyncClient` share: code
    typed against it (the CLI, for one) works in process or against a server."""

    @property
    def schedules(self) -> ScheduleBackend: ...

    async def trigger(
        self,
        workflow: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        tags: Sequence[str] = (),
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> Handle: ...

    async def send_event(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> EventRecord: ...

    async def get_run(self, run_id: str) -> Run: ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        limit: int = 50,
    ) -> list[Run]: ...

    async def page_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage: ...

    async def get_steps(self, run_id: str) -> list[StepRecord]: ...

    async def get_logs(self, run_id: str, *, after_id: int = 0) -> list[LogEntry]: ...

    async def get_errors(self, run_id: str) -> list[AttemptError]: ...

    async def list_waitpoints(
        self, *, run_id: str | None = None, kind: str | None = None, status: str | None = None
    ) -> list[WaitpointRecord]: ...

    async def pending_approvals(self, run_id: str | None = None) -> list[WaitpointRecord]: ...

    async def wait(self, run_id: str, timeout: float | None = None) -> Run: ...

    async def cancel(self, run_id: str) -> Run: ...

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[str]: ...

    async def replay(self, run_id: str) -> Handle: ...

    async def replay_many(
        self,
        *,
        workflow: str | None = None,
        status: StatusFilter = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> Sequence[Handle]: ...

    async def fork(self, run_id: str, *, from_step: int | str) -> Handle: ...

    async def approve(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
        data: Any = ...,
    ) -> ApprovalDecision: ...

    async def reject(
        self,
        run_id: str | None = None,
        name: str | None = None,
        *,
        token: str | None = None,
        approver: str | None = None,
        comment: str | None = None,
    ) -> ApprovalDecision: ...
