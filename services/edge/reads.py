"""Reading a principal's operations: from the view, or fresh from the stream when the view is
not final (the projector may be behind, or down)."""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Final

from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET, view_key
from contracts.view import OperationView, TaskStatus, decode_view
from services.common.event_log import EventLog
from services.common.identity import Principal
from services.common.listing import Listing
from services.common.retry import riding_through
from services.common.views import read_view
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
    if view is None and caught_up is not None and _expired(caught_up, now, retention):
        return None
    return caught_up


_VIEW_STREAM: Final = f"KV_{VIEW_BUCKET}"
_VIEW_PREFIX: Final = f"$KV.{VIEW_BUCKET}."
# What an id asyncgate issues looks like (a lower-case UUID); anything else is in no list, and
# never becomes part of a key.
_OPERATION_ID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


class NotInListError(Exception):
    """The ``after`` of a listing is not an operation in that list."""


# Status-filtered pages read at least this many entries a round, so a rare status is found in a
# few rounds rather than one entry at a time.
MIN_FILTERED_ROUND = 100
# At most this many keys are asked for at once.
MAX_ROUND = 250


async def list_operations(
    events: EventLog,
    kv: KeyValue,
    listing: Listing,
    principal: Principal,
    *,
    status: TaskStatus | None,
    first: int,
    after: str | None,
    now: datetime,
    retention: timedelta,
) -> list[OperationView]:
    """A page of the principal's retained operations, newest first (in the order queued).

    ``status`` keeps only operations in that state; ``after`` starts below that operation,
    which must be in the list (NotInListError otherwise). Reads cost the page: the index keys
    below a position, then their views, a round at a time; nothing older than the page is read
    (with ``status``, only as far back as the matches of the page).

    Views that are not final are caught up from the stream, as ``find_operation`` does, so a
    listing never shows an operation as running that ``asyncResult`` already shows finished.
    """
    tenant, user = principal.tenant, principal.user
    if after is None:
        below = await listing.newest(tenant, user) + 1
    else:
        below = await _cursor_position(
            events, kv, listing, principal, after, status=status, now=now, retention=retention
        )
    page: list[OperationView] = []
    while len(page) < first and below > 1:
        wanted = first - len(page)
        count = min(MAX_ROUND, wanted if status is None else max(wanted, MIN_FILTERED_ROUND))
        entries = await listing.below(tenant, user, below, count)
        below = max(1, below - count)
        if not entries:
            # A stretch of gaps: past the oldest entry left, the list has ended.
            oldest = await listing.oldest(tenant, user)
            if oldest is None or oldest >= below:
                break
            continue
        views = await _views(events, listing, principal, entries, now=now, retention=retention)
        page += [view for view in views if status is None or view.status == status]
    return page[:first]


async def _cursor_position(
    events: EventLog,
    kv: KeyValue,
    listing: Listing,
    principal: Principal,
    after: str,
    *,
    status: TaskStatus | None,
    now: datetime,
    retention: timedelta,
) -> int:
    """Where a page after ``after`` starts: its ordinal, if it is in the list as filtered.

    The ordinal is the one its request carries, folded into its view (or, while the projector
    is behind, read from the request in the stream). An operation queued before requests
    carried it has none: its ordinal is still in the operation id -> ordinal key it was indexed
    with then, which rebuilding writes for such operations too. Those keys expire with the
    operations, after which every listed operation carries its ordinal.
    """
    if not _OPERATION_ID.fullmatch(after):
        raise NotInListError(after)
    cursor = await find_operation(events, kv, principal, after, now=now, retention=retention)
    if cursor is None or (status is not None and cursor.status != status):
        raise NotInListError(after)
    position = cursor.listing_ordinal
    if position is None:
        position = await listing.position(principal.tenant, principal.user, after)
    if position is None:
        raise NotInListError(after)
    return position


async def _views(
    events: EventLog,
    listing: Listing,
    principal: Principal,
    entries: list[tuple[int, str]],
    *,
    now: datetime,
    retention: timedelta,
) -> list[OperationView]:
    """The operations ``entries`` (ordinal, operation id) name, in that order, caught up.

    Left out: an operation neither the view nor the stream knows (an entry whose request was
    never stored), one that has expired, and an entry whose ordinal is not the one its
    operation's request carries (a second entry of one operation: a retried write). An
    operation with no view yet (its request just queued, its view not written) is read from
    the stream, as ``find_operation`` reads it.
    """
    found = await listing.reads.last(
        _VIEW_STREAM,
        [_VIEW_PREFIX + view_key(principal.tenant, principal.user, op) for _, op in entries],
    )
    gate = asyncio.Semaphore(MAX_CONCURRENT_CATCH_UPS)

    async def current(operation_id: str, hit: bytes | None) -> OperationView | None:
        view = None if hit is None else decode_view(hit)
        if view is not None and view.status.is_terminal:
            return view
        async with gate:
            caught_up = await catch_up(events, principal, operation_id, view)
        if view is None and caught_up is not None and _expired(caught_up, now, retention):
            return None
        return caught_up or view

    views = await asyncio.gather(
        *(current(operation_id, hit) for (_, operation_id), hit in zip(entries, found, strict=True))
    )
    return [
        view
        for (ordinal, _), view in zip(entries, views, strict=True)
        if view is not None and view.listing_ordinal in (None, ordinal)
    ]


def _expired(view: OperationView, now: datetime, retention: timedelta) -> bool:
    """Whether an operation read from the stream alone is older than views are kept (the
    stream outlives the view: an operation whose view has expired stays gone)."""
    return view.created_at is None or view.created_at + retention < now


# How long a subscription's first read may take, retries included, before it ends unavailable.
FIRST_READ_BUDGET_S: Final = 12.0

# Open operations per user are bounded by the per-user limit (10 by default); this bounds the
# concurrent stream reads when that limit is off.
MAX_CONCURRENT_CATCH_UPS = 32


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
        # Watching starts before the first read, so no change can fall between the two. A
        # subscription lives long: a read JetStream answers late (a thousand subscriptions
        # opening at once on a busy machine) is tried again rather than ending it.
        current = await riding_through(
            lambda: find_operation(
                events, kv, principal, operation_id, now=now, retention=retention
            ),
            what=f"following {operation_id}",
            budget_s=FIRST_READ_BUDGET_S,
        )
        yield current
        while current is not None and not current.status.is_terminal:
            update = await changes.next()
            if update is not None and update.last_sequence <= current.last_sequence:
                continue
            current = update
            yield current
