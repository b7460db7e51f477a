"""The agentflow exception hierarchy: one root, structured fields, messages that say what to do."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentflowError",
    "ApprovalError",
    "ChildRunError",
    "ConflictError",
    "InvalidCursorError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "PayloadValidationError",
    "RunFailedError",
    "RunNotFoundError",
    "StepFailedError",
    "StorageUnavailableError",
    "WaitTimeoutError",
    "WorkflowNotFoundError",
]


class AgentflowError(Exception):
    """Root of every error agentflow raises on purpose.

    `code` is a stable machine-readable identifier (used by the HTTP API and MCP server).
    """

    code: str = "agentflow_error"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id


class NotFoundError(AgentflowError):
    code = "not_found"


class RunNotFoundError(NotFoundError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}", run_id=run_id)


class WorkflowNotFoundError(NotFoundError):
    code = "workflow_not_found"

    def __init__(self, workflow_id: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "none registered"
        super().__init__(f"unknown workflow {workflow_id!r}; available workflows: {names}")
        self.workflow_id = workflow_id
        self.available = sorted(available)


class PayloadValidationError(AgentflowError):
    """The payload did not validate against the workflow's payload model. No run was created."""

    code = "invalid_payload"

    def __init__(self, workflow_id: str, errors: list[dict[str, Any]]) -> None:
        parts = [f"{e['field'] or '(payload)'}: {e['message']}" for e in errors]
        super().__init__(f"invalid payload for workflow {workflow_id!r}: " + "; ".join(parts))
        self.workflow_id = workflow_id
        self.errors = errors

    @property
    def fields(self) -> list[str]:
        return [e["field"] for e in self.errors]


class ConflictError(AgentflowError):
    """The operation conflicts with the current state (e.g. approving a resolved approval)."""

    code = "conflict"


class ApprovalError(ConflictError):
    code = "approval_conflict"


class NonDeterminismError(AgentflowError):
    """A replay met a different step than the journal recorded at the same position."""

    code = "non_determinism"

    def __init__(self, run_id: str, seq: int, recorded: str, called: str) -> None:
        super().__init__(
            f"non-deterministic replay at step #{seq}: the journal recorded {recorded} but the "
            f"workflow now calls {called}; workflow code changed under a running run "
            "(bump the workflow version for new runs, or cancel and replay this one)",
            run_id=run_id,
        )
        self.seq = seq
        self.recorded = recorded
        self.called = called


class NonRetryableError(AgentflowError):
    """Raise (or subclass) inside a step or workflow to fail at once without retrying."""

    code = "non_retryable"


class StepFailedError(AgentflowError):
    """A step exhausted its retries. Raised the same way on first execution and on replay."""

    code = "step_failed"

    def __init__(
        self,
        *,
        run_id: str,
        step: str,
        seq: int,
        error_type: str,
        error_message: str,
        attempts: int,
        retryable: bool,
    ) -> None:
        super().__init__(
            f"step {step!r} (#{seq}) failed after {attempts} attempt(s): {error_type}: "
            f"{error_message}",
            run_id=run_id,
        )
        self.step = step
        self.seq = seq
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        self.retryable = retryable


class ChildRunError(AgentflowError):
    """A child run awaited with `ctx.trigger_and_wait` did not complete."""

    code = "child_run_failed"

    def __init__(self, child_id: str, status: str, error: dict[str, Any] | None) -> None:
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"child run {child_id} ended {status}{detail}", run_id=child_id)
        self.status = status
        self.error = error


class RunFailedError(AgentflowError):
    """Raised by `RunHandle.result()` when the run did not complete."""

    code = "run_failed"

    def __init__(self, run_id: str, status: str, error: dict[str, Any] | None) -> None:
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"run {run_id} ended {status}{detail}", run_id=run_id)
        self.status = status
        self.error = error


class WaitTimeoutError(AgentflowError, TimeoutError):
    """`Engine.wait` gave up before the run finished (the run itself goes on)."""

    code = "wait_timeout"


class StorageUnavailableError(AgentflowError):
    """The database could not be reached."""

    code = "storage_unavailable"

    def __init__(self, url: str, reason: BaseException) -> None:
        super().__init__(f"cannot connect to the database {url}: {reason}")
        self.url = url


class InvalidCursorError(AgentflowError):
    """A page cursor that was not returned by a previous page."""

    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__("invalid cursor: pass the next_cursor of a previous page")
