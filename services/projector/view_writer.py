"""Folding events into their views with as few round trips as it takes.

The events of one operation usually arrive together (requested, started and completed within a
few milliseconds), so they are folded together and the view is written once. The writer also
remembers the view and revision it last wrote for each unfinished operation, so the next write
needs no read: compare-and-set on that revision still guards it, and a refusal (another replica
wrote, the key expired) falls back to reading the key.
"""

import collections
from collections.abc import Awaitable, Callable
from typing import Final

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.events import OperationEvent, OperationRequested
from contracts.lifecycle import evolve
from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, encode_view
from services.common.event_log import EventLog
from services.common.jetstream_writes import store_value
from services.common.reply_inbox import ReplyInbox
from services.common.views import read_view

# Compare-and-set conflicts only happen while another writer touches the same key; a handful of
# retries always suffices in practice, and past it the event is handed back to be redelivered.
MAX_CAS_ATTEMPTS: Final = 20
# How long a view write waits for JetStream's acknowledgement (nats-py's own default).
WRITE_WAIT_S: Final = 5.0


class ViewConflictError(RuntimeError):
    """The view kept changing under us; the event should be redelivered."""


RequestLookup = Callable[[OperationEvent], Awaitable[tuple[int, OperationEvent] | None]]


def request_lookup(events: EventLog) -> RequestLookup:
    """Finds an operation's OperationRequested in the stream (with its sequence)."""

    async def lookup(event: OperationEvent) -> tuple[int, OperationEvent] | None:
        facts = await events.facts(event.tenant, event.operation_id)
        return facts.requested

    return lookup


# Views of unfinished operations kept in memory; a finished view is not kept (few events come
# after the end, and its result can be large).
REMEMBERED_VIEWS: Final = 10_000

Stored = tuple[int, OperationEvent]


def fold(view: OperationView | None, events: list[Stored]) -> OperationView | None:
    """``view`` with ``events`` (sequence, event) folded in, in stream order."""
    for sequence, event in sorted(events, key=lambda stored: stored[0]):
        view = evolve(view, event, sequence)
    return view


class ViewWriter:
    """Writes folded views to the bucket; one per projector process."""

    def __init__(
        self, kv: KeyValue, replies: ReplyInbox, find_request: RequestLookup | None = None
    ) -> None:
        self._kv = kv
        # Writes go through the connection's reply inbox (services/common/jetstream_writes.py:
        # a third less client CPU per write than nats-py's KeyValue).
        self._replies = replies
        self._find_request = find_request
        self._written: collections.OrderedDict[str, tuple[OperationView, int]] = (
            collections.OrderedDict()
        )

    async def apply(self, key: str, events: list[Stored]) -> OperationView | None:
        """Fold ``events`` (all of the operation stored under ``key``) into its view and store it.

        Raises ViewConflictError if the key kept changing under other writers, and NATS errors
        (a payload too large, a time-out) as they come; nothing is remembered then.
        """
        current, revision = await self._starting_point(key, events)
        view, _ = await self._fold_and_store(key, events, current, revision)
        return view

    async def repair(self, key: str, events: list[Stored]) -> bool:
        """Fold ``events`` into the view as stored (not as last written: that write may be one
        NATS lost) and store it if they change it; whether they did. A deleted or expired view
        (a marker) is left alone."""
        current, revision = await read_view(self._kv, key)
        if current is None and revision is not None:
            return False
        if current is None and await self._deleted(events[0][1]):
            # Its events were read before an asyncDelete purged them and its view.
            return False
        _, written = await self._fold_and_store(key, events, current, revision)
        return written

    async def _deleted(self, event: OperationEvent) -> bool:
        """Whether ``event``'s operation has no request in the stream any more (False when
        there is no way to look)."""
        return self._find_request is not None and await self._find_request(event) is None

    async def _fold_and_store(
        self,
        key: str,
        events: list[Stored],
        current: OperationView | None,
        revision: int | None,
    ) -> tuple[OperationView | None, bool]:
        """The view with ``events`` folded in, and whether it had to be written."""
        for _ in range(MAX_CAS_ATTEMPTS):
            updated = fold(current, events)
            if updated is not None and updated.created_at is None:
                updated = await self._with_request(updated, events[0][1])
                looked = self._find_request is not None
                if looked and updated.created_at is None and current is None:
                    # Its request is gone from the stream: the operation was deleted
                    # (asyncDelete) and this event came late. No view is made for it.
                    return None, False
            if updated is None or updated == current:
                return updated, False
            try:
                revision = await self._write(key, encode_view(updated), revision)
            except KeyWrongLastSequenceError:
                self._written.pop(key, None)
                current, revision = await read_view(self._kv, key)
                continue
            self._remember(key, updated, revision)
            return updated, True
        raise ViewConflictError(f"view {key} kept changing during {MAX_CAS_ATTEMPTS} attempts")

    async def _write(self, key: str, value: bytes, revision: int | None) -> int:
        """Store ``value`` if the key's last revision is ``revision`` (None: it has no view);
        the new revision, or KeyWrongLastSequenceError."""
        try:
            return await store_value(
                self._replies, VIEW_BUCKET, key, value, last=revision or 0, within_s=WRITE_WAIT_S
            )
        except KeyWrongLastSequenceError:
            if revision is not None:
                raise
            # A deleted or expired key keeps a marker, which nats-py's create writes over.
            return await self._kv.create(key, value)

    async def _starting_point(
        self, key: str, events: list[Stored]
    ) -> tuple[OperationView | None, int | None]:
        remembered = self._written.get(key)
        if remembered is not None:
            self._written.move_to_end(key)
            return remembered
        if any(isinstance(event, OperationRequested) for _, event in events):
            # Most likely a new operation: try creating its view; create() refuses if it exists.
            return None, None
        return await read_view(self._kv, key)

    async def _with_request(self, view: OperationView, event: OperationEvent) -> OperationView:
        """A view about to be stored without its request (events folded out of order) gets the
        request folded in too, from the stream, so readers never see a view without one."""
        if self._find_request is None:
            return view
        found = await self._find_request(event)
        if found is None:
            return view
        return evolve(view, found[1], found[0])

    def _remember(self, key: str, view: OperationView, revision: int) -> None:
        if view.status.is_terminal:
            self._written.pop(key, None)
            return
        self._written[key] = (view, revision)
        self._written.move_to_end(key)
        while len(self._written) > REMEMBERED_VIEWS:
            self._written.popitem(last=False)
