"""The status view in the KV bucket: reading one, and folding an event into one safely.

The projector writes views; the edge, its limits and its subscription hub read them. Writes
are compare-and-set on the key's revision, and the fold is order-free, so any number of
projector replicas and concurrent workers converge on the same view.
"""

from collections.abc import Awaitable, Callable
from typing import Final

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.events import OperationEvent
from contracts.lifecycle import evolve
from contracts.names import view_key
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
