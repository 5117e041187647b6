"""One delivered request, from the message to its acknowledgement.

The message is acknowledged only once the operation's terminal event is stored; handed back
with a growing delay when NATS trouble or a contested operation kept it from ending; left alone
when a newer delivery owns the request; and set aside when it is not a readable request.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from contracts.events import OperationRequested, TerminalEvent
from services.actions.config import Retry
from services.common.dead_letters import set_aside
from services.common.event_log import EventLog
from services.common.metrics import ExecutorMetrics
from services.common.poison import Unusable, admit
from services.common.results import ResultStore
from services.common.runtime import retry_delay
from services.common.tracing import Tracing, traceparent_of
from services.executor.handlers import (
    ContestedOperationError,
    RetryScheduledError,
    SupersededDeliveryError,
    handle_requested,
    no_retry,
)
from services.executor.heartbeats import Heartbeats
from services.executor.outcome import ResultLimits

log = logging.getLogger("asyncgate.executor")

SERVICE = "executor"
# A request stored less than this long ago, while this executor was taking requests, is run on
# its first delivery without reading the stream first (nothing else is likely to have happened
# to it yet). Any other may have been cancelled while it waited, so its facts are read before
# it is begun. (The server's clock stamps the request; this machine's is compared with it.)
FRESH_REQUEST_S: Final = 1.0


@dataclass(frozen=True)
class Deliveries:
    """What handling a delivery needs: the stream, the runner, who we are, the limits."""

    js: JetStreamContext
    events: EventLog
    run: Callable[[OperationRequested, int], Awaitable[TerminalEvent]]
    worker: str
    max_attempts: int
    # Where results go: inline, or written to the results bucket first.
    limits: ResultLimits
    results: ResultStore
    # Reports each delivery in hand in progress, whatever holds the event loop.
    heartbeats: Heartbeats
    tracing: Tracing
    metrics: ExecutorMetrics
    # How often a request that fails for a passing reason is tried (default: once).
    retries: Callable[[OperationRequested], Retry] = no_retry
    # When this executor started taking requests.
    online_since: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    async def handle(self, raw: Msg) -> None:
        """Act on one delivery; acknowledge it once its operation has ended."""
        request = admit(raw.subject, raw.data)
        if not isinstance(request, OperationRequested):
            # The subject filter and admit's subject check let only requests through.
            reason = request.reason if isinstance(request, Unusable) else "not a request"
            await self._set_aside_or_leave(raw, reason)
            return
        with self.tracing.span(
            "run",
            kind=SpanKind.CONSUMER,
            parent=traceparent_of(raw),
            trace_id=request.trace_id,
            operation_id=request.operation_id,
        ):
            await self._handle_request(raw, request)

    async def _handle_request(self, raw: Msg, request: OperationRequested) -> None:
        metadata = raw.metadata
        delivery = metadata.num_delivered
        try:
            with self.heartbeats.holding(raw.reply):
                outcome = await handle_requested(
                    request,
                    delivery=delivery,
                    requested_at=metadata.sequence.stream,
                    max_attempts=self.max_attempts,
                    events=self.events,
                    run=self.run,
                    worker=self.worker,
                    limits=self.limits,
                    results=self.results,
                    fresh=self._fresh(metadata.timestamp),
                    retries=self.retries,
                )
        except SupersededDeliveryError:
            # Neither ack nor nak: the newer delivery owns the request now.
            return
        except RetryScheduledError as retry:
            # Its redelivery, once the back-off has passed, runs the next attempt.
            delay = retry.delay_s(datetime.now(UTC))
            log.info("operation %s: retrying in %.1f s", request.operation_id, delay)
            await _answer(raw.nak(delay=delay), request.operation_id)
            return
        except asyncio.CancelledError:
            # Shutting down mid-operation: hand it back now instead of after the ack wait.
            await _answer(raw.nak(), request.operation_id)
            raise
        except Exception as error:  # any failure: handed back to be tried again later
            await self._hand_back(raw, request, delivery, error)
            return
        if outcome is not None:
            self.metrics.count_outcome(outcome)
        await _answer(raw.ack(), request.operation_id)

    def _fresh(self, stored_at: datetime) -> bool:
        """Whether a request stored at ``stored_at`` is fresh enough to begin unread."""
        age_s = (datetime.now(UTC) - stored_at).total_seconds()
        return stored_at > self.online_since and age_s < FRESH_REQUEST_S

    async def _hand_back(
        self, raw: Msg, request: OperationRequested, delivery: int, error: Exception
    ) -> None:
        delay = retry_delay(delivery)
        if isinstance(error, nats.errors.Error | TimeoutError | ContestedOperationError):
            trouble = "contested" if isinstance(error, ContestedOperationError) else "NATS"
            log.warning(
                "operation %s: %s trouble (%s); handing it back for delivery %d in %.1f s",
                request.operation_id,
                trouble,
                str(error) or type(error).__name__,
                delivery + 1,
                delay,
            )
        else:
            log.error(
                "operation %s: delivery %d failed; handing it back",
                request.operation_id,
                delivery,
                exc_info=error,
            )
        await _answer(raw.nak(delay=delay), request.operation_id)

    async def _set_aside_or_leave(self, raw: Msg, reason: str) -> None:
        try:
            await set_aside(self.js, raw, SERVICE, reason)
        except (nats.errors.Error, TimeoutError) as error:
            log.warning("could not set aside %s (%r); it will be redelivered", raw.subject, error)
            return
        self.metrics.dead_letters.inc()


async def _answer(answering: Awaitable[None], operation_id: str) -> None:
    """Send an ack or nak; if NATS is away, JetStream redelivers after the ack wait instead,
    and the next delivery finds the operation's facts as they are."""
    try:
        await answering
    except nats.errors.Error as error:
        log.warning("operation %s: could not answer its delivery (%s)", operation_id, error)
