"""Rebuilding the status view from the stream: the stream is the source of truth.

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


async def rebuild_views(js: JetStreamContext, kv: KeyValue) -> int:
    """Replay the stream and write every view it yields into ``kv``; return how many."""
    views = await replay_views(js)
    for key, view in views.items():
        await kv.put(key, encode_view(view))
    return len(views)
