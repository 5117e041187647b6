"""Queueing an operation: reserve its place under the caller's limits, then store the request."""

import contextlib

import nats.errors

from contracts.events import OperationRequested
from services.edge.context import EdgeContext
from services.edge.errors import unavailable_without_nats


async def submit(context: EdgeContext, requested: OperationRequested) -> int:
    """Store ``requested`` once the caller's limits allow it; return its stream sequence.

    Over a limit: a coded error with a retry-after, and nothing is stored.
    """
    with unavailable_without_nats("queueing operations", connected=context.nats_connected):
        await context.limits.reserve(context.principal, requested.operation_id)
        try:
            # Deduplicated by operation id: a retried publish of this request is stored once.
            return await context.events.append(requested, msg_id=requested.operation_id)
        except BaseException:
            # Not queued, so it must not count against the caller.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await context.limits.release(context.principal, requested.operation_id)
            raise
