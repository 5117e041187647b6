"""Publishing a running attempt's progress reports as throttled OperationProgressed events.

A resolver may report thousands of times a second; the stream gets at most one event per
PUBLISH_EVERY_S per attempt, each carrying the newest report at the time it is sent, and the
newest report of all is published before the attempt's ending is stored (``finish``), so a
watcher's last progress is the last one reported.

Nothing is published before the attempt's start is visible on the stream. A first delivery runs
the operation while its start is still being stored (services/executor/handlers.py), and that
start is a write guarded on the operation's last sequence: a progress event stored ahead of it
would make the start refused and the run begin again. The handler says when the start is stored
(``START_STORED``, a context variable the run's task inherits), so nothing is read to find out.

The first event waits PUBLISH_EVERY_S from the attempt's beginning like every later one: an
operation that ends sooner stores only its final report, one event rather than two.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from contracts.events import OperationProgressed, OperationRequested, correlation_of
from services.common.event_log import EventLog
from services.common.progress import ProgressReporter

log = logging.getLogger(__name__)

# At most this many progress events per attempt and second (plus the final one).
PUBLISH_EVERY_S: Final = 0.25
# How long the first report waits for the attempt's start to be visible, and how often it looks.
START_VISIBLE_WITHIN_S: Final = 5.0
START_POLL_S: Final = 0.02

# Set by the executor's handler around an attempt's run: resolves True once the attempt's start
# is stored, False if it was refused. Unset (a run started otherwise): the stream is read.
START_STORED: ContextVar["asyncio.Future[bool] | None"] = ContextVar("start_stored", default=None)


class ThrottledProgress(ProgressReporter):
    """One attempt's reporter: keeps the newest report and publishes it, throttled."""

    def __init__(self, request: OperationRequested, attempt: int, events: EventLog) -> None:
        self._request = request
        self._attempt = attempt
        self._events = events
        self._reports = 0
        # The newest report not yet published (report number, done, total, message): the
        # event, with its id and time, is made only for the reports that are published.
        self._pending: tuple[int, int, int, str | None] | None = None
        self._last_sent = time.monotonic()
        self._start_stored = START_STORED.get()
        self._start_seen = False
        self._closing = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def _accept(self, done: int, total: int, message: str | None) -> None:
        self._reports += 1
        self._pending = (self._reports, done, total, message)
        if self._pump is None or self._pump.done():
            try:
                running_here = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                running_here = False  # a synchronous resolver run in a worker thread
            if running_here:
                self._pump = self._loop.create_task(self._publish_pending())
            else:
                self._loop.call_soon_threadsafe(self._start_pump)

    def _start_pump(self) -> None:
        if (self._pump is None or self._pump.done()) and self._pending is not None:
            self._pump = self._loop.create_task(self._publish_pending())

    async def _publish_pending(self) -> None:
        if not self._start_seen:
            self._start_seen = await self._start_visible()
            if not self._start_seen:
                self._pending = None
                return
        while self._pending is not None:
            wait_s = self._last_sent + PUBLISH_EVERY_S - time.monotonic()
            if wait_s > 0 and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait_s)
            (report, done, total, message), self._pending = self._pending, None
            event = OperationProgressed(
                **correlation_of(self._request),
                attempt=self._attempt,
                report=report,
                done=done,
                total=total,
                message=message,
            )
            await self._publish(event)
            self._last_sent = time.monotonic()

    async def _start_visible(self) -> bool:
        """Wait until this attempt's start is on the stream; False if it never shows (or the
        operation has ended): its reports are then dropped."""
        if self._start_stored is not None:
            try:
                async with asyncio.timeout(START_VISIBLE_WITHIN_S):
                    return await asyncio.shield(self._start_stored)
            except TimeoutError:
                return False
        deadline = time.monotonic() + START_VISIBLE_WITHIN_S
        operation = self._request.operation_id
        while time.monotonic() < deadline:
            try:
                facts = await self._events.facts(self._request.tenant, operation)
            except Exception as error:  # any failure: progress is not worth failing the run
                log.warning("operation %s: progress not published (%r)", operation, error)
                return False
            if facts.terminal is not None:
                return False
            if facts.started is not None and facts.started[1].attempt >= self._attempt:
                return True
            await asyncio.sleep(START_POLL_S)
        return False

    async def _publish(self, event: OperationProgressed) -> None:
        try:
            await self._events.append(
                event, msg_id=f"{event.operation_id}.progressed.{event.attempt}.{event.report}"
            )
        except Exception as error:  # any failure: a later report, or the ending, follows
            log.warning("operation %s: progress not published (%r)", event.operation_id, error)

    async def finish(self) -> None:
        """Publish the newest report not yet published, now, and stop."""
        self._closing.set()
        if self._pump is not None:
            await self._pump

    async def abandon(self) -> None:
        """Stop without publishing anything more (the attempt was cancelled or failed)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


@dataclass(frozen=True)
class ProgressPublisher:
    """Makes each attempt's reporter; one per executor. ``events`` gives the executor's event
    log (opened at start-up, after the publisher is made)."""

    events: Callable[[], EventLog]

    @contextlib.asynccontextmanager
    async def attempt(
        self, request: OperationRequested, attempt: int
    ) -> AsyncIterator[ThrottledProgress]:
        """The reporter of one attempt: its newest report is published when the block ends
        normally, dropped when it raises (cancelled, timed out)."""
        reporter = ThrottledProgress(request, attempt, self.events())
        try:
            yield reporter
        except BaseException:
            await reporter.abandon()
            raise
        await reporter.finish()
