"""Putting back the views a NATS crash lost.

On one server the view bucket is written with NATS's async persistence
(``ASYNCGATE_VIEW_PERSIST_MODE``): a view write is acknowledged before it reaches the disk, which
saves one fsync per operation (the stream itself stays synced). A nats-server that dies at the
wrong moment therefore loses the last view writes it acknowledged: milliseconds of them when
the process is killed, whatever the OS had not written yet when the machine loses power. Their
events are safe in the stream, and the projector had acknowledged them.

So at start and after every reconnect, the projector folds again the events stored in the last
``ASYNCGATE_PROJECTOR_VIEW_REPAIR_WINDOW_S`` before the stream's newest one, starting from each
view as stored: a view that has them already is left alone, a lost or older one is written
again (compare-and-set, as every view write). Readers never depended on it meanwhile: a reader
that finds no view, or one not final, reads the stream. Anything older (a machine that stayed
down with unwritten data for longer) is what ``asyncgate ops replay`` rebuilds.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PersistMode
from nats.js.errors import NotFoundError

from contracts.events import OperationRequested
from contracts.names import ALL_EVENTS, STREAM, VIEW_BUCKET, view_key
from services.common.jetstream import stored_at
from services.common.poison import Unusable, admit
from services.common.retry import riding_through
from services.common.stream_reads import read_stream
from services.projector.view_writer import Stored, ViewWriter

log = logging.getLogger("asyncgate.projector")

# Waiting out a server that is still recovering its streams after a restart.
REPAIR_RIDE_THROUGH_S: Final = 30.0
# Views read and written at once while repairing.
REPAIR_CONCURRENCY: Final = 32


async def repair_recent_views(js: JetStreamContext, views: ViewWriter, window_s: float) -> int:
    """Fold the events stored in the last ``window_s`` before the stream's newest one into
    their views as stored, writing those that lack them; how many views were written."""
    newest = await _newest_stored_at(js)
    if newest is None:
        return 0
    recent: dict[str, list[Stored]] = {}

    def collect(msg: Msg) -> None:
        event = admit(msg.subject, msg.data)
        if isinstance(event, Unusable):
            return  # the projector sets it aside; nothing to fold
        key = view_key(event.tenant, event.principal, event.operation_id)
        recent.setdefault(key, []).append((stored_at(msg.reply)[0], event))

    await read_stream(js, STREAM, ALL_EVENTS, collect, since=newest - timedelta(seconds=window_s))
    written = 0
    slots = asyncio.Semaphore(REPAIR_CONCURRENCY)

    async def repair(key: str, events: list[Stored]) -> None:
        nonlocal written
        async with slots:
            if await views.repair(key, events):
                written += 1

    # A lone request is left to the live consumer: it may be holding it (held_requests.py), and
    # a QUEUED view lost after its request was acknowledged is written with the next event
    # (readers find the operation in the stream meanwhile).
    begun = {
        key: events
        for key, events in recent.items()
        if not all(isinstance(event, OperationRequested) for _, event in events)
    }
    await asyncio.gather(*(repair(key, events) for key, events in begun.items()))
    return written


async def writes_views_async(js: JetStreamContext) -> bool:
    """Whether the view bucket acknowledges writes before they are on disk (so a crash can
    lose some): how it was provisioned, not how the settings would provision it today."""
    info = await js.stream_info(f"KV_{VIEW_BUCKET}")
    return bool(info.config.persist_mode == PersistMode.ASYNC)


async def _newest_stored_at(js: JetStreamContext) -> datetime | None:
    """When the stream's newest message was stored (now, if it was deleted since); None when
    the stream holds nothing."""
    last = (await js.stream_info(STREAM)).state.last_seq
    if not last:
        return None
    try:
        found = await js.get_msg(STREAM, last, direct=True)
    except NotFoundError:
        return datetime.now(UTC)
    return found.time or datetime.now(UTC)


@dataclass
class ViewRepairs:
    """Runs the repair in the background, one at a time; asked again while one runs, it runs
    once more after it (a reconnect during a repair may have lost more)."""

    js: JetStreamContext
    views: ViewWriter
    window_s: float
    _running: asyncio.Task[None] | None = field(default=None, init=False)
    _again: bool = field(default=False, init=False)

    def request(self) -> None:
        """Repair soon (at start, and after each reconnect)."""
        if self.window_s <= 0:
            return
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop a repair under way (the next start repairs again)."""
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                written = await riding_through(
                    lambda: repair_recent_views(self.js, self.views, self.window_s),
                    what="repairing recent views",
                    budget_s=REPAIR_RIDE_THROUGH_S,
                )
            except Exception:  # a background task: reported here, or nowhere
                log.exception(
                    "could not check the views of the last %g s; if NATS crashed, "
                    "`asyncgate ops replay --verify` compares them with the stream",
                    self.window_s,
                )
            else:
                if written:
                    log.warning("rewrote %d views that NATS had lost", written)
            if not self._again:
                return
