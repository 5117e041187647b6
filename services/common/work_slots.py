"""A bounded set of running tasks: how many deliveries a service works on at once.

The consumer loop asks ``wait_for_room`` how many messages it may take, so it never holds more
than it can work on (a message waiting in the process would burn its ack wait for nothing), and
each taken message runs as its own task. Stopping first closes the door, then gives the running
tasks a grace period, then cancels the rest (each hands its message back as it is cancelled).
A message that a pull already under way brings in after the door closed is handed back at once,
for another replica, instead of being begun by a service on its way out.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors
from nats.aio.msg import Msg

log = logging.getLogger(__name__)


class WorkSlots:
    """At most ``size`` tasks at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._running: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    @property
    def free(self) -> int:
        """How many more tasks may start now."""
        return 0 if self._closed else self.size - len(self._running)

    async def wait_for_room(self) -> int:
        """Wait until at least one more task may start; how many may. Waits for ever once the
        slots are closed."""
        while self.free <= 0:
            self._room.clear()
            await self._room.wait()
        return self.free

    async def take(self, message: Msg, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work()`` for ``message`` in a slot of its own; once the slots are closed, hand
        the message back instead (JetStream redelivers it, to another replica if there is one)."""
        if self._closed:
            # If NATS is away the message comes back after its ack wait all the same.
            with contextlib.suppress(nats.errors.Error):
                await message.nak()
            return
        self.start(work())

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a slot of its own (the caller took no more than ``free``)."""
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The work handles its own failures; this is a bug, and its message is redelivered.
            log.error("a delivery failed unexpectedly", exc_info=task.exception())
        if not self._closed:
            self._room.set()

    async def close(self, grace_s: float) -> None:
        """Take no more work; wait up to ``grace_s`` for what runs, then cancel the rest."""
        self._closed = True
        if not self._running:
            return
        _, unfinished = await asyncio.wait(set(self._running), timeout=grace_s)
        for task in unfinished:
            task.cancel()
        for task in unfinished:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
