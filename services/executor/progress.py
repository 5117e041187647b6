"""Publishing a running attempt's progress reports as throttled OperationProgressed events.

A resolver may report thousands of times a second; the stream gets at most one event per
PUBLISH_EVERY_S per attempt, each carrying the newest report at the time it is sent. The newest
report of all, if not yet published when the attempt ends, rides on the attempt's ending
(``finish`` hands it over, and the runner puts it in the terminal event), so a watcher's last
progress is the last one reported, and it costs no event of its own.

Nothing is published before the attempt's start is visible on the stream. A first delivery runs
the operation while its start is still being stored (services/executor/handlers.py), and that
start is a write guarded on the operation's last sequence: a progress event stored ahead of it
would make the start refused and the run begin again. The handler says when the start is stored
(``START_STORED``, a context variable the run's task inherits), so nothing is read to find out.

The first event waits FIRST_PUBLISH_AFTER_S from the attempt's beginning: an operation that ends
sooner publishes no progress event at all, its ending carrying its last report. Progress is for
operations people wait on; under load, when operations of a fifth of a second took longer than
the throttle interval, a progress event each cost about a quarter of an operation's work
(measured: 2,000 `slowReport(0.2)` ended 2.8 s after the last submit with the first event after
0.25 s, 0.9 s with it after 1 s).
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from msgspec import structs

from contracts.events import (
    OperationProgressed,
    OperationRequested,
    ProgressReport,
    correlation_of,
)
from services.common.event_log import EventLog
from services.common.progress import ProgressReporter

log = logging.getLogger(__name__)

# At most one progress event per attempt in this interval (the final report rides on the ending).
PUBLISH_EVERY_S: Final = 0.25
# No progress event before an attempt has run this long.
FIRST_PUBLISH_AFTER_S: Final = 1.0
# How long the first report waits for the attempt's start to be stored.
START_VISIBLE_WITHIN_S: Final = 5.0

# Set by the executor's handler around an attempt's run: resolves True once the attempt's start
# is stored, False if it was refused.
START_STORED: ContextVar["asyncio.Future[bool] | None"] = ContextVar("start_stored", default=None)


async def _told(start_stored: "asyncio.Future[bool]") -> bool:
    """What the handler says of the attempt's start: stored (True) or refused (False); False
    if it has said nothing within START_VISIBLE_WITHIN_S."""
    if start_stored.done():
        return start_stored.result()
    try:
        async with asyncio.timeout(START_VISIBLE_WITHIN_S):
            return await asyncio.shield(start_stored)
    except TimeoutError:
        return False


class ThrottledProgress(ProgressReporter):
    """One attempt's reporter: keeps the newest report and publishes it, throttled.

    Nothing waits between reports: a report that is not due yet sets one timer, so an attempt
    that ends before its first report is due costs no task at all, and ``finish`` hands its
    final report to the ending (measured: a sleeping publisher task per attempt cost a reporting
    operation about 0.5 ms of the executor's CPU).
    """

    def __init__(self, request: OperationRequested, attempt: int, events: EventLog) -> None:
        self._request = request
        self._attempt = attempt
        self._events = events
        self._reports = 0
        # The newest report not yet published: the event, with its id and time, is made only
        # for the reports that are published.
        self._pending: ProgressReport | None = None
        self._loop = asyncio.get_running_loop()
        # As if an event had been sent just so long ago that the next is due at
        # FIRST_PUBLISH_AFTER_S.
        self._last_sent = self._loop.time() + FIRST_PUBLISH_AFTER_S - PUBLISH_EVERY_S
        self._start_stored = START_STORED.get()
        self._start_seen = False
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None
        self._closed = False

    def _accept(self, done: int, total: int, message: str | None) -> None:
        self._reports += 1
        self._pending = ProgressReport(
            attempt=self._attempt, report=self._reports, done=done, total=total, message=message
        )
        try:
            running_here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            running_here = False  # a synchronous resolver run in a worker thread
        if running_here:
            self._schedule()
        else:
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        """Publish the pending report if it is due, or set the timer for when it is."""
        if (
            self._closed
            or self._pending is None
            or self._timer is not None
            or (self._sending is not None and not self._sending.done())
        ):
            return
        due = self._last_sent + PUBLISH_EVERY_S
        if due > self._loop.time():
            self._timer = self._loop.call_at(due, self._on_due)
        else:
            self._sending = self._loop.create_task(self._send_pending())

    def _on_due(self) -> None:
        self._timer = None
        self._schedule()

    async def _send_pending(self) -> None:
        if not self._start_seen:
            self._start_seen = await self._start_visible()
            if not self._start_seen:
                self._pending, self._closed = None, True
                return
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        await self._publish(
            OperationProgressed(**correlation_of(self._request), **structs.asdict(pending))
        )
        self._last_sent = self._loop.time()
        self._schedule()  # a report that came while this one was sent

    async def _start_visible(self) -> bool:
        """Wait until this attempt's start is stored; False if it never is (refused, or not
        said within START_VISIBLE_WITHIN_S): its reports are then dropped. A run the handler
        did not begin has nobody to say it, and publishes no progress."""
        return self._start_stored is not None and await _told(self._start_stored)

    async def _publish(self, event: OperationProgressed) -> None:
        try:
            await self._events.append(
                event, msg_id=f"{event.operation_id}.progressed.{event.attempt}.{event.report}"
            )
        except Exception as error:  # any failure: a later report, or the ending, follows
            log.warning("operation %s: progress not published (%r)", event.operation_id, error)

    async def finish(self) -> ProgressReport | None:
        """Stop, and hand over the newest report not yet published, for the attempt's ending
        to carry (None if every report was published). The ending is stored only after the
        attempt's start, so carrying the report needs no wait for the start."""
        self._closed = True
        self._cancel_timer()
        if self._sending is not None:
            await self._sending  # a report being sent is older: it is stored first
        pending, self._pending = self._pending, None
        return pending

    async def abandon(self) -> None:
        """Stop without publishing anything more (the attempt was cancelled or failed)."""
        self._closed, self._pending = True, None
        self._cancel_timer()
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(frozen=True)
class ProgressPublisher:
    """Makes each attempt's reporter; one per executor. ``events`` gives the executor's event
    log (opened at start-up, after the publisher is made)."""

    events: Callable[[], EventLog]

    @contextlib.asynccontextmanager
    async def attempt(
        self, request: OperationRequested, attempt: int
    ) -> AsyncIterator[ThrottledProgress]:
        """The reporter of one attempt. The block calls its ``finish`` for the report the
        ending carries; whatever is pending when the block raises (cancelled, timed out) is
        dropped."""
        reporter = ThrottledProgress(request, attempt, self.events())
        try:
            yield reporter
        finally:
            await reporter.abandon()
