"""Riding through the seconds JetStream cannot answer: a leader election, a reconnect.

In a cluster, a stream's leader can be away for the few seconds an election takes (5-7 s
measured on three nodes); JetStream answers "no responders", or nothing, meanwhile. Steps that
are safe to repeat (deduplicated or guarded writes, reads) are retried through such a gap
rather than failing the work around them.
"""

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import nats.errors
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# What JetStream says while it has no leader to answer, or the connection is moving.
TRANSIENT_ERRORS: Final = (
    NoStreamResponseError,
    ServiceUnavailableError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    TimeoutError,
)
RETRY_DELAYS_S: Final = (0.25, 0.5, 1.0, 2.0)


# Even the last try gets this long, however little of the budget is left.
MIN_TRY_S: Final = 1.0


async def riding_through(step: Callable[[], Awaitable[T]], *, what: str, budget_s: float) -> T:
    """``step()``, repeated while JetStream is briefly unable to answer; the last error once
    ``budget_s`` is spent. Each try is cut off where the budget ends (the steps are safe to
    repeat, so a cut-off one is simply tried again or given up), so the whole takes at most
    about ``budget_s``, even when every try would wait out its own time-out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    for attempt in itertools.count():
        try:
            async with asyncio.timeout(max(MIN_TRY_S, deadline - loop.time())):
                return await step()
        except TRANSIENT_ERRORS as error:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            if loop.time() + delay > deadline:
                raise
            if attempt == 0:
                log.warning(
                    "%s: JetStream did not answer (%s); retrying for up to %g s",
                    what,
                    str(error) or type(error).__name__,
                    budget_s,
                )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
