"""The status view in the KV bucket: reading one, and folding an event into one safely.

The projector writes views; the edge, its limits and its subscription hub read them. Writes
are compare-and-set on the key's revision, and the fold is order-free, so any number of
projector replicas and concurrent workers converge on the same view.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.events import OperationEvent
from contracts.lifecycle import evolve
from contracts.names import VIEW_BUCKET, view_key
from contracts.view import OperationView, decode_view, encode_view
from services.common.event_log import EventLog

# Compare-and-set conflicts only happen while another writer touches the same key; a handful of
# retries always suffices in practice, and past it the event is handed back to be redelivered.
MAX_CAS_ATTEMPTS: Final = 20


class ViewConflictError(RuntimeError):
    """The view kept changing under us; the event should be redelivered."""


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


RequestLookup = Callable[[OperationEvent], Awaitable[tuple[int, OperationEvent] | None]]


def request_lookup(events: EventLog) -> RequestLookup:
    """Finds an operation's OperationRequested in the stream (with its sequence)."""

    async def lookup(event: OperationEvent) -> tuple[int, OperationEvent] | None:
        facts = await events.facts(event.tenant, event.operation_id)
        return facts.requested

    return lookup


async def apply_event(
    kv: KeyValue,
    event: OperationEvent,
    sequence: int,
    find_request: RequestLookup | None = None,
) -> OperationView:
    """Fold ``event`` (stored at ``sequence``) into its view; safe under concurrent writers.

    Events of one operation may be folded out of order (replicas, concurrent workers). A view
    about to be stored without its request (no creation time, no action name) first gets the
    request folded in too, from the stream, so readers never see a view without one.
    """
    key = view_key(event.tenant, event.principal, event.operation_id)
    for _ in range(MAX_CAS_ATTEMPTS):
        current, revision = await read_view(kv, key)
        updated = evolve(current, event, sequence)
        if updated.created_at is None and find_request is not None:
            found = await find_request(event)
            if found is not None:
                updated = evolve(updated, found[1], found[0])
        if updated == current:
            return updated
        try:
            if revision is None:
                await kv.create(key, encode_view(updated))
            else:
                await kv.update(key, encode_view(updated), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return updated
    raise ViewConflictError(f"view {key} kept changing during {MAX_CAS_ATTEMPTS} attempts")
