"""Reading stored messages straight from a stream's leader or replicas (JetStream direct gets),
many at once, over one reply subscription per connection.

A batched direct get (``multi_last``, NATS 2.11+) answers for a list of subjects with one
request: the server sends the newest message of each subject that has one, then an end-of-batch
status. Against a hundred single gets of the same keys it saves the hundred requests and their
routing: measured on a loaded 2-core machine, 4.0 against 5.3 ms of client CPU for 100 keys,
which is most of what a page of ``asyncRequests`` costs the edge.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Final

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import APIError

from services.common.reply_inbox import ReplyInbox

# Each read is answered within this, or the caller retries.
REQUEST_TIMEOUT_S: Final = 5.0
# Subjects named in one batched get: pages name 100 or so; larger lists go in several requests.
MAX_SUBJECTS_PER_BATCH: Final = 256

# (stream sequence, subject, data) of one stored message.
StoredMessage = tuple[int, str, bytes]


@dataclass(frozen=True)
class Batch:
    """What one batched direct get returned; ``pending`` counts what the server held back
    (a byte limit reached before the batch was complete)."""

    messages: list[StoredMessage]
    pending: int


async def batch_get(
    nc: NatsClient,
    inbox: ReplyInbox,
    stream: str,
    request: dict[str, object],
    *,
    limit: int,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Batch:
    """Send one batched direct get (``multi_last``, or ``batch`` from a ``seq``); collect its
    messages until the end-of-batch status, all within ``timeout_s``.

    More than ``limit`` messages is an APIError: a bound on what the caller can expect.
    """
    messages: list[StoredMessage] = []
    async with inbox.route() as (reply_subject, replies):
        await nc.publish(
            f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=reply_subject
        )
        async with asyncio.timeout(timeout_s):
            while len(messages) <= limit:
                reply = await replies.get()
                headers = reply.headers or {}
                status = headers.get("Status")
                if status is None:
                    messages.append(
                        (int(headers["Nats-Sequence"]), headers["Nats-Subject"], reply.data)
                    )
                elif status == "204":  # end of batch
                    return Batch(messages, int(headers.get("Nats-Num-Pending") or 0))
                elif status == "404":  # nothing stored for any of the subjects
                    return Batch(messages, 0)
                elif status == "503":
                    raise nats.errors.NoRespondersError
                else:
                    raise APIError(code=int(status), description=headers.get("Description"))
    raise APIError(description=f"more than {limit} messages for {request}")


def _stored(reply: Msg) -> bytes | None:
    """A single direct get's answer: the data, None for nothing stored (or a deleted key's
    marker)."""
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
    """The newest message of many literal subjects, in as few requests as the server allows."""

    nc: NatsClient
    # A bound on the bytes of one batch (None: the server's own); what does not fit is asked
    # for again.
    max_bytes: int | None = None
    inbox: ReplyInbox = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = ReplyInbox(self.nc)

    async def last(self, stream: str, subjects: list[str]) -> list[bytes | None]:
        """The data of the newest message of each subject of ``stream`` (None where none, or
        where the newest is a deleted key's marker), in the order of ``subjects``.

        ``subjects`` must be literal subjects of safe tokens (they are written into JSON as is).
        """
        if len(subjects) == 1:
            return [await self._single(stream, subjects[0])]
        found: dict[str, bytes] = {}
        wanted = list(dict.fromkeys(subjects))
        for start in range(0, len(wanted), MAX_SUBJECTS_PER_BATCH):
            chunk = wanted[start : start + MAX_SUBJECTS_PER_BATCH]
            while chunk:
                request: dict[str, object] = {"multi_last": chunk, "batch": len(chunk)}
                if self.max_bytes is not None:
                    request["max_bytes"] = self.max_bytes
                batch = await batch_get(self.nc, self.inbox, stream, request, limit=len(chunk))
                found.update((subject, data) for _, subject, data in batch.messages)
                if batch.pending == 0 or not batch.messages:
                    break
                # The server stopped at its byte limit: ask again for what did not come.
                chunk = [subject for subject in chunk if subject not in found]
        return [found.get(subject) or None for subject in subjects]

    async def _single(self, stream: str, subject: str) -> bytes | None:
        # Without headers (``no_hdr``): parsing them cost nats-py more than the rest of a read.
        async with self.inbox.route() as (reply_subject, replies):
            request = f'{{"last_by_subj":"{subject}","no_hdr":true}}'.encode()
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=reply_subject)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return _stored(await replies.get())

    async def close(self) -> None:
        """Drop the reply subscription (the connection belongs to the caller)."""
        await self.inbox.close()
