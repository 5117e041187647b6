"""Pushing view changes to subscribers: one watcher per edge process, fanned out in memory.

A single ordered consumer on the view bucket (new changes only) feeds every subscription of
the process, so a thousand subscribers cost the server one consumer, not a thousand. Each
subscriber holds only the latest state of its key: a slow subscriber skips states it had no time
to send, never holds up the others, and still ends on the final state. After a reconnect to
NATS, every watched key is read again, so a change made while the connection was down is not
missed.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, decode_view
from services.common.views import read_view

log = logging.getLogger(__name__)

_KEY_PREFIX = f"$KV.{VIEW_BUCKET}."
_REMOVED = frozenset({"DEL", "PURGE"})
HEARTBEAT_S = 1.0


class LatestView:
    """One subscriber's mailbox: the newest state of its key, replacing any unread older one."""

    def __init__(self) -> None:
        self._view: OperationView | None = None
        self._revision = 0
        self._changed = asyncio.Event()

    def offer(self, view: OperationView | None, revision: int) -> None:
        """Keep ``view`` (None: the key was removed) if it is newer than what is held."""
        if revision <= self._revision:
            return
        self._view, self._revision = view, revision
        self._changed.set()

    async def next(self) -> OperationView | None:
        """Wait for a newer state than the last one taken, and take it."""
        await self._changed.wait()
        self._changed.clear()
        return self._view


class ViewWatchHub:
    """Fans the view bucket's changes out to the subscriptions of this process."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[LatestView]] = {}
        self._subscription: JetStreamContext.PushSubscription | None = None

    async def start(self, js: JetStreamContext) -> None:
        """Open the one watcher: an ordered consumer on the bucket, new changes only."""
        self._subscription = await js.subscribe(
            f"{_KEY_PREFIX}>",
            stream=f"KV_{VIEW_BUCKET}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=self._deliver,
            # Two missed heartbeats make nats-py recreate the consumer (after a server restart,
            # say); one per second on one consumer per process is cheap.
            idle_heartbeat=HEARTBEAT_S,
        )

    async def stop(self) -> None:
        """Close the watcher."""
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection may be closed
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _deliver(self, msg: Msg) -> None:
        key = msg.subject.removeprefix(_KEY_PREFIX)
        mailboxes = self._watchers.get(key)
        if not mailboxes:
            return
        operation = (msg.headers or {}).get("KV-Operation")
        try:
            view = None if operation in _REMOVED or not msg.data else decode_view(msg.data)
        except ValueError:
            log.warning("unreadable view at %s; subscribers keep the previous state", key)
            return
        revision = msg.metadata.sequence.stream
        for mailbox in mailboxes:
            mailbox.offer(view, revision)

    @contextlib.asynccontextmanager
    async def watching(self, key: str) -> AsyncIterator[LatestView]:
        """Receive every later change of ``key`` for as long as the block runs."""
        mailbox = LatestView()
        self._watchers.setdefault(key, set()).add(mailbox)
        try:
            yield mailbox
        finally:
            mailboxes = self._watchers.get(key)
            if mailboxes is not None:
                mailboxes.discard(mailbox)
                if not mailboxes:
                    del self._watchers[key]

    async def resync(self, kv: KeyValue) -> None:
        """Read every watched key again (after a reconnect, changes may have gone by)."""
        for key in list(self._watchers):
            try:
                view, revision = await read_view(kv, key)
            except (nats.errors.Error, TimeoutError, ValueError):
                # One key failing must not keep the others from catching up.
                log.warning("could not re-read %s after reconnecting", key, exc_info=True)
                continue
            for mailbox in self._watchers.get(key, ()):
                mailbox.offer(view, revision or 0)
