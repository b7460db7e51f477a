"""What the async and blocking clients share beyond the requests: configuration, sending and
parsing, and the parts of ``wait`` and ``list_runs`` that do no I/O."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from typing import Any

import httpx

from ..errors import RunFailedError, WaitTimeoutError
from ..models import Run, RunPage
from ..status import RunStatus
from ._requests import _NO_BODY, StatusFilter, T, _Request, _statuses
from .errors import _error

DEFAULT_TIMEOUT = 30.0
_POLL_FIRST, _POLL_FACTOR, _POLL_MAX = 0.05, 1.5, 1.0
_PAGE_MAX = 500  # the API's largest page

# What ``list_runs`` asks ``page_runs`` for: (status, limit, cursor).
_PageQuery = tuple[str | None, int, str | None]


class _Base:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        key = api_key if api_key is not None else os.environ.get("AGENTFLOW_API_KEY")
        self._headers = {"Accept": "application/json", "User-Agent": "agentflow-client"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def _build(self, http: httpx.Client | httpx.AsyncClient, req: _Request[Any]) -> httpx.Request:
        params = {k: v for k, v in req.params.items() if v is not None}
        if req.body is _NO_BODY:
            return http.build_request(req.method, req.path, params=params)
        return http.build_request(req.method, req.path, params=params, json=req.body)

    @staticmethod
    def _parse(req: _Request[T], response: httpx.Response) -> T:
        if not response.is_success:
            raise _error(response)
        return req.parse(response.json())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class _Backoff:
    """The pauses between a ``wait``'s polls: growing, and never past the deadline.

    The deadline starts when this is made (before the first poll); ``clock`` is the client's
    (``anyio.current_time`` or ``time.monotonic``).
    """

    def __init__(self, run_id: str, timeout: float | None, clock: Callable[[], float]) -> None:
        self._run_id = run_id
        self._timeout = timeout
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._delay = _POLL_FIRST

    def pause(self) -> float:
        """How long to sleep before the next poll.

        Raises:
            WaitTimeoutError: the deadline has passed.
        """
        pause = delay = self._delay
        if self._deadline is not None:
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                raise _timed_out(self._run_id, self._timeout)
            pause = min(delay, remaining)
        self._delay = min(delay * _POLL_FACTOR, _POLL_MAX)
        return pause


def _timed_out(run_id: str, timeout: float | None) -> WaitTimeoutError:
    return WaitTimeoutError(f"run {run_id} did not finish within {timeout}s", run_id=run_id)


def _list_runs(status: StatusFilter, limit: int) -> Generator[_PageQuery, RunPage, list[Run]]:
    """``list_runs`` without the I/O: yields each page to fetch, is sent that page, and returns
    the runs. Several statuses cost one query each (the API filters by one)."""
    pages: list[list[Run]] = []
    statuses: list[str | None] = [*_statuses(status)] or [None]
    for one in statuses:
        runs: list[Run] = []
        cursor: str | None = None
        while True:
            page = yield one, min(limit - len(runs), _PAGE_MAX), cursor
            runs += page.items
            cursor = page.next_cursor
            if cursor is None or len(runs) >= limit:
                break
        pages.append(runs)
    return _merge(pages, limit)


def _merge(lists: Sequence[Sequence[Run]], limit: int) -> list[Run]:
    """Runs of several single-status queries as one list, newest first (as the engine sorts)."""
    if len(lists) == 1:
        return list(lists[0][:limit])
    runs = [run for runs in lists for run in runs]
    runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return runs[:limit]


def _output(run: Run) -> Any:
    if run.status is not RunStatus.COMPLETED:
        raise RunFailedError(run.id, run.status.value, run.error)
    return run.output
