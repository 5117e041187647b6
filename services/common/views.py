"""Reading the status view in the KV bucket: one key, or every key matching a filter.

The projector writes views (services/projector/view_writer.py); the edge, its listings and its
subscription hub read them.
"""

import asyncio
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, decode_view
from services.common.jetstream import stored_at


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


_REMOVED: Final = frozenset({"DEL", "PURGE"})
# A listing's consumer is gone as soon as it is read; let the server drop it quickly.
LISTING_INACTIVE_THRESHOLD_S: Final = 5.0
LISTING_READ_TIMEOUT_S: Final = 5.0


async def list_views(js: JetStreamContext, key_filter: str) -> list[OperationView]:
    """The current view of every key matching ``key_filter`` (wildcards allowed)."""
    stored = await read_bucket(js, key_filter)
    return [decode_view(data) for data, _ in stored.values() if data]


async def read_bucket(
    js: JetStreamContext,
    key_filter: str,
    *,
    bucket: str = VIEW_BUCKET,
    within_s: float | None = LISTING_READ_TIMEOUT_S,
) -> dict[str, tuple[bytes | None, int]]:
    """(value, revision) of every key of ``bucket`` (the views unless told) matching
    ``key_filter``; None for a key whose newest revision is a delete or purge marker (it still
    has a revision to compare-and-set against).

    One ordered consumer, last value per key. The end is told by the server's own counts (what
    it has delivered plus what is pending when asked), not by nats-py's watcher, whose "initial
    values done" marker can come before values already delivered: under load it ended
    listings empty. ``within_s`` bounds the whole read (None: only each message's wait).
    """
    latest: dict[str, tuple[bytes | None, int]] = {}
    prefix = f"$KV.{bucket}."
    prefix_length = len(prefix)
    received = 0
    everything = asyncio.get_running_loop().create_future()
    expected: int | None = None

    async def on_message(msg: Msg) -> None:
        # A callback, not next_msg(): nats-py's next_msg costs a task, a uuid and a wait_for
        # per message, and a whole bucket can be read.
        nonlocal received
        received += 1
        removed = msg.headers is not None and msg.headers.get("KV-Operation") in _REMOVED
        sequence, _ = stored_at(msg.reply)
        key = msg.subject[prefix_length:]
        if key not in latest or latest[key][1] < sequence:
            latest[key] = (None if removed else msg.data, sequence)
        if received == expected and not everything.done():
            everything.set_result(None)

    subscription = await js.subscribe(
        prefix + key_filter,
        stream=f"KV_{bucket}",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=LISTING_INACTIVE_THRESHOLD_S,
        cb=on_message,
    )
    try:
        info = await subscription.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        expected = (info.num_pending or 0) + (delivered or 0)
        async with asyncio.timeout(within_s):
            while received < expected:
                seen = received
                await asyncio.wait([everything], timeout=LISTING_READ_TIMEOUT_S)
                if received == seen < expected:
                    raise TimeoutError(f"{bucket}: nothing for {LISTING_READ_TIMEOUT_S:g} s")
    finally:
        await subscription.unsubscribe()
    return latest
