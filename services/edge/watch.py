"""Pushing view changes to subscribers: only the keys this edge's clients watch, fanned out in
memory.

A KV put is an ordinary publish on ``$KV.<bucket>.<key>``, so a core NATS subscription on that
subject receives every change of the key, and NATS routes it to this process only while the
subscription exists. The hub holds one such subscription per watched key (the first subscriber
of a key opens it, the last one closes it) and no JetStream consumer at all: an edge receives
the changes of the operations its clients follow, not every change of every tenant. (The
previous design, one ordered consumer on the whole bucket, made every edge decode every view
change of the deployment.)

Core delivery has two gaps that JetStream delivery has not, and the hub closes both:

- A publish JetStream refuses (the projector's compare-and-set lost a race) still reaches core
  subscribers. Such a view folds real events onto an older view, so it is a true but possibly
  incomplete state: fine to show on the way, not as the last word. A state that would end a
  subscription (final, or a removal) is therefore never taken from a message: it makes the hub
  read what the bucket stores, and that is what subscribers get. The message can outrun the
  write it announces, so a read that does not show it yet is repeated (2 ms, doubling, for
  about a second; a refused write never shows).
- Nothing is delivered while the connection is down. nats-py subscribes again before it reports
  the reconnection, and the hub then reads every watched key again.

Each subscriber holds only the latest state of its key, ordered by the view's own
``last_sequence``: a slow subscriber skips states it had no time to send, never holds up the
others, never goes backwards, and still ends on the final state.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, decode_view

log = logging.getLogger(__name__)

_KEY_PREFIX: Final = f"$KV.{VIEW_BUCKET}."
_REMOVED: Final = frozenset({"DEL", "PURGE"})
# Reads of the bucket in flight at once, when many watched keys must be read together (after a
# reconnect): enough to keep the connection busy, few enough not to queue thousands of requests.
MAX_CONCURRENT_READS: Final = 32
# Re-reads of a key whose announced state is not stored yet: after 2 ms, doubling, the last
# about a second after the message.
FIRST_REREAD_S: Final = 0.002
LAST_REREAD_S: Final = 0.6


class LatestView:
    """One subscriber's mailbox: the newest state of its key, replacing any unread older one."""

    def __init__(self) -> None:
        self._view: OperationView | None = None
        self._removed = False
        self._changed = asyncio.Event()

    def offer(self, view: OperationView | None) -> None:
        """Keep ``view`` (None: the key was removed) if it is newer than what is held.

        Newer means a higher ``last_sequence``, or the same one reaching a final state: a view
        read back from the bucket can carry the same last event as an incomplete one seen
        before it, and must still replace it.
        """
        if self._removed:
            return
        if view is None:
            self._removed = True
            self._view = None
        else:
            held = self._view
            if held is not None and not (
                view.last_sequence > held.last_sequence
                or (
                    view.last_sequence == held.last_sequence
                    and view.status.is_terminal
                    and not held.status.is_terminal
                )
            ):
                return
            self._view = view
        self._changed.set()

    async def next(self) -> OperationView | None:
        """Wait for a newer state than the last one taken, and take it."""
        await self._changed.wait()
        self._changed.clear()
        return self._view


class _Removed:
    """What a DEL or PURGE message announces: the key has no view any more."""


class _Unreadable:
    """A read that failed (NATS trouble, a view that does not decode): nothing learnt."""


REMOVED: Final = _Removed()
_UNREADABLE: Final = _Unreadable()
# What a read must show before it is trusted: nothing in particular (after a reconnect), the
# removal, or a state at least as new as the one a message announced.
Expected = OperationView | _Removed | None


@dataclass(eq=False)
class _WatchedKey:
    """A key some subscriber watches: its core subscription, its mailboxes, a pending read."""

    subscription: Subscription | None = None
    mailboxes: set[LatestView] = field(default_factory=set)
    reading: asyncio.Task[None] | None = None
    read_again: bool = False
    # Set when a read is asked for while one waits to read again: it reads at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    expected: Expected = None


def _shows(stored: OperationView | _Removed | None, expected: Expected) -> bool:
    """True if ``stored`` (None: nothing stored) is what ``expected`` waits for, or newer."""
    if expected is None or isinstance(stored, _Removed):
        return True
    if isinstance(expected, _Removed) or stored is None:
        return False
    return stored.last_sequence > expected.last_sequence or (
        stored.last_sequence == expected.last_sequence and stored.status.is_terminal
    )


