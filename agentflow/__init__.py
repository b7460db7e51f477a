"""agentflow: durable AI-agent workflows in Python.

Workflows are async functions whose steps are checkpointed in SQL storage; runs survive
crashes, retries, deploys and waits that last days.
"""

from .context import RunContext, RunLogger
from .engine import Engine, RunHandle
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
    WaitTimeoutError,
    WorkflowNotFoundError,
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
from .retry import RetryPolicy
from .status import RunStatus
from .worker import Worker
from .workflow import Workflow, workflow

__all__ = [
    "AgentflowError",
    "ApprovalDecision",
    "ApprovalError",
    "AttemptError",
    "ChildResult",
    "ChildRunError",
    "ConflictError",
    "Engine",
    "EventRecord",
    "LogEntry",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "PayloadValidationError",
    "ReceivedEvent",
    "RetryPolicy",
    "Run",
    "RunContext",
    "RunFailedError",
    "RunHandle",
    "RunLogger",
    "RunNotFoundError",
    "RunStatus",
    "StepFailedError",
    "StepRecord",
    "WaitTimeoutError",
    "WaitpointRecord",
    "Worker",
    "Workflow",
    "WorkflowNotFoundError",
    "workflow",
]

__version__ = "0.1.0"
