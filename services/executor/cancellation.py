"""Cancelling a running attempt when its owner asks (asyncCancel).

Every executor holds one core NATS subscription on the cancel requests
(``ops.events.*.*.cancel_requested``): JetStream stores them on the event stream, and a stored
message is also published to plain subscribers, so each executor hears every cancel request as
it is stored. The one running that operation cancels its attempt's task (the resolver, or an
action's HTTP call, sees CancelledError) and the attempt ends as CANCELLED.

A request heard while nothing runs the operation here is remembered for a while: the attempt
may be about to start (its start stored just before the cancel request), and is then cancelled
as soon as it does. Deliveries that come later read the cancel request from the stream instead
(services/executor/decide.py).
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.events import (
    OperationCancelRequested,
    OperationRequested,
    TerminalEvent,
    cancelled,
)
from contracts.names import event_subject
from services.common.poison import admit

log = logging.getLogger(__name__)

CANCEL_REQUESTS: Final = event_subject("*", "*", "cancel_requested")
# How long a cancel request heard for an operation not running here is remembered, and how
# many at most: long enough for an attempt whose start was on its way to begin.
REMEMBER_S: Final = 60.0
REMEMBER_AT_MOST: Final = 10_000

Run = Callable[[OperationRequested, int], Awaitable[TerminalEvent]]
_Key = tuple[str, str]


class CancellableRuns:
    """Runs attempts as tasks that a cancel request for their operation cancels."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._running: dict[_Key, asyncio.Future[TerminalEvent]] = {}
        self._cancel_heard: OrderedDict[_Key, float] = OrderedDict()
        self._subscription: Subscription | None = None

    async def __call__(self, request: OperationRequested, attempt: int) -> TerminalEvent:
        """The terminal event attempt ``attempt`` ends in: CANCELLED when its owner cancelled
        it while it ran."""
        key = (request.tenant, request.operation_id)
        task = asyncio.ensure_future(self._run(request, attempt))
        self._running[key] = task
        if self._heard(key):
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this executor is stopping: the delivery is handed back
            log.info("operation %s: cancelled by its owner while it ran", request.operation_id)
            return cancelled(request)
        finally:
            if self._running.get(key) is task:
                del self._running[key]

    def cancel(self, tenant: str, operation_id: str) -> None:
        """Cancel the attempt at the operation running here, or remember that it was asked."""
        key = (tenant, operation_id)
        running = self._running.get(key)
        if running is not None:
            running.cancel()
            return
        self._cancel_heard[key] = time.monotonic()
        self._cancel_heard.move_to_end(key)
        while len(self._cancel_heard) > REMEMBER_AT_MOST:
            self._cancel_heard.popitem(last=False)

    def _heard(self, key: _Key) -> bool:
        heard_at = self._cancel_heard.pop(key, None)
        return heard_at is not None and time.monotonic() - heard_at < REMEMBER_S

    async def _on_message(self, message: Msg) -> None:
        event = admit(message.subject, message.data)
        if isinstance(event, OperationCancelRequested):
            self.cancel(event.tenant, event.operation_id)

    async def listen(self, nc: NatsClient) -> None:
        """Subscribe to every cancel request (before the first delivery is handled)."""
        self._subscription = await nc.subscribe(CANCEL_REQUESTS, cb=self._on_message)

    async def close(self) -> None:
        """Stop listening."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
