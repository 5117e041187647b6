"""Each principal's operations in the order they were queued, readable newest first a page at a
time: what ``asyncRequests`` lists, at the cost of the page rather than of everything retained.

When an operation is queued the edge takes the principal's next ordinal from a JetStream counter
(one atomic increment, no compare-and-set, however many clients submit at once), writes one small
key to the listing bucket, ordinal -> operation id, and stores the ordinal in the request itself
(``OperationRequested.listing_ordinal``, folded into the view). Submits of one principal that ask
at the same moment share the increment (``shared_increments.py``) and its entry: one key at the
range's first ordinal holds their ids, space-separated, in ordinal order (at most ``MAX_BLOCK``;
a lone submit's entry is the same thing with one id). A page is then the keys just below an
ordinal (the counter's value for the first page, the ``after`` operation's ordinal, read from its
view, for the next), and the ``MAX_BLOCK - 1`` below those, whose ranges may reach into the page,
all fetched at once, literal keys only.

The bucket expires entries as the view bucket does, counted from when the operation was queued,
so an entry never outlives its view. Ordinals are never reused: a lost increment or a submit that
failed after it leaves a gap, which readers skip. An entry whose ordinal is not the one in its
operation's view (a retried write under a fresh ordinal) is skipped too, so an operation is
listed once. Rebuilding (``services/projector/replay.py``) indexes every operation that has a
view and no entry: at the ordinal its request carries, or at a fresh one for requests stored
before they carried one.

Operations queued before the request carried its ordinal were indexed with a second key as well,
operation id -> ordinal (``listing_position_key``); ``position`` still reads it, so those stay
usable as ``after``, and rebuilding still writes it for them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from contracts.names import (
    LISTING_BUCKET,
    LISTING_COUNTER_STREAM,
    listing_counter_subject,
    listing_entry_key,
    listing_position_key,
)
from services.common.bulk_publish import Outgoing, publish_all
from services.common.direct_gets import REQUEST_TIMEOUT_S, DirectReads
from services.common.shared_increments import SharedIncrements
from services.common.views import read_bucket

# Rebuilding reads this many principals' counters at once (each answered within the time-out).
_COUNTERS_AT_ONCE: Final = 1000
# Ordinals one entry may index: submits sharing an increment beyond it take the next one. A
# page's read looks this far below its ordinals for an entry whose range reaches into it.
MAX_BLOCK: Final = 16
# Stands in a shared entry for an operation that was deleted (the others keep their ordinals).
_REMOVED: Final = "-"
_BUCKET_STREAM: Final = f"KV_{LISTING_BUCKET}"
# JetStream's error code for a write whose expected last sequence is not the subject's.
_WRONG_LAST_SEQUENCE: Final = 10071
_MAX_REWRITES: Final = 10
_KEY_PREFIX: Final = f"$KV.{LISTING_BUCKET}."


def _acknowledged(reply: Msg) -> None:
    """Raise what a publish's answer reports, if it is not a plain acknowledgement."""
    if reply.headers and reply.headers.get("Status") == "503":
        raise NoStreamResponseError  # no stream took it: a leader election, most likely
    if b'"error"' in reply.data:
        APIError.from_error(json.loads(reply.data)["error"])  # raises the error's own class


@dataclass(frozen=True)
class Unindexed:
    """An operation to index while rebuilding, with the ordinal its request carries (None for
    a request stored before requests carried one)."""

    tenant: str
    principal: str
    operation_id: str
    ordinal: int | None


