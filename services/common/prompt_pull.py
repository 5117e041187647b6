"""Pulling from a durable JetStream consumer so that each message is handed over as it arrives.

nats-py's ``fetch(batch=N, timeout=T)`` keeps a lingering pull open until N messages came or T
ran out, so a lone event waited up to T before anyone handled it (measured: RUNNING reached the
view 2-4 s late under light load). Here a pull request for up to ``limit`` messages is sent
ahead and stays open at the server, messages land in a local queue the moment the server sends
them, and ``next_batch`` returns whatever is there as soon as there is anything. An idle
consumer costs one request per ``expires_s``.

One request is open at a time, each with a reply subject of its own, so what is still owed is
known exactly: every message belongs to the open request, and a status (408 expired, 409 ended
early) names the request it ends. A request the server fills completely is over when its last
message arrives; with a backlog that is at once, so the next one follows after a round trip.
(Several requests open at once, counted against the oldest, let an error in the count pass from
request to request: an executor then took a batch only each time a request expired, every 5 s,
while 1,500 requests waited, 33 s in all, seen in the bench.)

The requests and their replies are plain core NATS (``$JS.API.CONSUMER.MSG.NEXT``), so
messages are ordinary nats-py ``Msg`` objects: ``ack``, ``nak``, ``in_progress`` and
``metadata`` work on them as on fetched ones.
"""

import asyncio
import collections
import json
import time
from dataclasses import dataclass
from typing import Final

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# How long one pull request waits at the server. After a server restart or a consumer leader
# change the server forgets open requests; they are renewed at most this long (plus a margin)
# later, so it also bounds how long such an event can delay delivery.
DEFAULT_EXPIRES_S: Final = 5.0
# A request the server has not ended this long after its expiry is taken for lost.
LOST_MARGIN_S: Final = 1.0

_STATUS: Final = "Status"
_HEARTBEAT: Final = "100"


@dataclass
class _OpenRequest:
    reply: str
    remaining: int
    lost_at: float


class PromptPull:
    """A durable pull consumer read through requests sent ahead (see the module docstring).

    One instance per consuming task: ``next_batch`` is not meant to be awaited concurrently.
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        durable: str,
        *,
        expires_s: float = DEFAULT_EXPIRES_S,
    ) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._expires_s = expires_s
        self._ready: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._open: _OpenRequest | None = None
        self._inbox = ""
        self._requests_sent = 0
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to the replies to every request (nats-py renews it after a reconnect)."""
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._receive)

    async def unsubscribe(self) -> None:
        """Stop receiving; messages asked for and not yet handled are redelivered by JetStream
        after their ack wait."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()

    async def next_batch(self, limit: int) -> list[Msg]:
        """Up to ``limit`` messages: those that arrived already, or else the first ones to
        arrive within ``expires_s``, or before the open request is taken for lost (an empty
        list if none did)."""
        self._forget_lost_requests()
        await self._ask_for_more(limit)
        if not self._ready:
            self._arrived.clear()
            wait_s = self._expires_s
            if self._open is not None:
                wait_s = min(wait_s, max(0.0, self._open.lost_at - time.monotonic()))
            try:
                await asyncio.wait_for(self._arrived.wait(), wait_s)
            except TimeoutError:
                return []
        taken = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
        await self._ask_for_more(limit - len(taken))
        return taken

    async def _ask_for_more(self, limit: int) -> None:
        """Open a request for what ``limit`` leaves room for, unless one is open."""
        wanted = limit - len(self._ready)
        if wanted <= 0 or self._open is not None:
            return
        request = {"batch": wanted, "expires": int(self._expires_s * 1_000_000_000)}
        self._requests_sent += 1
        # Counted before it is sent: its first messages can arrive while publish yields.
        opened = self._open = _OpenRequest(
            reply=f"{self._inbox}.{self._requests_sent}",
            remaining=wanted,
            lost_at=time.monotonic() + self._expires_s + LOST_MARGIN_S,
        )
        try:
            # Only buffers the request: the messages themselves are the answer.
            await self._nc.publish(
                self._next_subject, json.dumps(request).encode(), reply=opened.reply
            )
        except nats.errors.Error:
            # Disconnected for now: nothing will come for it; asked again on the next call.
            if self._open is opened:
                self._open = None

    def _forget_lost_requests(self) -> None:
        if self._open is not None and self._open.lost_at < time.monotonic():
            self._open = None

    async def _receive(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None and msg.reply:
            # A message comes with the subject it was stored under: it is the open request's.
            if self._open is not None:
                self._open.remaining -= 1
                if self._open.remaining <= 0:
                    self._open = None
            self._ready.append(msg)
            self._arrived.set()
        elif status is not None and status != _HEARTBEAT:
            # A status comes on the reply subject of the request it ends (an older request's,
            # forgotten as lost, ends nothing now).
            if self._open is not None and msg.subject == self._open.reply:
                self._open = None
            self._arrived.set()
