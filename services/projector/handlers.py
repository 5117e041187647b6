"""Folding delivered events into views: the projector's handler, apart from its wiring.

Events that arrived together are grouped by operation and each group is folded and written
once; an event is acknowledged only once its view is stored. A fresh request is held a moment
first (``held_requests.py``), so that a quick operation's ending folds into the same write. An
event that cannot be folded is set aside (unreadable, misplaced, a view that cannot be stored)
or handed back with a growing delay, and set aside on its last delivery.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import InvalidKeyError, NotFoundError
from opentelemetry.trace import SpanKind

from contracts.events import OperationRequested
from contracts.lifecycle import folded_at
from contracts.names import view_key
from services.common.active_operations import EndedOperations
from services.common.dead_letters import set_aside
from services.common.metrics import ProjectorMetrics
from services.common.poison import Unusable, admit
from services.common.runtime import retry_delay
from services.common.tracing import Tracing, traceparent_of
from services.projector.held_requests import Delivered, HeldRequests
from services.projector.view_writer import ViewWriter

log = logging.getLogger("asyncgate.projector")

SERVICE = "projector"
# A request folded this long after it was stored may come after an asyncDelete that stopped
# waiting for this projector (services/edge/delete.py waits FOLDED_WAIT_S, 2 s, once the ending
# is stored, then purges the operation's events and view): it is looked up in the stream first.
# Half the delete's wait, so that nats-server's clock (the stored time) and the projector's may
# differ by a second; a fold that keeps up checks nothing.
LATE_FOLD_S: Final = 1.0


@dataclass
class Projection:
    """What the projector's handler needs: the stream, the view writer, the per-user counts of
    active operations, the delivery limit, how long a fresh request waits for its operation's
    next event (0: not at all) and for how many operations at most."""

    js: JetStreamContext
    views: ViewWriter
    ended: EndedOperations
    max_deliver: int
    tracing: Tracing
    metrics: ProjectorMetrics
    hold_requests_s: float = 0.0
    max_held: int = 0
    late_fold_s: float = LATE_FOLD_S
    held: HeldRequests = field(init=False)

    def __post_init__(self) -> None:
        self.held = HeldRequests(self.hold_requests_s, self.max_held, self._fold_held)

    async def fold_batch(self, messages: list[Msg]) -> None:
        """Fold ``messages`` (as they arrived together), one view write per operation."""
        by_key: dict[str, list[Delivered]] = {}
        for raw in messages:
            event = admit(raw.subject, raw.data)
            if isinstance(event, Unusable):
                await self._set_aside_or_leave(raw, event.reason)
                continue
            key = view_key(event.tenant, event.principal, event.operation_id)
            by_key.setdefault(key, []).append((raw, raw.metadata.sequence.stream, event))
        folds = []
        late = datetime.now(UTC) - timedelta(seconds=self.late_fold_s)
        for key, arrived in by_key.items():
            earlier = self.held.take(key)
            if not earlier and _requests_only(arrived) and self.held.hold(key, arrived):
                continue
            delivered = earlier + arrived
            check = _request_stored_before(delivered, late)
            folds.append(self._fold_unless_deleted(key, delivered, check=check))
        await asyncio.gather(*folds)

    async def write_held(self) -> None:
        """Stopping: the held requests' views are written now."""
        await self.held.write_now()

    async def _fold_held(self, key: str, delivered: list[Delivered]) -> None:
        """Fold requests that were held and saw no next event (their operation may have been
        deleted meanwhile)."""
        await self._fold_unless_deleted(key, delivered, check=True)

    async def _fold_unless_deleted(
        self, key: str, delivered: list[Delivered], *, check: bool
    ) -> None:
        """Fold ``delivered``; if ``check``, only while their requests are still in the
        stream: an operation deleted meanwhile (asyncDelete purged its events and view) gets no
        view, and its events are acknowledged. Events without their request need no check: the
        view writer finds no request for them and writes nothing."""
        if check and await self._requests_purged(delivered):
            await asyncio.gather(*(raw.ack() for raw, _, _ in delivered), return_exceptions=True)
            return
        await self._fold(key, delivered)

    async def _requests_purged(self, delivered: list[Delivered]) -> bool:
        """Whether a request among ``delivered`` is gone from its stream (False when NATS
        cannot tell now: the fold's own write meets the same trouble and is retried)."""
        try:
            for raw, sequence, event in delivered:
                if isinstance(event, OperationRequested):
                    await self.js.get_msg(raw.metadata.stream, sequence, direct=True)
        except NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError):
            return False
        return False

    async def _fold(self, key: str, delivered: list[Delivered]) -> None:
        first, _, event = delivered[0]
        with self.tracing.span(
            "fold",
            kind=SpanKind.CONSUMER,
            parent=traceparent_of(first),
            trace_id=event.trace_id,
            operation_id=event.operation_id,
        ):
            await self._fold_and_answer(key, delivered)

    async def _fold_and_answer(self, key: str, delivered: list[Delivered]) -> None:
        # Places in the history stream (a request's is in the requests stream).
        sequences = [
            sequence
            for _, sequence, event in delivered
            if not isinstance(event, OperationRequested)
        ]
        try:
            view = await self.views.apply(
                key,
                [
                    (folded_at(raw.metadata.stream, event, sequence), event)
                    for raw, sequence, event in delivered
                ],
            )
            for _, _, event in delivered:
                await self.ended.release(event)
        except asyncio.CancelledError:
            # Stopping: hand them back now, not after the ack wait, so views never lag for long.
            await asyncio.gather(*(raw.nak() for raw, _, _ in delivered), return_exceptions=True)
            raise
        except (nats.errors.MaxPayloadError, InvalidKeyError) as error:
            # The same on every delivery: the view cannot be stored at all.
            for raw, _, _ in delivered:
                await self._set_aside_or_leave(raw, f"its view cannot be stored: {error!r}")
            return
        except Exception as error:  # any other failure: handed back, set aside in the end
            for raw, sequence, _ in delivered:
                await self._hand_back(raw, sequence, error)
            return
        self.metrics.observe_folded(view, sequences)
        await asyncio.gather(*(raw.ack() for raw, _, _ in delivered))

    async def _hand_back(self, raw: Msg, sequence: int, error: Exception) -> None:
        """Redeliver later, with a growing delay; set aside on the last delivery."""
        delivery = raw.metadata.num_delivered
        if delivery >= self.max_deliver:
            await self._set_aside_or_leave(raw, f"not folded in {delivery} deliveries: {error!r}")
            return
        delay = retry_delay(delivery)
        log.warning(
            "event %d (%s): not folded (%r); retrying in %.1f s",
            sequence,
            raw.subject,
            error,
            delay,
        )
        await raw.nak(delay=delay)

    async def _set_aside_or_leave(self, raw: Msg, reason: str) -> None:
        """Set the message aside; if that cannot be stored now, leave it to be redelivered
        (the other events of its batch go on)."""
        try:
            await set_aside(self.js, raw, SERVICE, reason)
        except (nats.errors.Error, TimeoutError) as error:
            log.warning("could not set aside %s (%r); it will be redelivered", raw.subject, error)
            return
        self.metrics.dead_letters.inc()


def _request_stored_before(delivered: list[Delivered], moment: datetime) -> bool:
    """Whether a request among ``delivered`` was stored before ``moment``."""
    return any(
        isinstance(event, OperationRequested) and raw.metadata.timestamp < moment
        for raw, _, event in delivered
    )


def _requests_only(delivered: list[Delivered]) -> bool:
    return all(isinstance(event, OperationRequested) for _, _, event in delivered)
