"""Keeping the requests an executor holds alive, from a thread of its own.

JetStream redelivers a request whose delivery is neither acknowledged nor reported in progress
within the ack wait. Reports sent from the service's event loop stop whenever something holds
that loop: a resolver doing CPU work or a blocking call, or graphql-core completing a large
result (a 50 MB export holds it for seconds, a result near ASYNCGATE_MAX_RESULT_BYTES for
minutes). The request would then be redelivered while it still runs, started again by another
executor, and could end ATTEMPTS_EXHAUSTED although nothing failed.

So the reports come from a thread with its own event loop and NATS connection: Python hands the
GIL from thread to thread every few milliseconds however busy the main loop is, and the thread
only sends ``+WPI`` (work in progress) to each held delivery's reply subject, every third of the
ack wait.

A report sent just as a delivery is handed back with a delay may reach the server after the
hand-back; the server then waits the ack wait instead of the delay before redelivering. Nothing
is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from nats.aio.client import Client as NatsClient

log = logging.getLogger("asyncgate.executor")

IN_PROGRESS: Final = b"+WPI"
# How long start() waits for the thread's connection.
START_TIMEOUT_S: Final = 30.0
THREAD_NAME: Final = "asyncgate-heartbeats"


class Heartbeats:
    """Reports every held delivery in progress every ``every_s`` seconds, from its own thread.

    ``connect`` opens the thread's NATS connection (inside the thread's own event loop).
    """

    def __init__(self, connect: Callable[[], Awaitable[NatsClient]], every_s: float) -> None:
        self._connect = connect
        self.every_s = every_s
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.beats_sent = 0

    def start(self) -> None:
        """Start the thread and wait until its connection is up (raise what kept it down)."""
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the heartbeat connection was not up within {START_TIMEOUT_S} s")
        if self._failure is not None:
            raise self._failure

    @contextlib.contextmanager
    def holding(self, reply: str | None) -> Iterator[None]:
        """Report the delivery whose reply subject is ``reply`` in progress while the block
        runs (a message without one, not from JetStream, needs nothing)."""
        if not reply:
            yield
            return
        with self._lock:
            self._held.add(reply)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(reply)

    def stop(self) -> None:
        """Close the connection and end the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=START_TIMEOUT_S)

    def _serve(self) -> None:
        try:
            asyncio.run(self._beat())
        except BaseException as error:  # reported to start(), or logged once started
            self._failure = error
            if self._ready.is_set():
                log.error("the heartbeat thread stopped", exc_info=error)
            self._ready.set()

    async def _beat(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await self._connect()
        self._ready.set()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.every_s)
                    break
                with self._lock:
                    held = list(self._held)
                for reply in held:
                    try:
                        await nc.publish(reply, IN_PROGRESS)
                    except Exception as error:  # any failure: the next round tries again
                        log.warning("could not report progress to JetStream (%s)", error)
                        break
                    self.beats_sent += 1
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
