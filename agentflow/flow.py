"""Flow-control definitions: named queues with concurrency and rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Queue", "RateLimit"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` run starts per ``period`` (a sliding window)."""

    limit: int
    period: float | timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("RateLimit.limit must be at least 1")
        if self.seconds <= 0:
            raise ValueError("RateLimit.period must be positive")

    @property
    def seconds(self) -> float:
        p = self.period
        return p.total_seconds() if isinstance(p, timedelta) else float(p)


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue. Workflows join it with ``@workflow(queue=name)``.

    ``concurrency`` caps the queue's running runs across every worker; ``worker_concurrency``
    caps them per worker process; ``rate_limit`` caps run starts per period for the queue,
    ``key_rate_limit`` for each concurrency key within it. Runs waiting on a waitpoint do not
    count as running.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    key_rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        for field_name in ("concurrency", "worker_concurrency"):
            value = getattr(self, field_name)
            if value is not None and value < 1:
                raise ValueError(f"Queue.{field_name} must be at least 1")

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None
