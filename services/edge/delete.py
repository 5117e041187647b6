"""Deleting an operation (asyncDelete): its events, its view and its listing entry, gone for
every reader and for every replay.

Order matters, so that nothing brings it back:

1. An unfinished operation is cancelled first (``cancel_operation``), and the edge waits until
   its ending is stored. Purging before that would let the executor's late ending land in the
   stream after the purge, an event of the operation that outlives it. If it does not end in
   time (no executor is there to end a running one), nothing is removed and the caller is told
   to try again.
2. The edge waits, briefly, for the projector to fold the ending, so the per-user count of
   active operations is released as for any ending (past the wait, the limits forget it by
   themselves once its request is gone from the stream), and so that no write of its view is
   still to come when it is removed: the view shows the ending, or, where there is no view (a
   request the projector holds back to merge with its ending, or one it set aside), the
   projector has acknowledged every event of the operation. (A projector holding the request
   folds it from memory, so a view written after the purge would bring the operation back. One
   still folding it past this wait, lagging, looks the request up in the stream first and makes
   no view once it is gone: services/projector/handlers.py, LATE_FOLD_S.)
3. Its events are purged from both event streams, its request first (a purge filtered on the
   operation's subjects), so a replay or a rebuild does not see it.
4. Then its result object, if its result was too large for its events
   (services/common/results.py): before the view, so a delete retried after a failure still
   finds which object it was. Then its listing entry and its view are removed. The view goes
   last: a projector folding an event meanwhile finds no request in the stream and stores no
   view for it
   (services/projector/view_writer.py), and neither does a replay.

Its idempotency record is left to expire with the retention window: the key stays spent, so a
client retrying the submit that queued it does not queue it again. Such a retry is told to try
again until the claim is older than a submit can take, and then queues a new operation.
"""

import asyncio
import contextlib
import functools
import time
from typing import Final

from nats.js.errors import NotFoundError

from contracts.errors import ErrorCode
from contracts.names import (
    EVENT_STREAMS,
    PROJECTOR_DURABLE,
    STREAM,
    VIEW_BUCKET,
    operation_subjects,
    view_key,
)
from services.common.retry import riding_through
from services.common.views import read_view
from services.edge.cancel import cancel_operation
from services.edge.context import EdgeContext
from services.edge.errors import coded_error
from services.edge.submit import RIDE_THROUGH_S as RIDE

# How long a running operation may take to end once cancelled (its executor stops it within a
# second), and how long the projector may take to fold the ending, before the delete gives up.
ENDING_WAIT_S: Final = 5.0
FOLDED_WAIT_S: Final = 2.0
_POLL_S: Final = 0.05
_VIEW_STREAM: Final = f"KV_{VIEW_BUCKET}"
_VIEW_PREFIX: Final = f"$KV.{VIEW_BUCKET}."


async def delete_operation(context: EdgeContext, operation_id: str) -> bool | None:
    """Delete the caller's operation, cancelling it first if unfinished; whether it had to be
    cancelled. None if the caller has no operation by that id (another principal's, or one
    deleted already, is not there either)."""
    view = await context.find_operation(operation_id)
    if view is None:
        return None
    was_unfinished = not view.status.is_terminal
    if was_unfinished:
        await cancel_operation(context, operation_id)
        await _ended(context, operation_id)
        # It ended just now, perhaps with a result stored apart: read what it refers to.
        view = await context.find_operation(operation_id) or view
    principal = context.principal
    key = view_key(principal.tenant, principal.user, operation_id)
    await _folded(context, key, view.last_sequence)
    js = context.events.js
    subjects = operation_subjects(principal.tenant, operation_id)
    for stream in EVENT_STREAMS:
        await riding_through(
            functools.partial(js.purge_stream, stream, subject=subjects),
            what=f"purging {operation_id} from {stream}",
            budget_s=RIDE,
        )
    if view.response_ref is not None:
        name = view.response_ref.name
        await riding_through(
            lambda: context.results.delete(name), what=f"removing {name}", budget_s=RIDE
        )
    await riding_through(
        lambda: context.listing.remove(
            principal.tenant, principal.user, operation_id, view.listing_ordinal
        ),
        what=f"unlisting {operation_id}",
        budget_s=RIDE,
    )
    await riding_through(
        lambda: _purge_view(context, key), what=f"removing {operation_id}", budget_s=RIDE
    )
    return was_unfinished


async def _ended(context: EdgeContext, operation_id: str) -> None:
    """Wait until the operation's ending is stored; SERVICE_UNAVAILABLE if it is not in time."""
    deadline = time.monotonic() + ENDING_WAIT_S
    tenant = context.principal.tenant
    while True:
        facts = await riding_through(
            lambda: context.events.facts(tenant, operation_id),
            what=f"reading {operation_id}",
            budget_s=RIDE,
        )
        if facts.terminal is not None or facts.requested is None:
            return
        if time.monotonic() > deadline:
            raise coded_error(
                "the operation is being cancelled and is deleted once it has ended; try again",
                ErrorCode.SERVICE_UNAVAILABLE,
                retryAfter=1,
            )
        await asyncio.sleep(_POLL_S)


async def _folded(context: EdgeContext, key: str, last_sequence: int) -> None:
    """Wait a little for the projector to fold the operation's events, up to ``last_sequence``:
    its view is final, or it has none and the projector has acknowledged them all."""
    deadline = time.monotonic() + FOLDED_WAIT_S
    while time.monotonic() < deadline:
        view, _ = await read_view(context.kv, key)
        if view is not None and view.status.is_terminal:
            return
        if view is None and await _projector_past(context, last_sequence):
            return
        await asyncio.sleep(_POLL_S)


async def _projector_past(context: EdgeContext, sequence: int) -> bool:
    """Whether the projector has acknowledged every event up to ``sequence`` (True where no
    projector consumer exists: nothing will fold them)."""
    try:
        info = await context.events.js.consumer_info(STREAM, PROJECTOR_DURABLE)
    except NotFoundError:
        return True
    return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= sequence


async def _purge_view(context: EdgeContext, key: str) -> None:
    """Remove every revision of the view (a stream purge: the edge may remove views, never
    write one)."""
    with contextlib.suppress(NotFoundError):  # no bucket, no view
        await context.events.js.purge_stream(_VIEW_STREAM, subject=_VIEW_PREFIX + key)
