"""Many requests in flight over one reply subscription, their replies routed by token.

nats-py's ``request`` gives every request its own future wrapped in ``wait_for`` (and, for
replies that come in several messages, a subscription of its own). Batched direct gets and pages
of a hundred direct gets are cheaper with one wildcard subscription per connection user and a
token per request: measured, 100 gathered requests took 40 ms through ``request`` and half that
this way on a loaded 2-core machine.
"""

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class ReplyInbox:
    """One wildcard reply subscription; ``route()`` hands out a reply subject and its queue."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._queues: dict[str, asyncio.Queue[Msg]] = {}
        self._tokens = itertools.count()
        self._prefix = ""
        self._subscription: Subscription | None = None

    @contextlib.asynccontextmanager
    async def route(self) -> AsyncIterator[tuple[str, asyncio.Queue[Msg]]]:
        """A reply subject whose replies land in the queue, for as long as the block runs."""
        if self._subscription is None:
            # nats-py restores the subscription after a reconnect.
            self._prefix = self.nc.new_inbox()
            self._subscription = await self.nc.subscribe(f"{self._prefix}.*", cb=self._deliver)
        token = str(next(self._tokens))
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = replies
        try:
            yield f"{self._prefix}.{token}", replies
        finally:
            del self._queues[token]

    async def _deliver(self, msg: Msg) -> None:
        replies = self._queues.get(msg.subject.rsplit(".", 1)[-1])
        if replies is not None:
            replies.put_nowait(msg)

    async def close(self) -> None:
        """Drop the reply subscription (the connection itself belongs to the caller)."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            # A closed connection has nothing left to drop.
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
