"""Cron schedules (being built: see the schedules helper's task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Schedules"]


class Schedules:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def tick(self) -> float | None:
        """Start the runs of due ticks; return when the next tick is due (or None)."""
        return None
