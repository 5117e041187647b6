"""Reading a principal's operations: from the view, or fresh from the stream when the view is
not final (the projector may be behind, or down)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from nats.js.kv import KeyValue

from contracts.names import principal_view_keys, view_key
from contracts.view import OperationView
from services.common.event_log import EventLog
from services.common.identity import Principal
from services.common.views import list_views, read_view
from services.edge.watch import ViewWatchHub


async def catch_up(
    events: EventLog, principal: Principal, operation_id: str, view: OperationView | None
) -> OperationView | None:
    """``view`` with what the stream already holds folded in, as the projector will fold it.

    One batched direct get (two for an operation that was started more than once), so a
    finished operation reads finished at once and every field equals what the projector will
    store. None if the stream has no request of the principal's by that id.
    """
    facts = await events.facts(principal.tenant, operation_id, with_first_start=True)
    if facts.requested is None and view is None:
        return None
    if any(event.principal != principal.user for _, event in facts.events()):
        return None
    return facts.view(view)


async def find_operation(
    events: EventLog,
    kv: KeyValue,
    principal: Principal,
    operation_id: str,
    *,
    now: datetime,
    retention: timedelta,
) -> OperationView | None:
    """The principal's operation, or None if it is not theirs, never existed or has expired."""
    view, _ = await read_view(kv, view_key(principal.tenant, principal.user, operation_id))
    if view is not None and view.status.is_terminal:
        return view
    caught_up = await catch_up(events, principal, operation_id, view)
    # The stream outlives the view: an operation whose view has expired stays gone.
    expired = caught_up is not None and (
        caught_up.created_at is None or caught_up.created_at + retention < now
    )
    return None if view is None and expired else caught_up


async def list_operations(events: EventLog, principal: Principal) -> list[OperationView]:
    """Every retained operation of the principal, newest first.

    Views that are not final are caught up from the stream, as ``find_operation`` does, so a
    listing never shows an operation as running that ``asyncResult`` already shows finished.
    """
    views = await list_views(events.js, principal_view_keys(principal.tenant, principal.user))
    views = await _caught_up(events, principal, views)
    views.sort(key=_newest_first_key, reverse=True)
    return views


# Open operations per user are bounded by the per-user limit (10 by default); this bounds the
# concurrent stream reads when that limit is off.
MAX_CONCURRENT_CATCH_UPS = 32


async def _caught_up(
    events: EventLog, principal: Principal, views: list[OperationView]
) -> list[OperationView]:
    gate = asyncio.Semaphore(MAX_CONCURRENT_CATCH_UPS)

    async def fresh(view: OperationView) -> OperationView:
        if view.status.is_terminal:
            return view
        async with gate:
            return await catch_up(events, principal, view.operation_id, view) or view

    return list(await asyncio.gather(*(fresh(view) for view in views)))


_NOT_YET_KNOWN = datetime.min.replace(tzinfo=UTC)


def _newest_first_key(view: OperationView) -> tuple[datetime, str]:
    return view.created_at or _NOT_YET_KNOWN, view.operation_id


async def follow_operation(
    hub: ViewWatchHub,
    events: EventLog,
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
            events, kv, principal, operation_id, now=now, retention=retention
        )
        yield current
        while current is not None and not current.status.is_terminal:
            update = await changes.next()
            if update is not None and update.last_sequence <= current.last_sequence:
                continue
            current = update
            yield current
