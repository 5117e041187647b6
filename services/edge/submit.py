"""Queueing an operation: reserve its place under the caller's limits, index it for listings,
then store the request.

Every step is safe to repeat (the reservation and the index entry are keyed by the operation
id, the request deduplicated by it), so they ride through a leader election before the client is
told to try again.
"""

import contextlib
from typing import Final

import nats.errors
from opentelemetry.trace import SpanKind

from contracts.events import OperationRequested
from services.common.retry import riding_through
from services.edge.context import EdgeContext
from services.edge.errors import unavailable_without_nats

# A client waits at most this long (plus one try) before it is told to try again.
RIDE_THROUGH_S: Final = 10.0


async def submit(context: EdgeContext, requested: OperationRequested) -> int:
    """Store ``requested`` once the caller's limits allow it; return its stream sequence.

    Over a limit: a coded error with a retry-after, and nothing is stored.
    """
    principal, operation_id = context.principal, requested.operation_id
    with (
        context.tracing.span(
            "submit",
            kind=SpanKind.PRODUCER,
            parent=context.traceparent,
            trace_id=requested.trace_id,
            operation_id=operation_id,
        ),
        unavailable_without_nats("queueing operations", connected=context.nats_connected),
    ):
        await riding_through(
            lambda: context.limits.reserve(principal, operation_id),
            what=f"reserving {operation_id}",
            budget_s=RIDE_THROUGH_S,
        )
        try:
            # Indexed before it is stored, so no stored request is ever missing from a listing
            # (an entry whose request never got stored has no view, and is not listed).
            await riding_through(
                lambda: context.listing.record(principal.tenant, principal.user, operation_id),
                what=f"indexing {operation_id}",
                budget_s=RIDE_THROUGH_S,
            )
            sequence = await riding_through(
                lambda: context.events.append(requested, msg_id=operation_id),
                what=f"queueing {operation_id}",
                budget_s=RIDE_THROUGH_S,
            )
        except BaseException:
            # Not queued, so it must not count against the caller.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await context.limits.release(principal, operation_id)
            raise
    context.metrics.count_submitted(requested)
    return sequence