@dataclass(frozen=True)
class Listing:
    """The listing bucket and the ordinal counters, over one NATS connection."""

    nc: NatsClient
    js: JetStreamContext
    reads: DirectReads
    ordinals: SharedIncrements[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Frozen: set once, here.
        shared = SharedIncrements[str](self._increment, at_most=MAX_BLOCK)
        object.__setattr__(self, "ordinals", shared)

    @classmethod
    def over(cls, nc: NatsClient) -> Listing:
        """A listing reading and writing over ``nc`` (close it with ``reads.close()``)."""
        return cls(nc, nc.jetstream(), DirectReads(nc))

    async def number(self, tenant: str, principal: str, operation_id: str) -> Numbered:
        """The principal's next ordinal for ``operation_id``, with the write of its entry under
        way: an atomic increment of the principal's counter and one entry, both shared by the
        principal's submits that ask at the same moment.

        Not deduplicated: a retry takes a fresh ordinal, and the one a lost answer may have
        handed out stays a gap (readers skip it).
        """
        subject = listing_counter_subject(tenant, principal)
        ordinal, share = await self.ordinals.take(subject, operation_id)
        if share.follow_up is None:
            share.follow_up = asyncio.ensure_future(
                self._store_entry(tenant, principal, share.first, share.items)
            )
            share.follow_up.add_done_callback(_retrieved)
        return Numbered(ordinal, share.follow_up)

    async def write_entry(
        self, tenant: str, principal: str, ordinal: int, operation_id: str
    ) -> None:
        """Index ``operation_id`` at ``ordinal`` alone and wait until it is stored (safe to
        repeat: the same key, the same id)."""
        await self._store_entry(tenant, principal, ordinal, [operation_id])

    async def record(self, tenant: str, principal: str, operation_id: str) -> int:
        """Give ``operation_id`` the principal's next ordinal and index it; return the ordinal
        (which its request must carry, or the entry is not listed once the request has a view
        with another ordinal)."""
        numbered = await self.number(tenant, principal, operation_id)
        await numbered.stored()
        return numbered.ordinal

    async def _store_entry(
        self, tenant: str, principal: str, first: int, operation_ids: list[str]
    ) -> None:
        """Write the entry indexing ``operation_ids`` from ``first`` on; raise what the write
        met: an APIError when the bucket refused it, TimeoutError when nothing answered.

        Its acknowledgement comes back on the listing's one reply subscription (no inbox
        future of its own), and an error in it is raised: nats-py's ``publish_async`` leaves
        its future unresolved when the answer is an error (``APIError.from_error`` raises in
        the reply callback), so a refused write would only ever time out.
        """
        key = _KEY_PREFIX + listing_entry_key(tenant, principal, first)
        async with self.reads.inbox.route() as (reply_subject, replies):
            await self.nc.publish(key, " ".join(operation_ids).encode(), reply=reply_subject)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                _acknowledged(await replies.get())

    async def position(self, tenant: str, principal: str, operation_id: str) -> int | None:
        """The ordinal an operation queued before requests carried one was indexed at (its
        operation id -> ordinal key), or None if it has no such key."""
        [found] = await self.reads.last(
            _BUCKET_STREAM, [_KEY_PREFIX + listing_position_key(tenant, principal, operation_id)]
        )
        return None if found is None else int(found)

    async def indexed(self) -> dict[tuple[str, str, str], set[int]]:
        """The ordinals each (tenant, principal, operation id) the listing indexes is indexed
        at: one read of the bucket's entry keys, however many there are."""
        found = await read_bucket(self.js, "*.*.n.*", bucket=LISTING_BUCKET, within_s=None)
        operations: dict[tuple[str, str, str], set[int]] = {}
        for key, (value, _) in found.items():
            if value is not None:
                tenant, principal, _, first = key.split(".")
                for ordinal, operation_id in _indexed_from(int(first), value):
                    operations.setdefault((tenant, principal, operation_id), set()).add(ordinal)
        return operations

    async def record_many(
        self, operations: list[Unindexed], progress: Callable[[int], None]
    ) -> None:
        """Index many operations, each principal's in the given order; ``progress`` is told of
        each one indexed.

        One at the ordinal its request carries; one without (queued before requests carried
        it) at a fresh ordinal, also with its operation id -> ordinal key, as such operations
        were indexed before. Each principal's counter is raised to at least the highest ordinal
        written (it may have been lost with the bucket), so no later submit reuses one; one
        increment per principal takes all of its fresh ordinals at once. Not for operations
        that may be indexed already: rebuilding asks ``indexed`` first.
        """
        by_principal: dict[tuple[str, str], list[Unindexed]] = {}
        for operation in operations:
            by_principal.setdefault((operation.tenant, operation.principal), []).append(operation)
        principals = list(by_principal)
        subjects = [listing_counter_subject(tenant, principal) for tenant, principal in principals]
        counters: list[bytes | None] = []
        for start in range(0, len(subjects), _COUNTERS_AT_ONCE):
            chunk = subjects[start : start + _COUNTERS_AT_ONCE]
            counters += await self.reads.last(LISTING_COUNTER_STREAM, chunk)
        entries: list[Outgoing] = []
        positions: list[Outgoing] = []
        for (tenant, principal), counter in zip(principals, counters, strict=True):
            unindexed = by_principal[tenant, principal]
            current = 0 if counter is None else _counter_value(counter)
            carried = [op.ordinal for op in unindexed if op.ordinal is not None]
            fresh = [op for op in unindexed if op.ordinal is None]
            raise_by = max(0, max(carried, default=0) - current) + len(fresh)
            last = current
            if raise_by:
                # The increment's answer, not ``current``: an edge may have taken one meanwhile.
                last = await self._increment(
                    listing_counter_subject(tenant, principal), by=raise_by
                )
            fresh_ordinals = iter(range(last - len(fresh) + 1, last + 1))
            for op in unindexed:
                ordinal = op.ordinal
                if ordinal is None:
                    ordinal = next(fresh_ordinals)
                    position = listing_position_key(tenant, principal, op.operation_id)
                    positions.append((_KEY_PREFIX + position, str(ordinal).encode(), None))
                entry = listing_entry_key(tenant, principal, ordinal)
                entries.append((_KEY_PREFIX + entry, op.operation_id.encode(), None))
        # Position keys first: an operation whose entry is written is taken as indexed.
        for messages, told in ((positions, _no_progress), (entries, progress)):
            outcomes = await publish_all(self.nc, messages, progress=told)
            failed = next((error for error in outcomes if error is not None), None)
            if failed is not None:
                raise failed

    async def remove(
        self, tenant: str, principal: str, operation_id: str, ordinal: int | None
    ) -> None:
        """Unlist a deleted operation: its entry (at ``ordinal``, or at the position its older
        index key names) and that position key. An entry of its own is purged, leaving no
        marker for readers to skip; in an entry shared with other operations its id is
        replaced by a placeholder, so the others keep their ordinals."""
        if ordinal is None:
            ordinal = await self.position(tenant, principal, operation_id)
        await self.js.purge_stream(
            _BUCKET_STREAM,
            subject=_KEY_PREFIX + listing_position_key(tenant, principal, operation_id),
        )
        if ordinal is None:
            return
        for _ in range(_MAX_REWRITES):
            found = await self._entry_of(tenant, principal, ordinal, operation_id)
            if found is None:
                return
            first, ids, revision = found
            left = [_REMOVED if one == operation_id else one for one in ids]
            subject = _KEY_PREFIX + listing_entry_key(tenant, principal, first)
            if all(one == _REMOVED for one in left):
                await self.js.purge_stream(_BUCKET_STREAM, subject=subject)
                return
            try:
                await self.js.publish(
                    subject,
                    " ".join(left).encode(),
                    headers={"Nats-Expected-Last-Subject-Sequence": str(revision)},
                )
                return
            except APIError as error:
                if error.err_code != _WRONG_LAST_SEQUENCE:
                    raise
        raise RuntimeError(f"the listing entry of {operation_id} kept changing")

    async def _entry_of(
        self, tenant: str, principal: str, ordinal: int, operation_id: str
    ) -> tuple[int, list[str], int] | None:
        """The entry indexing ``operation_id`` at ``ordinal``: its first ordinal, its ids and
        its revision (None if there is none)."""
        for first in range(ordinal, max(0, ordinal - MAX_BLOCK), -1):
            subject = _KEY_PREFIX + listing_entry_key(tenant, principal, first)
            try:
                stored = await self.js.get_msg(_BUCKET_STREAM, subject=subject, direct=True)
            except NotFoundError:
                continue
            ids = (stored.data or b"").decode().split(" ")
            if ordinal - first < len(ids) and ids[ordinal - first] == operation_id:
                return first, ids, stored.seq or 0
        return None

    async def newest(self, tenant: str, principal: str) -> int:
        """The principal's highest ordinal handed out (0: none yet)."""
        [found] = await self.reads.last(
            LISTING_COUNTER_STREAM, [listing_counter_subject(tenant, principal)]
        )
        return 0 if found is None else _counter_value(found)

    async def below(
        self, tenant: str, principal: str, ordinal: int, count: int
    ) -> list[tuple[int, str]]:
        """(ordinal, operation id) of the indexed operations among the ``count`` ordinals just
        below ``ordinal``, highest first; gaps (never indexed, expired or deleted) are left out.

        The keys below the range are read too, as far as an entry's range can reach into it.
        """
        lowest = max(1, ordinal - count)
        firsts = range(ordinal - 1, max(0, lowest - MAX_BLOCK), -1)
        found = await self.reads.last(
            _BUCKET_STREAM,
            [_KEY_PREFIX + listing_entry_key(tenant, principal, n) for n in firsts],
        )
        entries: dict[int, str] = {}
        for first, hit in zip(firsts, found, strict=True):
            if hit:
                for n, operation_id in _indexed_from(first, hit):
                    if lowest <= n < ordinal:
                        # An entry of its own, written again after a shared one failed, is
                        # met first and names the same operation.
                        entries.setdefault(n, operation_id)
        return sorted(entries.items(), reverse=True)

    async def oldest(self, tenant: str, principal: str) -> int | None:
        """The lowest ordinal the principal still has indexed, or None if none is left.

        Asked only when a whole stretch of ordinals was missing: the end of the list, or a gap.
        """
        reply = await self.nc.request(
            f"$JS.API.DIRECT.GET.{_BUCKET_STREAM}",
            json.dumps(
                {"seq": 1, "next_by_subj": f"{_KEY_PREFIX}{tenant}.{principal}.n.*"}
            ).encode(),
            timeout=REQUEST_TIMEOUT_S,
        )
        headers = reply.headers or {}
        if headers.get("Status") == "404":
            return None
        if "Status" in headers:
            raise APIError(code=int(headers["Status"]), description=headers.get("Description"))
        return int(headers["Nats-Subject"].rsplit(".", 1)[-1])

    async def _increment(self, subject: str, by: int) -> int:
        """Add ``by`` to the counter; its new value."""
        # No responders (a leader election) propagates: the caller rides it out.
        reply = await self.nc.request(
            subject, b"", timeout=REQUEST_TIMEOUT_S, headers={"Nats-Incr": f"+{by}"}
        )
        answer = json.loads(reply.data)
        if "error" in answer:
            error = answer["error"]
            raise APIError(code=error.get("code"), description=error.get("description"))
        return int(answer["val"])


@dataclass(frozen=True)
class Numbered:
    """An ordinal taken for an operation, and the write of its entry."""

    ordinal: int
    entry: asyncio.Future[None]

    async def stored(self) -> None:
        """Wait until the entry is stored; raise what its write met (APIError, TimeoutError,
        a NATS error). Shared with other submits, so a caller giving up never cancels it."""
        await asyncio.shield(self.entry)


def _retrieved(write: asyncio.Future[None]) -> None:
    """Mark a shared write's failure as seen: its takers may all have given up on it."""
    if not write.cancelled():
        write.exception()


def _indexed_from(first: int, stored: bytes) -> list[tuple[int, str]]:
    """(ordinal, operation id) of each operation an entry at ``first`` indexes."""
    return [
        (first + offset, operation_id)
        for offset, operation_id in enumerate(stored.decode().split(" "))
        if operation_id and operation_id != _REMOVED
    ]


def _counter_value(stored: bytes) -> int:
    """The value a counter message holds."""
    return int(json.loads(stored)["val"])


def _no_progress(_: int) -> None:
    """Nobody is watching."""
