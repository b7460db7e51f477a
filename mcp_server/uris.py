"""The resource URIs of runs: ``agentflow://runs/{run_id}`` and its ``/steps`` and ``/logs``."""

from __future__ import annotations

import re

__all__ = ["RUN", "RUN_LOGS", "RUN_STEPS", "run_id_of", "run_uris"]

RUN = "agentflow://runs/{run_id}"
RUN_STEPS = "agentflow://runs/{run_id}/steps"
RUN_LOGS = "agentflow://runs/{run_id}/logs"

_PATTERN = re.compile(r"agentflow://runs/(?P<run_id>[A-Za-z0-9_-]+)(?P<part>/steps|/logs)?")


def run_uris(run_id: str) -> list[str]:
    """Every resource URI of one run."""
    return [t.format(run_id=run_id) for t in (RUN, RUN_STEPS, RUN_LOGS)]


def parse(uri: str) -> tuple[str, str] | None:
    """``(run_id, part)`` of a run URI, part being ``""``, ``"steps"`` or ``"logs"``."""
    match = _PATTERN.fullmatch(uri)
    if match is None:
        return None
    return match["run_id"], (match["part"] or "").lstrip("/")


def run_id_of(uri: str) -> str | None:
    parsed = parse(uri)
    return None if parsed is None else parsed[0]
