"""Pulling from a durable JetStream consumer so that each message is handed over as it arrives.

nats-py's ``fetch(batch=N, timeout=T)`` keeps a lingering pull open until N messages came or T
ran out, so a lone event waited up to T before anyone handled it (measured: RUNNING reached the
view 2-4 s late under light load). Here pull requests are sent ahead, like nats.go's
``Consume``: requests for up to ``limit`` messages stay open at the server, messages land in a
local queue the moment the server sends them, and ``next_batch`` returns whatever is there as
soon as there is anything. New requests are sent when half of what was asked for has arrived,
so a busy consumer never waits for a round trip and an idle one costs one request per
``expires_s``.

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
_PENDING_MESSAGES: Final = "Nats-Pending-Messages"


@dataclass
class _OpenRequest:
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
        self._open: collections.deque[_OpenRequest] = collections.deque()
        self._inbox = ""
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to the reply inbox (nats-py renews it after a reconnect)."""
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(self._inbox, cb=self._receive)

    async def unsubscribe(self) -> None:
        """Stop receiving; messages asked for and not yet handled are redelivered by JetStream
        after their ack wait."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()

    @property
    def owed(self) -> int:
        """Messages asked for and not delivered yet."""
        return sum(request.remaining for request in self._open)

    async def next_batch(self, limit: int) -> list[Msg]:
        """Up to ``limit`` messages: those that arrived already, or else the first ones to
        arrive within ``expires_s`` (an empty list if none did)."""
        self._forget_lost_requests()
        await self._ask_for_more(limit)
        if not self._ready:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), self._expires_s)
            except TimeoutError:
                return []
        taken = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
        await self._ask_for_more(limit - len(taken))
        return taken

    async def _ask_for_more(self, limit: int) -> None:
        """Keep requests for about ``limit`` messages open, topping up by at least half."""
        wanted = limit - len(self._ready) - self.owed
        if wanted <= 0 or (self._open and wanted < max(1, limit // 2)):
            return
        request = {"batch": wanted, "expires": int(self._expires_s * 1_000_000_000)}
        # Counted before it is sent: its first messages can arrive while publish yields.
        opened = _OpenRequest(wanted, time.monotonic() + self._expires_s + LOST_MARGIN_S)
        self._open.append(opened)
        try:
            # Only buffers the request: the messages themselves are the answer.
            await self._nc.publish(
                self._next_subject, json.dumps(request).encode(), reply=self._inbox
            )
        except nats.errors.Error:
            # Disconnected for now: nothing will come for it; asked again on the next call.
            if opened in self._open:
                self._open.remove(opened)

    def _forget_lost_requests(self) -> None:
        now = time.monotonic()
        while self._open and self._open[0].lost_at < now:
            self._open.popleft()

    async def _receive(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None and msg.reply:
            # The server fills open requests in the order they came.
            if self._open:
                self._open[0].remaining -= 1
                if self._open[0].remaining <= 0:
                    self._open.popleft()
            self._ready.append(msg)
            self._arrived.set()
        elif status != _HEARTBEAT and self._open and msg.headers is not None:
            # 408 (expired) or 409 (ended early): the oldest open request is over.
            if _PENDING_MESSAGES in msg.headers or status in ("408", "409"):
                self._open.popleft()
            self._arrived.set()