class ViewWatchHub:
    """Fans the changes of watched view keys out to the subscriptions of this process."""

    def __init__(self) -> None:
        self._keys: dict[str, _WatchedKey] = {}
        self._nc: NatsClient | None = None
        self._kv: KeyValue | None = None
        self._reads = asyncio.Semaphore(MAX_CONCURRENT_READS)

    def start(self, nc: NatsClient, kv: KeyValue) -> None:
        """Use ``nc`` for the subscriptions and ``kv`` for reading states back."""
        self._nc, self._kv = nc, kv

    async def stop(self) -> None:
        """Close every subscription and pending read (the connection is closing)."""
        for watched in list(self._keys.values()):
            await self._close(watched)
        self._keys.clear()
        self._nc = self._kv = None

    @contextlib.asynccontextmanager
    async def watching(self, key: str) -> AsyncIterator[LatestView]:
        """Receive every later change of ``key`` for as long as the block runs.

        The subscription is on the wire before the block starts: NATS handles a connection's
        commands in order, so a read made inside the block cannot miss a change.
        """
        if self._nc is None:
            raise RuntimeError("the view hub is not started")
        mailbox = LatestView()
        watched = self._keys.get(key)
        if watched is None:
            watched = self._keys[key] = _WatchedKey()
            try:
                # nats-py queues the SUB before its first pause, so a second subscriber of the
                # same key, which finds the entry at once, reads after it too.
                watched.subscription = await self._nc.subscribe(_KEY_PREFIX + key, cb=self._deliver)
            except BaseException:
                if self._keys.get(key) is watched:
                    del self._keys[key]
                raise
        watched.mailboxes.add(mailbox)
        try:
            yield mailbox
        finally:
            watched.mailboxes.discard(mailbox)
            if not watched.mailboxes and self._keys.get(key) is watched:
                del self._keys[key]
                await self._close(watched)

    def resync(self) -> None:
        """Read every watched key again: changes made while the connection was down are gone."""
        for key in list(self._keys):
            self._read_back(key)

    async def _deliver(self, msg: Msg) -> None:
        key = msg.subject.removeprefix(_KEY_PREFIX)
        watched = self._keys.get(key)
        if watched is None:
            return
        if (msg.headers or {}).get("KV-Operation") in _REMOVED or not msg.data:
            self._read_back(key, REMOVED)
            return
        try:
            view = decode_view(msg.data)
        except ValueError:
            log.warning("unreadable view at %s; subscribers keep the previous state", key)
            return
        if view.status.is_terminal:
            # Possibly a write JetStream refused: the final word comes from the bucket.
            self._read_back(key, view)
            return
        for mailbox in watched.mailboxes:
            mailbox.offer(view)

    def _read_back(self, key: str, expected: Expected = None) -> None:
        """Read ``key``'s stored state for its subscribers, until it shows ``expected``.

        One read per key at a time, and one more after it if asked again meanwhile. A core
        message can arrive before JetStream has stored it, so a read that does not show the
        announced state yet is tried again, a few times over about a second; a write JetStream
        refused never shows, and its subscribers keep the stored state.
        """
        watched = self._keys.get(key)
        if watched is None:
            return
        if expected is not None:
            watched.expected = expected
        if watched.reading is not None:
            watched.read_again = True
            watched.wake.set()
            return
        watched.reading = asyncio.create_task(self._reading(key, watched))

    async def _reading(self, key: str, watched: _WatchedKey) -> None:
        try:
            delay = FIRST_REREAD_S
            while self._keys.get(key) is watched:
                watched.read_again = False
                watched.wake.clear()
                stored = await self._read_once(key)
                if stored is None and isinstance(watched.expected, _Removed):
                    stored = REMOVED  # nats-py reports a deleted key as not found
                if not isinstance(stored, _Unreadable):
                    if stored is not None:
                        state = None if isinstance(stored, _Removed) else stored
                        for mailbox in watched.mailboxes:
                            mailbox.offer(state)
                    if _shows(stored, watched.expected):
                        watched.expected = None
                if watched.read_again:
                    delay = FIRST_REREAD_S
                    continue
                if watched.expected is None:
                    return
                if delay > LAST_REREAD_S:
                    log.debug("%s never showed an announced state (a refused write)", key)
                    watched.expected = None
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watched.wake.wait(), delay)
                delay *= 2
        finally:
            watched.reading = None

    async def _read_once(self, key: str) -> OperationView | _Removed | _Unreadable | None:
        """The stored view, REMOVED, None when nothing is stored, or _UNREADABLE."""
        kv = self._kv
        if kv is None:
            return _UNREADABLE
        try:
            async with self._reads:
                entry = await kv.get(key)
            return REMOVED if entry.value is None else decode_view(entry.value)
        except KeyDeletedError:
            return REMOVED
        except KeyNotFoundError:
            return None  # never stored, or (nats-py does not tell which) deleted
        except (nats.errors.Error, TimeoutError, ValueError):
            # One key failing must not keep the others from catching up; the next change of
            # the key, or the next reconnect, reads it again.
            log.warning("could not read the view at %s", key, exc_info=True)
            return _UNREADABLE

    async def _close(self, watched: _WatchedKey) -> None:
        if watched.reading is not None:
            watched.reading.cancel()
        subscription, watched.subscription = watched.subscription, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection may be closing
                await subscription.unsubscribe()
