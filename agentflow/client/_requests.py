"""Each API call once, as a request and a parser of its answer, for both clients."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ..models import (
    ApprovalDecision,
    AttemptError,
    EventRecord,
    LogEntry,
    Run,
    RunPage,
    StepRecord,
    WaitpointRecord,
    WorkflowInfo,
)
from ..schedules import Schedule
from ..status import RunStatus
from ..workflows import seconds

T = TypeVar("T")
LOG_PAGE = 1000  # the API's largest page of log entries
M = TypeVar("M", bound=BaseModel)

_UNSET: Any = object()
_NO_BODY: Any = object()

StatusFilter = RunStatus | str | Sequence[RunStatus | str] | None


@dataclass(frozen=True)
class _Request(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = _NO_BODY


def _path(template: str, *parts: str) -> str:
    return template.format(*(quote(p, safe="") for p in parts))


def _one(model: type[M]) -> Callable[[Any], M]:
    return model.model_validate


def _items(model: type[M]) -> Callable[[Any], list[M]]:
    return lambda data: [model.model_validate(item) for item in data["items"]]


def _statuses(status: StatusFilter) -> list[str]:
    if status is None:
        return []
    if isinstance(status, str):
        return [RunStatus(status).value]
    return [RunStatus(s).value for s in status]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _run_filter(
    workflow: str | None,
    status: StatusFilter,
    tag: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> dict[str, Any]:
    """The body of the bulk operations' filter (``RunFilterRequest``)."""
    return {
        "workflow": workflow,
        "status": _statuses(status),
        "tag": tag,
        "created_after": _iso(created_after),
        "created_before": _iso(created_before),
    }


def _workflow_id(workflow: Any) -> str:
    return workflow if isinstance(workflow, str) else str(workflow.id)


def _trigger_parse(data: Any) -> tuple[str, bool]:
    return str(data["run"]["id"]), bool(data["created"])


