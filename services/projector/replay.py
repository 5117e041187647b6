"""Rebuilding the status view (and the listing's index) from the stream: the stream is the source
of truth.

Replay folds exactly what the projector folds: every event the projector would admit, in stream
order, through the same ``evolve``. Messages it would set aside are skipped.
"""

import logging

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from contracts.lifecycle import evolve
from contracts.names import ALL_EVENTS, STREAM, view_key
from contracts.view import OperationView, encode_view
from services.common.listing import Listing
from services.common.poison import Unusable, admit

log = logging.getLogger(__name__)

REPLAY_READ_TIMEOUT_S = 10.0


async def replay_views(js: JetStreamContext) -> dict[str, OperationView]:
    """Fold the whole stream, from its first event, into views keyed like the bucket."""
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        return {}
    last_sequence = info.state.last_seq
    views: dict[str, OperationView] = {}
    if info.state.messages == 0:
        return views
    subscription = await js.subscribe(
        ALL_EVENTS, stream=STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            msg = await subscription.next_msg(timeout=REPLAY_READ_TIMEOUT_S)
            sequence = msg.metadata.sequence.stream
            event = admit(msg.subject, msg.data)
            if isinstance(event, Unusable):
                log.warning("replay: skipped message %d (%s)", sequence, event.reason)
            else:
                key = view_key(event.tenant, event.principal, event.operation_id)
                views[key] = evolve(views.get(key), event, sequence)
            if sequence >= last_sequence:
                return views
    finally:
        await subscription.unsubscribe()


async def rebuild_views(js: JetStreamContext, kv: KeyValue, listing: Listing | None = None) -> int:
    """Replay the stream and write every view it yields into ``kv``; return how many.

    With ``listing``, also index every operation the listing lacks, in stream order (the order
    they were queued), so ``asyncRequests`` lists what the rebuilt view holds. Operations already
    indexed keep their place.
    """
    views = await replay_views(js)
    for key, view in views.items():
        await kv.put(key, encode_view(view))
    if listing is not None:
        for view in views.values():
            if await listing.position(view.tenant, view.principal, view.operation_id) is None:
                await listing.record(view.tenant, view.principal, view.operation_id)
    return len(views)
