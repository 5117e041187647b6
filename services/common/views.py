"""Reading the status view in the KV bucket: one key, or every key matching a filter.

The projector writes views (services/projector/view_writer.py); the edge, its listings and its
subscription hub read them.
"""

import asyncio
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, decode_view


async def read_view(kv: KeyValue, key: str) -> tuple[OperationView | None, int | None]:
    """The stored view and its revision, or (None, None) when there is none."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, None
    if entry.value is None:
        # A delete or expiry marker: the key exists as a revision with no view.
        return None, entry.revision
    return decode_view(entry.value), entry.revision


_KEY_PREFIX: Final = f"$KV.{VIEW_BUCKET}."
_REMOVED: Final = frozenset({"DEL", "PURGE"})
# A listing's consumer is gone as soon as it is read; let the server drop it quickly.
LISTING_INACTIVE_THRESHOLD_S: Final = 5.0
LISTING_READ_TIMEOUT_S: Final = 5.0


async def list_views(js: JetStreamContext, key_filter: str) -> list[OperationView]:
    """The current view of every key matching ``key_filter`` (wildcards allowed).

    One ordered consumer, last value per key. The end is told by the server's own counts (what
    it has delivered plus what is pending when asked), not by nats-py's watcher, whose "initial
    values done" marker can come before values already delivered: under load it ended
    listings empty.
    """
    subscription = await js.subscribe(
        _KEY_PREFIX + key_filter,
        stream=f"KV_{VIEW_BUCKET}",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=LISTING_INACTIVE_THRESHOLD_S,
    )
    try:
        info = await subscription.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        expected = (info.num_pending or 0) + (delivered or 0)
        latest: dict[str, tuple[int, bytes | None]] = {}
        async with asyncio.timeout(LISTING_READ_TIMEOUT_S):
            for _ in range(expected):
                msg = await subscription.next_msg(timeout=LISTING_READ_TIMEOUT_S)
                removed = (msg.headers or {}).get("KV-Operation") in _REMOVED
                sequence = msg.metadata.sequence.stream
                if msg.subject not in latest or latest[msg.subject][0] < sequence:
                    latest[msg.subject] = (sequence, None if removed else msg.data)
    finally:
        await subscription.unsubscribe()
    return [decode_view(data) for _, data in latest.values() if data]
