"""agentflow: durable AI-agent workflows in Python.

Workflows are async functions whose steps are checkpointed in SQL storage; runs survive
crashes, retries, deploys and waits that last days.
"""

# Names are imported on first use (PEP 562) so that `agentflow --help` and other light entry
# points do not pay for SQLAlchemy, pydantic and the engine.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agents import (
        Agent,
        FunctionModel,
        LiteLLMModel,
        OpenAIModel,
        ScriptedModel,
        tool,
    )
    from .context import (
        RunContext,
        RunLogger,
        step_idempotency_key,
    )
    from .engine import (
        Engine,
        RunHandle,
    )
    from .errors import (
        AgentflowError,
        ApprovalError,
        ChildRunError,
        ConflictError,
        NonDeterminismError,
        NonRetryableError,
        NotFoundError,
        PayloadValidationError,
        RunFailedError,
        RunNotFoundError,
        StepFailedError,
        StorageUnavailableError,
        WaitTimeoutError,
        WorkflowNotFoundError,
    )
    from .flow import (
        Queue,
        RateLimit,
    )
    from .models import (
        ApprovalDecision,
        AttemptError,
        ChildResult,
        EventRecord,
        LogEntry,
        ReceivedEvent,
        Run,
        StepRecord,
        WaitpointRecord,
    )
    from .retry import (
        RetryPolicy,
    )
    from .schedules import (
        Schedule,
        ScheduleError,
        ScheduleNotFoundError,
    )
    from .status import (
        RunStatus,
    )
    from .worker import (
        Worker,
    )
    from .workflows import (
        Workflow,
        workflow,
    )

_EXPORTS = {
    "Agent": "agents",
    "AgentflowError": "errors",
    "ApprovalDecision": "models",
    "ApprovalError": "errors",
    "AttemptError": "models",
    "ChildResult": "models",
    "ChildRunError": "errors",
    "ConflictError": "errors",
    "Engine": "engine",
    "EventRecord": "models",
    "FunctionModel": "agents",
    "LiteLLMModel": "agents",
    "LogEntry": "models",
    "NonDeterminismError": "errors",
    "NonRetryableError": "errors",
    "NotFoundError": "errors",
    "OpenAIModel": "agents",
    "PayloadValidationError": "errors",
    "Queue": "flow",
    "RateLimit": "flow",
    "ReceivedEvent": "models",
    "RetryPolicy": "retry",
    "Schedule": "schedules",
    "ScheduleError": "schedules",
    "ScheduleNotFoundError": "schedules",
    "ScriptedModel": "agents",
    "Run": "models",
    "RunContext": "context",
    "step_idempotency_key": "context",
    "RunFailedError": "errors",
    "RunHandle": "engine",
    "RunLogger": "context",
    "RunNotFoundError": "errors",
    "RunStatus": "status",
    "StepFailedError": "errors",
    "StepRecord": "models",
    "StreamChunk": "models",
    "StorageUnavailableError": "errors",
    "WaitTimeoutError": "errors",
    "WaitpointRecord": "models",
    "Worker": "worker",
    "Workflow": "workflows",
    "WorkflowNotFoundError": "errors",
    "tool": "agents",
    "workflow": "workflows",
}

__all__ = [
    "Agent",
    "AgentflowError",
    "ApprovalDecision",
    "ApprovalError",
    "AttemptError",
    "ChildResult",
    "ChildRunError",
    "ConflictError",
    "Engine",
    "EventRecord",
    "FunctionModel",
    "LiteLLMModel",
    "LogEntry",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "OpenAIModel",
    "PayloadValidationError",
    "Queue",
    "RateLimit",
    "ReceivedEvent",
    "RetryPolicy",
    "Run",
    "RunContext",
    "RunFailedError",
    "RunHandle",
    "RunLogger",
    "RunNotFoundError",
    "RunStatus",
    "Schedule",
    "ScheduleError",
    "ScheduleNotFoundError",
    "ScriptedModel",
    "StepFailedError",
    "StepRecord",
    "StorageUnavailableError",
    "StreamChunk",
    "WaitTimeoutError",
    "WaitpointRecord",
    "Worker",
    "Workflow",
    "WorkflowNotFoundError",
    "step_idempotency_key",
    "tool",
    "workflow",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
