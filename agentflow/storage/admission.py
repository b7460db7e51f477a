"""Which claim candidates may start now: concurrency keys, queue limits, rate limits.

The candidates come from one ``SELECT ... FOR UPDATE SKIP LOCKED``; deciding needs counts of
runs already running or started, and two claimers counting at the same moment could both
admit the last free place. So the counts are taken under transaction-scoped locks named after
each queue and key involved (Postgres advisory locks, taken in sorted order; SQLite already
serialises writers), and a claimer that waited for one counts after the other committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from ..flow import Queue
from ..status import RunStatus
from .dialects import Dialect
from .tables import runs

__all__ = ["admit"]

_RUNNING = RunStatus.RUNNING.value


def admit(
    conn: Connection,
    dialect: Dialect,
    candidates: Sequence[RowMapping],
    *,
    limit: int,
    now: float,
    queues: Mapping[str, Queue],
    worker_free: Mapping[str, int],
) -> list[RowMapping]:
    """The candidates (in order) that fit every limit, at most ``limit`` of them."""
    keys = sorted({c["concurrency_key"] for c in candidates if c["concurrency_key"]})
    limited = sorted({c["queue"] for c in candidates if c["queue"] in queues})
    if not keys and not limited:
        return list(candidates[:limit])
    dialect.lock_names(conn, [f"queue:{q}" for q in limited] + [f"key:{k}" for k in keys])

    key_running = _count(conn, runs.c.concurrency_key, keys, runs.c.status == _RUNNING)
    queue_running = _count(conn, runs.c.queue, limited, runs.c.status == _RUNNING)
    queue_started: Counter[str] = Counter()
    key_started: dict[str, Counter[str]] = {}
    for name in limited:
        queue = queues[name]
        if queue.rate_limit is not None:
            window = runs.c.started_at > now - queue.rate_limit.seconds
            queue_started.update(_count(conn, runs.c.queue, [name], window))
        if queue.key_rate_limit is not None and keys:
            since = now - queue.key_rate_limit.seconds
            window = sa.and_(runs.c.queue == name, runs.c.started_at > since)
            key_started[name] = _count(conn, runs.c.concurrency_key, keys, window)

    taken: Counter[str] = Counter()
    admitted: list[RowMapping] = []
    for c in candidates:
        if len(admitted) >= limit:
            break
        key, name = c["concurrency_key"], c["queue"]
        first_start = c["started_at"] is None
        q = queues.get(name)
        if key and key_running[key] >= (c["concurrency_limit"] or 1):
            continue
        if q is not None:
            if q.concurrency is not None and queue_running[name] >= q.concurrency:
                continue
            if name in worker_free and taken[name] >= worker_free[name]:
                continue
            if first_start and q.rate_limit and queue_started[name] >= q.rate_limit.limit:
                continue
            per_key = key_started.get(name)
            if first_start and key and q.key_rate_limit and per_key is not None:
                if per_key[key] >= q.key_rate_limit.limit:
                    continue
                per_key[key] += 1
            if first_start:
                queue_started[name] += 1
            queue_running[name] += 1
            taken[name] += 1
        if key:
            key_running[key] += 1
        admitted.append(c)
    return admitted


def _count(
    conn: Connection, column: sa.Column[Any], values: Sequence[str], condition: Any
) -> Counter[str]:
    if not values:
        return Counter()
    query = (
        sa.select(column, sa.func.count())
        .where(column.in_(list(values)), condition)
        .group_by(column)
    )
    return Counter({value: n for value, n in conn.execute(query)})
