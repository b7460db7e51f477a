"""Run, step and waitpoint statuses."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RunStatus", "StepStatus", "WaitpointStatus"]


class RunStatus(StrEnum):
    QUEUED = "queued"
    DELAYED = "delayed"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.TIMED_OUT,
        RunStatus.EXPIRED,
    }
)
CLAIMABLE = (RunStatus.QUEUED, RunStatus.DELAYED)


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class WaitpointStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
