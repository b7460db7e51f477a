"""``subscriptions/listen`` streams (protocol 2026-07-28): resource changes and task pushes.

One listen request is one stream. Besides the SDK's vocabulary (list changes, and
``notifications/resources/updated`` for the ``resourceSubscriptions`` asked for), a client that
declared the tasks extension may list ``taskIds``: it then receives ``notifications/tasks``,
each carrying the task exactly as ``tasks/get`` would return it at that moment. The first one
for each task is its current state, sent right after the acknowledgement (so a transition
between the client's last ``tasks/get`` and the subscription is never missed); the next ones
follow whenever the task changes. The acknowledgement lists the task ids agreed to: the
unknown ones are left out.

Changes are seen by the :class:`~mcp_server.watch.RunWatcher`, which polls the database, so a
run executed by a worker in another process is followed too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ServerEvent,
    event_matches,
    event_to_notification,
)
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    Notification,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from pydantic import BaseModel

from agentflow.errors import RunNotFoundError

from .tasks import Tasks, require_extension
from .uris import RUN, run_id_of
from .watch import RunWatcher

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp.server.subscriptions import SubscriptionBus

__all__ = ["MAX_TASK_IDS", "ListenStreams", "TaskNotification"]

logger = logging.getLogger("agentflow.mcp")

MAX_TASK_IDS = 100
"""The most task ids one listen stream may follow."""


class TaskNotification(Notification[dict[str, Any], Literal["notifications/tasks"]]):
    """``notifications/tasks``: a task's full current state (params are a detailed task)."""

    method: Literal["notifications/tasks"] = "notifications/tasks"


class ListenStreams:
    """The ``subscriptions/listen`` handler of a server (replaces the SDK's ``ListenHandler``,
    which knows nothing of extensions' filter keys).

    Each stream acknowledges first, then forwards what it asked for until the client goes
    away. ``max_streams`` bounds concurrent streams; a stream whose client stops reading is
    ended once ``max_buffered`` notifications wait (the client re-listens and refetches).
    """

    def __init__(
        self,
        bus: SubscriptionBus,
        watcher: RunWatcher,
        tasks: Tasks,
        *,
        max_streams: int = 1024,
        max_buffered: int = 1024,
    ) -> None:
        self.bus = bus
        self.watcher = watcher
        self.tasks = tasks
        self.max_streams = max_streams
        self.max_buffered = max_buffered
        self._open = 0

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        if self._open >= self.max_streams:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached")
        requested = params.notifications
        task_ids = _task_ids(requested)
        if task_ids:
            require_extension(ctx)
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        send, receive = anyio.create_memory_object_stream[BaseModel](self.max_buffered)
        undo: list[Callable[[], None]] = [send.close]
        released = False

        def release() -> None:
            """Give back the stream's slot and stop everything feeding it (idempotent)."""
            nonlocal released
            if released:
                return
            released = True
            self._open -= 1
            for step in reversed(undo):
                step()

        def hold(unsubscribe: Callable[[], None]) -> None:
            if released:
                unsubscribe()
            else:
                undo.append(unsubscribe)

        def push(notification: BaseModel) -> None:
            try:
                send.send_nowait(notification)
            except anyio.ClosedResourceError:
                pass  # the stream is unwinding
            except anyio.WouldBlock:
                # Released here, not only when the handler returns: the handler may be stuck
                # writing to a client that stopped reading, which closing the buffer cannot wake.
                logger.warning("listen stream %r backlog full; ending it", subscription_id)
                release()

        self._open += 1
        try:
            followed = await self._follow_tasks(hold, task_ids, meta, push)
            honored = _honored(requested, followed)
            uris = frozenset(honored.resource_subscriptions or ())

            def deliver(event: ServerEvent) -> None:
                if event_matches(honored, uris, event):
                    push(event_to_notification(event, meta))

            # Subscribed before the ack so nothing published meanwhile is lost; the ack is
            # still the first frame: only this task writes, and it drains afterwards.
            hold(self.bus.subscribe(deliver))
            if uris:
                hold(await self.watcher.subscribe(uris))
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=honored, _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            async for notification in receive:
                await ctx.session.send_notification(
                    notification,  # type: ignore[arg-type]  # TaskNotification is an extension's
                    related_request_id=subscription_id,
                )
        finally:
            release()
            receive.close()
        return SubscriptionsListenResult(_meta=meta)

    async def _follow_tasks(
        self,
        hold: Callable[[Callable[[], None]], None],
        task_ids: list[str],
        meta: dict[str, Any],
        push: Callable[[BaseModel], None],
    ) -> list[str]:
        """Watch the tasks that exist and queue each one's current state; their ids."""
        if not task_ids:
            return []
        sent: dict[str, dict[str, Any]] = {}
        lock = anyio.Lock()

        async def announce(run_id: str) -> None:
            async with lock:  # one read-compare-send at a time: no duplicate, no reordering
                try:
                    task = await self.tasks.detail(await self.tasks.engine.get_run(run_id))
                except RunNotFoundError:
                    return  # deleted meanwhile
                if sent.get(run_id) != task:
                    sent[run_id] = task
                    push(TaskNotification(params={**task, "_meta": meta}))

        async def on_change(uri: str) -> None:
            run_id = run_id_of(uri)
            if run_id is not None:
                await announce(run_id)

        followed: list[str] = []
        for run_id in task_ids:
            try:
                await self.tasks.engine.get_run(run_id)
            except RunNotFoundError:
                continue  # left out of the acknowledgement
            followed.append(run_id)
        uris = [RUN.format(run_id=run_id) for run_id in followed]
        if not followed:
            return []
        # Watch first, then read: a change after the read is announced by the watcher.
        hold(await self.watcher.subscribe(uris, on_change))
        for run_id in followed:
            await announce(run_id)
        return followed


def _task_ids(requested: SubscriptionFilter) -> list[str]:
    """The ``taskIds`` a listen request asks for, checked.

    Raises:
        MCPError: (invalid params) not a list of strings, or too many.
    """
    raw = (requested.model_extra or {}).get("taskIds")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
        raise MCPError(INVALID_PARAMS, "notifications.taskIds must be a list of task ids")
    if len(raw) > MAX_TASK_IDS:
        raise MCPError(
            INVALID_PARAMS,
            f"notifications.taskIds lists {len(raw)} tasks; one stream follows at most "
            f"{MAX_TASK_IDS}",
        )
    return list(dict.fromkeys(raw))


def _honored(requested: SubscriptionFilter, task_ids: list[str]) -> SubscriptionFilter:
    """What this stream will deliver, for the acknowledgement (only what was asked for)."""
    honored = SubscriptionFilter(
        tools_list_changed=True if requested.tools_list_changed else None,
        prompts_list_changed=True if requested.prompts_list_changed else None,
        resources_list_changed=True if requested.resources_list_changed else None,
        resource_subscriptions=list(requested.resource_subscriptions or ()) or None,
    )
    if task_ids:
        honored.__pydantic_extra__ = {"taskIds": task_ids}
    return honored
