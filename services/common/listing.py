"""Each principal's operations in the order they were queued, readable newest first a page at a
time: what ``asyncRequests`` lists, at the cost of the page rather than of everything retained.

When an operation is queued the edge takes the principal's next ordinal from a JetStream counter
(one atomic increment, no compare-and-set, however many clients submit at once) and writes two
small keys to the listing bucket: ordinal -> operation id and operation id -> ordinal. A page is
then the keys just below an ordinal (the counter's value for the first page, the ``after``
operation's ordinal for the next), all fetched at once, literal keys only.

The bucket expires entries as the view bucket does, counted from when the operation was queued,
so an entry never outlives its view. Ordinals are never reused: a lost increment or a submit that
failed after it leaves a gap, which readers skip. Rebuilding (``services/projector/replay.py``)
indexes, in stream order, every operation that has a view and no entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from contracts.names import (
    LISTING_BUCKET,
    LISTING_COUNTER_STREAM,
    listing_counter_subject,
    listing_entry_key,
    listing_position_key,
)
from services.common.bulk_publish import Outgoing, publish_all
from services.common.reply_inbox import ReplyInbox
from services.common.views import read_bucket

# Each read is answered within this, or the caller retries.
REQUEST_TIMEOUT_S: Final = 5.0
_BUCKET_STREAM: Final = f"KV_{LISTING_BUCKET}"
_KEY_PREFIX: Final = f"$KV.{LISTING_BUCKET}."


def _stored(reply: Msg) -> bytes | None:
    """A direct get's answer: the data, None for nothing stored (or a deleted key's marker)."""
    headers = reply.headers
    if headers:
        status = headers.get("Status")
        if status == "404":
            return None
        raise APIError(code=int(status or 0), description=headers.get("Description"))
    # Asked without headers: a delete or purge marker is an empty body (no value is empty).
    return reply.data or None


@dataclass
class DirectReads:
    """Many direct gets at once over one reply subscription.

    A page makes a hundred or more reads at once: published together, their replies routed by
    token (services/common/reply_inbox.py) under one deadline. The replies come without headers
    (``no_hdr``): nats-py spent ~85 us parsing the headers of each one, more than everything else
    a page costs.
    """

    nc: NatsClient
    inbox: ReplyInbox = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = ReplyInbox(self.nc)

    async def last(self, stream: str, subjects: list[str]) -> list[bytes | None]:
        """The data of the newest message of each subject of ``stream`` (None where none).

        ``subjects`` must be literal subjects of safe tokens (they are written into JSON as is).
        """
        async with contextlib.AsyncExitStack() as routes:
            queues = []
            api = f"$JS.API.DIRECT.GET.{stream}"
            for subject in subjects:
                reply_subject, replies = await routes.enter_async_context(self.inbox.route())
                queues.append(replies)
                request = f'{{"last_by_subj":"{subject}","no_hdr":true}}'.encode()
                await self.nc.publish(api, request, reply=reply_subject)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                replies_in_order = await asyncio.gather(*(queue.get() for queue in queues))
        return [_stored(reply) for reply in replies_in_order]

    async def close(self) -> None:
        """Drop the reply subscription (the connection belongs to the caller)."""
        await self.inbox.close()


@dataclass(frozen=True)
class Listing:
    """The listing bucket and the ordinal counters, over one NATS connection."""

    nc: NatsClient
    js: JetStreamContext
    reads: DirectReads

    @classmethod
    def over(cls, nc: NatsClient) -> Listing:
        """A listing reading and writing over ``nc`` (close it with ``reads.close()``)."""
        return cls(nc, nc.jetstream(), DirectReads(nc))

    async def record(self, tenant: str, principal: str, operation_id: str) -> int:
        """Give ``operation_id`` the principal's next ordinal and index it; return the ordinal.

        Safe to repeat: a retry whose first try got its ordinal keeps it.
        """
        subject = listing_counter_subject(tenant, principal)
        ack = await self._increment(subject, msg_id=operation_id)
        if ack is None:
            # A repeat inside the duplicate window: the first try may have indexed it already.
            known = await self.position(tenant, principal, operation_id)
            if known is not None:
                return known
            ack = await self._increment(subject, msg_id=None)
        if ack is None:
            raise APIError(description=f"no ordinal for {operation_id}")
        # Both writes in flight at once, acknowledged together, on the connection's one async
        # reply subscription rather than a request (and its inbox future) each.
        acks = [
            await self.js.publish_async(_KEY_PREFIX + key, value)
            for key, value in (
                (listing_entry_key(tenant, principal, ack), operation_id.encode()),
                (listing_position_key(tenant, principal, operation_id), str(ack).encode()),
            )
        ]
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await asyncio.gather(*acks)
        return ack

    async def position(self, tenant: str, principal: str, operation_id: str) -> int | None:
        """The ordinal of one of the principal's operations, or None if it is not indexed."""
        [found] = await self.reads.last(
            _BUCKET_STREAM, [_KEY_PREFIX + listing_position_key(tenant, principal, operation_id)]
        )
        return None if found is None else int(found)

    async def indexed(self) -> set[tuple[str, str, str]]:
        """(tenant, principal, operation id) of every operation the listing indexes: one read
        of the bucket's position keys, however many there are."""
        found = await read_bucket(self.js, "*.*.o.*", bucket=LISTING_BUCKET, within_s=None)
        operations = set()
        for key, (value, _) in found.items():
            if value is not None:
                tenant, principal, _, operation_id = key.split(".")
                operations.add((tenant, principal, operation_id))
        return operations

    async def record_many(
        self, operations: list[tuple[str, str, str]], progress: Callable[[int], None]
    ) -> None:
        """Index many (tenant, principal, operation id), each principal's in the given order;
        ``progress`` is told of each two keys written.

        One counter increment per principal takes all of its ordinals at once. Not for
        operations that may be indexed already (``record`` checks; this does not): rebuilding
        asks ``indexed`` first.
        """
        by_principal: dict[tuple[str, str], list[str]] = {}
        for tenant, principal, operation_id in operations:
            by_principal.setdefault((tenant, principal), []).append(operation_id)
        entries: list[Outgoing] = []
        for (tenant, principal), operation_ids in by_principal.items():
            subject = listing_counter_subject(tenant, principal)
            last = await self._increment(subject, msg_id=None, by=len(operation_ids))
            if last is None:
                raise APIError(description=f"no ordinals for {tenant}.{principal}")
            first = last - len(operation_ids) + 1
            for ordinal, operation_id in enumerate(operation_ids, start=first):
                entry = listing_entry_key(tenant, principal, ordinal)
                position = listing_position_key(tenant, principal, operation_id)
                entries.append((_KEY_PREFIX + entry, operation_id.encode(), None))
                entries.append((_KEY_PREFIX + position, str(ordinal).encode(), None))
        outcomes = await publish_all(self.nc, entries, progress=lambda n: progress(n // 2))
        failed = next((error for error in outcomes if error is not None), None)
        if failed is not None:
            raise failed

    async def newest(self, tenant: str, principal: str) -> int:
        """The principal's highest ordinal handed out (0: none yet)."""
        [found] = await self.reads.last(
            LISTING_COUNTER_STREAM, [listing_counter_subject(tenant, principal)]
        )
        return 0 if found is None else int(json.loads(found)["val"])

    async def below(
        self, tenant: str, principal: str, ordinal: int, count: int
    ) -> list[tuple[int, str]]:
        """(ordinal, operation id) of the indexed operations among the ``count`` ordinals just
        below ``ordinal``, highest first; gaps (never indexed, or expired) are left out."""
        ordinals = range(ordinal - 1, max(0, ordinal - 1 - count), -1)
        found = await self.reads.last(
            _BUCKET_STREAM,
            [_KEY_PREFIX + listing_entry_key(tenant, principal, n) for n in ordinals],
        )
        return [(n, hit.decode()) for n, hit in zip(ordinals, found, strict=True) if hit]

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

    async def _increment(self, subject: str, *, msg_id: str | None, by: int = 1) -> int | None:
        """Add ``by`` to the counter; its new value, or None for a deduplicated repeat."""
        headers = {"Nats-Incr": f"+{by}"}
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        # No responders (a leader election) propagates: the caller rides it out.
        reply = await self.nc.request(subject, b"", timeout=REQUEST_TIMEOUT_S, headers=headers)
        answer = json.loads(reply.data)
        if "error" in answer:
            error = answer["error"]
            raise APIError(code=error.get("code"), description=error.get("description"))
        if answer.get("duplicate"):
            return None
        return int(answer["val"])
