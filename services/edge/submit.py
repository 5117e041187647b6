"""Queueing an operation: reserve its place under the caller's limits, then store the request.

In a cluster, the stream's (or the limits bucket's) leader can be away for the few seconds an
election takes; JetStream then answers "no responders" at once. Both steps are safe to repeat,
the reservation being keyed by the operation id and the request deduplicated by it, so they are
retried through such a gap before the client is told to try again.
"""

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import nats.errors
from nats.js.errors import NoStreamResponseError

from contracts.events import OperationRequested
from services.edge.context import EdgeContext
from services.edge.errors import unavailable_without_nats

T = TypeVar("T")

# A leader election measured 5-7 s on a three-node cluster; a client waits at most this long
# (plus one try) before it is told to try again.
RIDE_THROUGH_S: Final = 10.0
RETRY_DELAYS_S: Final = (0.25, 0.5, 1.0, 2.0)
LEADERLESS = (NoStreamResponseError, nats.errors.NoRespondersError, TimeoutError)


async def riding_through_elections(step: Callable[[], Awaitable[T]]) -> T:
    """``step()``, repeated while JetStream has no leader to answer, for a bounded time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RIDE_THROUGH_S
    for attempt in itertools.count():
        try:
            return await step()
        except LEADERLESS:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            if loop.time() + delay > deadline:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def submit(context: EdgeContext, requested: OperationRequested) -> int:
    """Store ``requested`` once the caller's limits allow it; return its stream sequence.

    Over a limit: a coded error with a retry-after, and nothing is stored.
    """
    principal, operation_id = context.principal, requested.operation_id
    with unavailable_without_nats("queueing operations", connected=context.nats_connected):
        await riding_through_elections(lambda: context.limits.reserve(principal, operation_id))
        try:
            return await riding_through_elections(
                lambda: context.events.append(requested, msg_id=operation_id)
            )
        except BaseException:
            # Not queued, so it must not count against the caller.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await context.limits.release(principal, operation_id)
            raise
