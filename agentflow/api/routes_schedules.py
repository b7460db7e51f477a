"""Cron schedules: list, create, read, pause, resume and delete (``engine.schedules``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agentflow.schedules import (
    Missed,
    Schedule,
    ScheduleError,
    validate_cron,
    validate_timezone,
)

from .errors import ApiError
from .routing import Call, Operation, operation
from .schemas import RequestModel

__all__ = [
    "OPERATIONS",
    "ScheduleCreateRequest",
    "ScheduleDeleted",
    "ScheduleList",
    "ScheduleListQuery",
]

OPERATIONS: list[Operation] = []


class ScheduleCreateRequest(RequestModel):
    workflow: str = Field(min_length=1, description="The id of the workflow to start.")
    cron: str = Field(description="A 5-field cron expression ('0 9 * * 1-5') or '@daily'...")
    timezone: str = Field("UTC", description="The IANA timezone the cron expression is read in.")
    payload: Any = Field(None, description="The payload of every run; validated now.")
    missed: Missed = Field(
        "latest", description="Ticks missed while no scheduler ran: skip, latest or all."
    )
    id: str | None = Field(None, description="The schedule's id; generated when omitted.")


class ScheduleListQuery(RequestModel):
    workflow: str | None = None


class ScheduleList(BaseModel):
    items: list[Schedule]


class ScheduleDeleted(BaseModel):
    deleted: str = Field(description="The id of the deleted schedule.")


def _invalid(field: str, exc: ScheduleError) -> ApiError:
    """A 422 with the engine's code, naming the field (the engine's error does not)."""
    errors = [{"field": field, "message": exc.message, "type": exc.code}]
    return ApiError(422, exc.code, exc.message, {"errors": errors})


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/schedules",
    response=ScheduleList,
    query=ScheduleListQuery,
    errors=(422,),
    tags=("schedules",),
)
async def list_schedules(call: Call) -> ScheduleList:
    """List schedules (declared ones included), of every workflow or of one (``workflow``)."""
    return ScheduleList(items=await call.engine.schedules.list(call.query.workflow))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/schedules",
    response=Schedule,
    status=201,
    body=ScheduleCreateRequest,
    errors=(404, 409, 413, 422),
    tags=("schedules",),
)
async def create_schedule(call: Call) -> Schedule:
    """Start a workflow at every tick of a cron expression; the first tick is after now."""
    req: ScheduleCreateRequest = call.body
    # Checked here first so that the 422 names the field at fault.
    for field, check in (("cron", validate_cron), ("timezone", validate_timezone)):
        try:
            check(getattr(req, field))
        except ScheduleError as exc:
            raise _invalid(field, exc) from None
    try:
        return await call.engine.schedules.create(
            req.workflow,
            req.cron,
            timezone=req.timezone,
            payload=req.payload,
            missed=req.missed,
            id=req.id,
        )
    except ScheduleError as exc:  # all that is left to check is the id
        raise _invalid("id" if req.id is not None else "cron", exc) from None


@operation(
    OPERATIONS,
    "GET",
    "/api/v1/schedules/{schedule_id}",
    response=Schedule,
    errors=(404,),
    tags=("schedules",),
)
async def get_schedule(call: Call) -> Schedule:
    """Get a schedule: its cron expression, timezone, next and last tick."""
    return await call.engine.schedules.get(call.path("schedule_id"))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/schedules/{schedule_id}/pause",
    response=Schedule,
    errors=(404,),
    tags=("schedules",),
)
async def pause_schedule(call: Call) -> Schedule:
    """Stop starting runs until the schedule is resumed (pausing twice is a no-op)."""
    return await call.engine.schedules.pause(call.path("schedule_id"))


@operation(
    OPERATIONS,
    "POST",
    "/api/v1/schedules/{schedule_id}/resume",
    response=Schedule,
    errors=(404,),
    tags=("schedules",),
)
async def resume_schedule(call: Call) -> Schedule:
    """Tick again from now on; ticks that fell while it was paused are not run."""
    return await call.engine.schedules.resume(call.path("schedule_id"))


@operation(
    OPERATIONS,
    "DELETE",
    "/api/v1/schedules/{schedule_id}",
    response=ScheduleDeleted,
    errors=(404, 409),
    tags=("schedules",),
)
async def delete_schedule(call: Call) -> ScheduleDeleted:
    """Delete a schedule; runs it already started go on. A declared one cannot be deleted."""
    schedule_id = call.path("schedule_id")
    await call.engine.schedules.delete(schedule_id)
    return ScheduleDeleted(deleted=schedule_id)
