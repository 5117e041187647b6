"""Writing folded views to the KV bucket with compare-and-set, and rebuilding them by replay."""

import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from contracts.events import OperationEvent, decode_event
from contracts.lifecycle import evolve
from contracts.names import ALL_EVENTS, STREAM, view_key
from contracts.view import OperationView, decode_view, encode_view
from services.common.events import last_event

log = logging.getLogger(__name__)

# Compare-and-set conflicts only happen while another writer touches the same key; a handful of
# retries always suffices in practice, and past it the event is handed back to be redelivered.
MAX_CAS_ATTEMPTS = 20


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


RequestLookup = Callable[[OperationEvent], Awaitable[tuple[int, OperationEvent] | None]]


def request_lookup(js: JetStreamContext) -> RequestLookup:
    """Finds an operation's OperationRequested in the stream (with its sequence)."""

    async def lookup(event: OperationEvent) -> tuple[int, OperationEvent] | None:
        return await last_event(js, event.tenant, event.operation_id, "requested")

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
            msg = await subscription.next_msg(timeout=10)
            sequence = msg.metadata.sequence.stream
            try:
                event = decode_event(msg.data)
            except ValueError:
                log.warning("replay: event at sequence %d is not readable; skipped", sequence)
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
