"""Retry policies for steps and workflows: exponential backoff with jitter and a cap.

An exception may carry a ``retry_after`` attribute (seconds, e.g. from an HTTP 429's
``Retry-After`` header): the delay before the next attempt is then at least that long, still
capped at ``max_delay``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import NonDeterminismError, NonRetryableError, PayloadValidationError

__all__ = ["RetryPolicy", "retry_after"]


def retry_after(exc: BaseException) -> float | None:
    """The delay (seconds) ``exc`` asks for before a retry, from its ``retry_after`` attribute."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how fast to retry.

    The delay before attempt ``n + 1`` is ``initial_delay * factor ** (n - 1)``, capped at
    ``max_delay``; with ``jitter`` it is drawn uniformly from ``[delay * (1 - jitter), delay]``
    so that many failing runs do not retry in lock-step.
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if self.factor < 1:
            raise ValueError("RetryPolicy.factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self._backoff(attempt, rng)

    def delay_for(
        self, exc: BaseException, attempt: int, rng: random.Random | None = None
    ) -> float:
        """Like :meth:`delay`, but at least ``exc.retry_after`` seconds (up to ``max_delay``)."""
        base = self._backoff(attempt, rng)
        wanted = retry_after(exc)
        return base if wanted is None else max(base, min(wanted, self.max_delay))

    def _backoff(self, attempt: int, rng: random.Random | None) -> float:
        base = min(self.max_delay, self.initial_delay * self.factor ** (attempt - 1))
        if self.jitter:
            base *= 1 - (rng or random).random() * self.jitter
        return base

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, NonRetryableError | NonDeterminismError | PayloadValidationError):
            return False
        return not (self.non_retryable and isinstance(exc, self.non_retryable))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and self.is_retryable(exc)
