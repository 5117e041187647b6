"""Putting back the views a NATS crash lost.

On one server the view bucket is written with NATS's async persistence
(``ASYNCGATE_VIEW_PERSIST_MODE``): a view write is acknowledged before it reaches the disk, which
saves one fsync per operation (the stream itself stays synced). A nats-server that dies at the
wrong moment therefore loses the last view writes it acknowledged: milliseconds of them when
the process is killed, whatever the OS had not written yet when the machine loses power. Their
events are safe in the stream, and the projector had acknowledged them.

So at start and after every reconnect, the projector folds again the events stored in the last
``ASYNCGATE_PROJECTOR_VIEW_REPAIR_WINDOW_S`` before the history stream's newest one (a view
missing its request gets it from the requests stream, as every fold does), starting from each
view as stored: a view that has them already is left alone, a lost or older one is written
again (compare-and-set, as every view write). Readers never depended on it meanwhile: a reader
that finds no view, or one not final, reads the stream. Anything older (a machine that stayed
down with unwritten data for longer) is what ``asyncgate ops replay`` rebuilds.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import PersistMode
from nats.js.errors import NotFoundError

from contracts.events import OperationRequested
from contracts.lifecycle import folded_at
from contracts.names import STREAM, VIEW_BUCKET, view_key
from services.common.direct_gets import StoredMessage, batch_get
from services.common.event_log import EventLog
from services.common.poison import Unusable, admit
from services.common.retry import riding_through
from services.projector.view_writer import Stored, ViewWriter

log = logging.getLogger("asyncgate.projector")

# Waiting out a server that is still recovering its streams after a restart.
REPAIR_RIDE_THROUGH_S: Final = 30.0
# Messages read per batched direct get.
READ_BATCH: Final = 500
# Views read and written at once while repairing.
REPAIR_CONCURRENCY: Final = 32


async def repair_recent_views(events: EventLog, views: ViewWriter, window_s: float) -> int:
    """Fold the events stored in the last ``window_s`` before the stream's newest one into
    their views as stored, writing those that lack them; how many views were written."""
    js = events.js
    last = (await js.stream_info(STREAM)).state.last_seq
    if not last:
        return 0
    since = await _stored_time(js, last) - timedelta(seconds=window_s)
    recent: dict[str, list[Stored]] = {}
    async for sequence, subject, data in _stored_since(events, since, last):
        event = admit(subject, data)
        if isinstance(event, Unusable):
            continue  # the projector sets it aside; nothing to fold
        key = view_key(event.tenant, event.principal, event.operation_id)
        recent.setdefault(key, []).append((folded_at(STREAM, event, sequence), event))
    written = 0
    slots = asyncio.Semaphore(REPAIR_CONCURRENCY)

    async def repair(key: str, stored: list[Stored]) -> None:
        nonlocal written
        async with slots:
            if await views.repair(key, stored):
                written += 1

    # A lone request is left to the live consumer: it may be holding it (held_requests.py), and
    # a QUEUED view lost after its request was acknowledged is written with the next event
    # (readers find the operation in the stream meanwhile).
    begun = {
        key: stored
        for key, stored in recent.items()
        if not all(isinstance(event, OperationRequested) for _, event in stored)
    }
    await asyncio.gather(*(repair(key, stored) for key, stored in begun.items()))
    return written


async def _stored_since(
    events: EventLog, since: datetime, last: int
) -> AsyncIterator[StoredMessage]:
    """The stream's messages stored from ``since`` through sequence ``last``, read by batched
    direct gets (the projector's login may read the stream so, but makes no consumers but its
    own)."""
    request: dict[str, object] = {"start_time": since.isoformat(), "batch": READ_BATCH}
    while True:
        batch = await batch_get(events.nc, events.inbox, STREAM, request, limit=READ_BATCH)
        for stored in batch.messages:
            if stored[0] > last:
                return
            yield stored
        if not batch.messages or batch.messages[-1][0] >= last:
            return
        request = {"seq": batch.messages[-1][0] + 1, "batch": READ_BATCH}


async def _stored_time(js: JetStreamContext, sequence: int) -> datetime:
    """When message ``sequence`` was stored (now, if it was deleted since)."""
    try:
        found = await js.get_msg(STREAM, sequence, direct=True)
    except NotFoundError:
        return datetime.now(UTC)
    return found.time or datetime.now(UTC)


async def writes_views_async(js: JetStreamContext) -> bool:
    """Whether the view bucket acknowledges writes before they are on disk (so a crash can
    lose some): how it was provisioned, not how the settings would provision it today."""
    info = await js.stream_info(f"KV_{VIEW_BUCKET}")
    return bool(info.config.persist_mode == PersistMode.ASYNC)


@dataclass
class ViewRepairs:
    """Runs the repair in the background, one at a time; asked again while one runs, it runs
    once more after it (a reconnect during a repair may have lost more)."""

    events: EventLog
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
                    lambda: repair_recent_views(self.events, self.views, self.window_s),
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
