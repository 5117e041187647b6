"""Reading a principal's operations: from the view, or from the stream while the view catches up."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.events import OperationRequested
from contracts.lifecycle import evolve
from contracts.names import principal_view_keys, view_key
from contracts.view import OperationView, decode_view
from services.common.events import last_event
from services.common.identity import Principal
from services.edge.watch import ViewWatchHub
from services.projector.store import read_view

# A listing's watcher is gone as soon as it is read; let the server drop its consumer quickly.
LISTING_INACTIVE_THRESHOLD_S = 5.0
LISTING_TIMEOUT_S = 5.0


async def view_from_stream(
    js: JetStreamContext, principal: Principal, operation_id: str
) -> OperationView | None:
    """The operation's state straight from the stream (read-your-writes before projection).

    Its newest event and its request fold into what the view will say, in at most two direct
    gets; this path is only taken while the projector has not written the view yet.
    """
    newest = await last_event(js, principal.tenant, operation_id, "*")
    if newest is None:
        return None
    events = [newest]
    if not isinstance(newest[1], OperationRequested):
        requested = await last_event(js, principal.tenant, operation_id, "requested")
        if requested is None:
            return None
        events.insert(0, requested)
    view: OperationView | None = None
    for sequence, event in events:
        if event.principal != principal.user:
            return None
        view = evolve(view, event, sequence)
    return view


async def find_operation(
    js: JetStreamContext,
    kv: KeyValue,
    principal: Principal,
    operation_id: str,
    *,
    now: datetime,
    retention: timedelta,
) -> OperationView | None:
    """The principal's operation, or None if it is not theirs, never existed or has expired."""
    view, _ = await read_view(kv, view_key(principal.tenant, principal.user, operation_id))
    if view is not None:
        return view
    view = await view_from_stream(js, principal, operation_id)
    # The stream outlives the view: an operation whose view has expired stays gone.
    if view is None or view.created_at is None or view.created_at + retention < now:
        return None
    return view


async def list_operations(kv: KeyValue, principal: Principal) -> list[OperationView]:
    """Every retained operation of the principal, newest first."""
    watcher = await kv.watch(
        principal_view_keys(principal.tenant, principal.user),
        ignore_deletes=True,
        inactive_threshold=LISTING_INACTIVE_THRESHOLD_S,
    )
    views: list[OperationView] = []
    try:
        async with asyncio.timeout(LISTING_TIMEOUT_S):
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    views.append(decode_view(entry.value))
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated
    views.sort(key=_newest_first_key, reverse=True)
    return views


_NOT_YET_KNOWN = datetime.min.replace(tzinfo=UTC)


def _newest_first_key(view: OperationView) -> tuple[datetime, str]:
    return view.created_at or _NOT_YET_KNOWN, view.operation_id


async def follow_operation(
    hub: ViewWatchHub,
    js: JetStreamContext,
    kv: KeyValue,
    principal: Principal,
    operation_id: str,
    *,
    now: datetime,
    retention: timedelta,
) -> AsyncIterator[OperationView | None]:
    """The operation's current state, then every change, ending with its final state.

    Yields None once (and ends) if the principal has no such operation, or when it is removed.
    """
    async with hub.watching(view_key(principal.tenant, principal.user, operation_id)) as changes:
        # Watching starts before the first read, so no change can fall between the two.
        current = await find_operation(
            js, kv, principal, operation_id, now=now, retention=retention
        )
        yield current
        while current is not None and not current.status.is_terminal:
            update = await changes.next()
            if update is not None and update.last_sequence <= current.last_sequence:
                continue
            current = update
            yield current
