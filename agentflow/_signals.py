"""Control-flow signals. They derive from BaseException so that a workflow's own
``except Exception`` cannot swallow them; they are not errors."""

from __future__ import annotations

__all__ = ["Abandon", "CancelRun", "Suspend"]


class Suspend(BaseException):
    """The run waits on a waitpoint: unwind the workflow and park the run."""


class Abandon(BaseException):
    """This worker lost the run's lease: stop executing it and write nothing more."""


class CancelRun(BaseException):
    """The run was asked to cancel: stop executing it and end it cancelled."""