class _Requests:
    """The requests behind every client method, shared by the async and blocking clients."""

    @staticmethod
    def workflows() -> _Request[list[WorkflowInfo]]:
        return _Request("GET", "/api/v1/workflows", _items(WorkflowInfo))

    @staticmethod
    def trigger(
        workflow: Any,
        payload: Any,
        idempotency_key: str | None,
        delay: float | timedelta | None,
        tags: Sequence[str],
        priority: int | None,
        concurrency_key: str | None,
    ) -> _Request[tuple[str, bool]]:
        body = {
            "payload": to_jsonable_python(payload),
            "idempotency_key": idempotency_key,
            "delay": seconds(delay),
            "tags": list(tags),
            "priority": priority,
            "concurrency_key": concurrency_key,
        }
        path = _path("/api/v1/workflows/{}/trigger", _workflow_id(workflow))
        return _Request("POST", path, _trigger_parse, body=body)

    @staticmethod
    def get_run(run_id: str) -> _Request[Run]:
        return _Request("GET", _path("/api/v1/runs/{}", run_id), _one(Run))

    @staticmethod
    def page_runs(
        workflow: str | None,
        status: RunStatus | str | None,
        tag: str | None,
        limit: int,
        cursor: str | None,
    ) -> _Request[RunPage]:
        params = {
            "workflow": workflow,
            "status": None if status is None else RunStatus(status).value,
            "tag": tag,
            "limit": limit,
            "cursor": cursor,
        }
        return _Request("GET", "/api/v1/runs", _one(RunPage), params=params)

    @staticmethod
    def get_steps(run_id: str) -> _Request[list[StepRecord]]:
        return _Request("GET", _path("/api/v1/runs/{}/steps", run_id), _items(StepRecord))

    @staticmethod
    def get_logs(run_id: str, after_id: int) -> _Request[list[LogEntry]]:
        path = _path("/api/v1/runs/{}/logs", run_id)
        params = {"after": after_id, "limit": LOG_PAGE}
        return _Request("GET", path, _items(LogEntry), params=params)

    @staticmethod
    def get_errors(run_id: str) -> _Request[list[AttemptError]]:
        return _Request("GET", _path("/api/v1/runs/{}/errors", run_id), _items(AttemptError))

    @staticmethod
    def list_waitpoints(
        run_id: str | None, kind: str | None, status: str | None
    ) -> _Request[list[WaitpointRecord]]:
        params = {"run_id": run_id, "kind": kind, "status": status}
        return _Request("GET", "/api/v1/waitpoints", _items(WaitpointRecord), params=params)

    @staticmethod
    def pending_approvals(run_id: str | None) -> _Request[list[WaitpointRecord]]:
        params = {"run_id": run_id}
        return _Request("GET", "/api/v1/approvals", _items(WaitpointRecord), params=params)

    @staticmethod
    def cancel(run_id: str) -> _Request[Run]:
        return _Request("POST", _path("/api/v1/runs/{}/cancel", run_id), _one(Run))

    @staticmethod
    def cancel_many(
        workflow: str | None,
        status: StatusFilter,
        tag: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> _Request[list[str]]:
        body = _run_filter(workflow, status, tag, created_after, created_before)
        return _Request(
            "POST", "/api/v1/runs/cancel-many", lambda d: list(d["cancelled"]), body=body
        )

    @staticmethod
    def replay(run_id: str) -> _Request[tuple[str, bool]]:
        return _Request("POST", _path("/api/v1/runs/{}/replay", run_id), _trigger_parse)

    @staticmethod
    def replay_many(
        workflow: str | None,
        status: StatusFilter,
        tag: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        limit: int,
    ) -> _Request[list[str]]:
        body = {**_run_filter(workflow, status, tag, created_after, created_before), "limit": limit}
        return _Request("POST", "/api/v1/runs/replay-many", lambda d: list(d["started"]), body=body)

    @staticmethod
    def fork(run_id: str, from_step: int | str) -> _Request[tuple[str, bool]]:
        path = _path("/api/v1/runs/{}/fork", run_id)
        return _Request("POST", path, _trigger_parse, body={"from_step": from_step})

    @staticmethod
    def decide(
        approved: bool,
        run_id: str | None,
        name: str | None,
        token: str | None,
        approver: str | None,
        comment: str | None,
        data: Any,
    ) -> _Request[ApprovalDecision]:
        verb = "approve" if approved else "reject"
        if token is not None and run_id is None and name is None:
            path = _path("/api/v1/approvals/{}/" + verb, token)
        elif token is None and run_id is not None and name is not None:
            path = _path("/api/v1/runs/{}/approvals/{}/" + verb, run_id, name)
        else:
            raise ValueError("name the approval by run_id and name, or by token (not both)")
        body: dict[str, Any] = {"approver": approver, "comment": comment}
        if data is not _UNSET:
            body["data"] = to_jsonable_python(data)
        return _Request("POST", path, _one(ApprovalDecision), body=body)

    @staticmethod
    def send_event(name: str, payload: Any, id: str | None) -> _Request[EventRecord]:
        body = {"name": name, "payload": to_jsonable_python(payload), "id": id}
        return _Request("POST", "/api/v1/events", _one(EventRecord), body=body)

    @staticmethod
    def schedule_create(
        workflow: Any, cron: str, timezone: str, payload: Any, missed: str, id: str | None
    ) -> _Request[Schedule]:
        body = {
            "workflow": _workflow_id(workflow),
            "cron": cron,
            "timezone": timezone,
            "payload": to_jsonable_python(payload),
            "missed": missed,
            "id": id,
        }
        return _Request("POST", "/api/v1/schedules", _one(Schedule), body=body)

    @staticmethod
    def schedule_get(schedule_id: str) -> _Request[Schedule]:
        return _Request("GET", _path("/api/v1/schedules/{}", schedule_id), _one(Schedule))

    @staticmethod
    def schedule_list(workflow: Any) -> _Request[builtins.list[Schedule]]:
        params = {"workflow": None if workflow is None else _workflow_id(workflow)}
        return _Request("GET", "/api/v1/schedules", _items(Schedule), params=params)

    @staticmethod
    def schedule_action(action: str, schedule_id: str) -> _Request[Schedule]:
        path = _path("/api/v1/schedules/{}/" + action, schedule_id)
        return _Request("POST", path, _one(Schedule))

    @staticmethod
    def schedule_delete(schedule_id: str) -> _Request[None]:
        path = _path("/api/v1/schedules/{}", schedule_id)
        return _Request("DELETE", path, lambda _: None)
