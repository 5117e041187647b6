"""Reading the status view in the KV bucket: one key, or every key matching a filter.

The projector writes views (services/projector/view_writer.py); the edge, its listings and its
subscription hub read them.
"""

from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, decode_view
from services.common.jetstream import stored_at
from services.common.stream_reads import read_stream


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
    has a revision to compare-and-set against). ``within_s`` bounds the whole read."""
    latest: dict[str, tuple[bytes | None, int]] = {}
    prefix = f"$KV.{bucket}."
    prefix_length = len(prefix)

    def keep(msg: Msg) -> None:
        removed = msg.headers is not None and msg.headers.get("KV-Operation") in _REMOVED
        sequence, _ = stored_at(msg.reply)
        key = msg.subject[prefix_length:]
        if key not in latest or latest[key][1] < sequence:
            latest[key] = (None if removed else msg.data, sequence)

    await read_stream(
        js, f"KV_{bucket}", prefix + key_filter, keep, last_per_subject=True, within_s=within_s
    )
    return latest
