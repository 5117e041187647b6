"""Queueing an operation: reserve its place under the caller's limits, number it for listings,
then store its listing entry and the request (carrying its number) at once. (Submits of one
caller that number at the same moment share the increment and the entry:
``services/common/listing.py``.)

Every step rides through a leader election before the client is told to try again, and each is
safe to repeat: the reservation is keyed by the operation id, the request deduplicated by it,
the entry is one key written with one value, and a repeated increment only leaves a gap.

The entry is published as soon as the number is known, just before the request, and its
acknowledgement awaited after the request's (one round trip for both rather than one each),
before the client is answered: a listing made after the answer shows the operation. What can fail:

- the increment: nothing is stored; a lost answer leaves an unused ordinal, a gap readers skip.
- the request (whatever became of the entry): the client is told to try again and the
  reservation is released, as before; an entry stored without its request names an operation
  with no view, which no listing shows.
- the entry alone: the request is stored and will run, so the entry is written again, riding
  through as every step does. Should that fail too, the client is still answered (the operation
  is queued; an error would invite a second submit of it) and the error is logged: ``asyncgate
  ops replay`` indexes it at the ordinal its request carries. Only then is a stored request
  missing from a listing, until that replay.
"""

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import nats.errors
from msgspec.structs import replace
from opentelemetry.trace import SpanKind

from contracts.events import OperationRequested
from services.common.retry import riding_through
from services.edge.context import EdgeContext
from services.edge.errors import unavailable_without_nats

log = logging.getLogger(__name__)

# A client waits at most this long (plus one try) before it is told to try again.
RIDE_THROUGH_S: Final = 10.0


async def submit(context: EdgeContext, requested: OperationRequested) -> int:
    """Store ``requested`` once the caller's limits allow it; return its stream sequence.

    Over a limit: a coded error with a retry-after, and nothing is stored.
    """
    principal, operation_id = context.principal, requested.operation_id
    tenant, user, listing = principal.tenant, principal.user, context.listing
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
        if context.limits.policy.enabled:  # else nothing to reserve (a ride-through costs 13 us)
            await riding_through(
                lambda: context.limits.reserve(principal, operation_id),
                what=f"reserving {operation_id}",
                budget_s=RIDE_THROUGH_S,
            )
        try:
            taken = await riding_through(
                lambda: listing.number(tenant, user, operation_id),
                what=f"numbering {operation_id}",
                budget_s=RIDE_THROUGH_S,
            )
            ordinal = taken.ordinal
            numbered = replace(requested, listing_ordinal=ordinal)
            sequence = await riding_through(
                lambda: context.events.append(numbered, msg_id=operation_id),
                what=f"queueing {operation_id}",
                budget_s=RIDE_THROUGH_S,
            )
            indexed = await _succeeded(taken.stored)
        except BaseException:
            # Not queued, so it must not count against the caller.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await context.limits.release(principal, operation_id)
            raise
        if not indexed:
            await _index_stored(context, numbered, ordinal)
    context.metrics.count_submitted(numbered)
    return sequence


async def _succeeded(step: Callable[[], Awaitable[None]]) -> bool:
    """Whether ``step()`` succeeded (False: NATS refused it, or did not answer in time)."""
    try:
        await step()
    except (nats.errors.Error, TimeoutError):
        return False
    return True


async def _index_stored(context: EdgeContext, requested: OperationRequested, ordinal: int) -> None:
    """Write the entry of a request already stored; log (not raise) if that fails too."""
    principal, operation_id = context.principal, requested.operation_id
    try:
        await riding_through(
            lambda: context.listing.write_entry(
                principal.tenant, principal.user, ordinal, operation_id
            ),
            what=f"indexing {operation_id}",
            budget_s=RIDE_THROUGH_S,
        )
    except (nats.errors.Error, TimeoutError) as error:
        log.error(
            "%s is queued but not indexed at %d (%s): asyncgate ops replay indexes it",
            operation_id,
            ordinal,
            str(error) or type(error).__name__,
        )
