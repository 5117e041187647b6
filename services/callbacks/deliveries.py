"""Delivering one operation's callback: the callbacks service's handler, apart from its wiring.

For a terminal event whose request asked for a callback (its ``callback`` flag; others are
acknowledged unread), the operation's facts are read in one request: its request (the URL),
its state (the body) and the callback attempts recorded so far (which attempt this is, whether
it is done, and when the next one is due). One attempt is made, its outcome is stored as a
callback event, and only then is the message acknowledged (delivered, or given up) or handed back
with the pause before the next attempt. NATS trouble hands the message back with a short,
growing delay; a slow receiver holds only its own slot.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind

from contracts.events import (
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    CallbackEvent,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    TerminalEvent,
    correlation_of,
    event_type,
)
from contracts.names import callback_msg_id
from contracts.view import CallbackState, OperationView
from services.callbacks.payload import callback_body
from services.callbacks.schedule import Answer, Delivered, GiveUp, RetryAt, Verdict, judge
from services.callbacks.sender import Sender
from services.callbacks.signing import signed_headers, tenant_secret
from services.common.callback_urls import AllowedHosts, CallbackUrlError, check_callback_url
from services.common.event_log import EventLog, OperationFacts
from services.common.metrics import CallbackMetrics
from services.common.poison import admit
from services.common.runtime import retry_delay
from services.common.tracing import Tracing, traceparent_of

log = logging.getLogger("asyncgate.callbacks")

SERVICE = "callbacks"


class _Flag(msgspec.Struct):
    """The one field of a terminal event read before deciding whether to read the rest."""

    callback: bool = False


_flag_decoder = msgspec.json.Decoder(_Flag)


def wants_callback(payload: bytes) -> bool:
    """Whether a stored terminal event says its request asked for a callback (an unreadable
    one counts as yes, so the full check deals with it)."""
    try:
        return _flag_decoder.decode(payload).callback
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True


def _due(facts: OperationFacts) -> datetime | None:
    """When the next attempt is due, from the newest attempt recorded as to be retried."""
    retries = [event for _, event in facts.callbacks if isinstance(event, CallbackAttempted)]
    return max(retries, key=lambda event: event.attempt).retry_at if retries else None


def outcome_event(
    ending: TerminalEvent, attempt: int, answer: Answer, verdict: Verdict
) -> CallbackEvent:
    """The fact recording attempt ``attempt``'s ``answer`` and what follows it."""
    correlation = correlation_of(ending)
    match verdict:
        case Delivered():
            return CallbackDelivered(**correlation, attempt=attempt, status=answer.status or 0)
        case RetryAt(when=when):
            return CallbackAttempted(
                **correlation,
                attempt=attempt,
                error=answer.describe(),
                status=answer.status,
                retry_at=when,
            )
        case GiveUp():
            return CallbackAbandoned(
                **correlation, attempt=attempt, error=answer.describe(), status=answer.status
            )


@dataclass(frozen=True)
class Callbacks:
    """What the handler needs: the event log, the sender, the signing key, the allowed hosts and
    the retry schedule."""

    events: EventLog
    sender: Sender
    # The current master key, then any still signed with while it replaces them.
    master_keys: tuple[bytes, ...]
    hosts: AllowedHosts
    backoff_s: tuple[float, ...]
    tracing: Tracing
    metrics: CallbackMetrics

    async def handle(self, raw: Msg) -> None:
        """Make the next attempt at the callback of the operation ``raw`` ended; answer ``raw``
        once its outcome is stored."""
        try:
            await self._handle(raw)
        except asyncio.CancelledError:
            # Stopping: hand it back now rather than after the ack wait.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await raw.nak()
            raise
        except (nats.errors.Error, TimeoutError) as error:
            delay = retry_delay(raw.metadata.num_delivered)
            log.warning("%s: NATS trouble (%r); trying again in %.1f s", raw.subject, error, delay)
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await raw.nak(delay=delay)

    async def _handle(self, raw: Msg) -> None:
        event = admit(raw.subject, raw.data)
        if not isinstance(event, OperationCompleted | OperationFailed):
            # The projector sets such a message aside for the operators; nothing to call here.
            log.warning("%s: not a terminal event that can be used; skipped", raw.subject)
            await raw.term()
            return
        facts = await self.events.facts(event.tenant, event.operation_id)
        view = facts.view()
        request = facts.requested[1] if facts.requested else None
        ending = facts.terminal[1] if facts.terminal else None
        if (
            view is None
            or request is None
            or ending is None
            or request.callback_url is None
            or (view.callback is not None and view.callback.state is not CallbackState.PENDING)
        ):
            await raw.ack()  # deleted, asked for no callback, or delivered or given up already
            return
        due = _due(facts)
        now = datetime.now(UTC)
        if due is not None and due > now:
            # Redelivered before its time (a restarted server forgets a nak's delay).
            await raw.nak(delay=(due - now).total_seconds())
            return
        attempt = (view.callback.attempts if view.callback else 0) + 1
        with self.tracing.span(
            "callback",
            kind=SpanKind.CLIENT,
            parent=traceparent_of(raw),
            trace_id=ending.trace_id,
            operation_id=ending.operation_id,
        ):
            started = time.monotonic()
            answer = await self._attempt(request, view, ending)
            self.metrics.attempt_time.observe(time.monotonic() - started)
            verdict = judge(
                answer, attempt=attempt, backoff_s=self.backoff_s, now=datetime.now(UTC)
            )
            record = outcome_event(ending, attempt, answer, verdict)
            await self.events.append(
                record, msg_id=callback_msg_id(ending.operation_id, event_type(record), attempt)
            )
        await self._answer(raw, verdict, attempt, answer)

    async def _attempt(
        self, request: OperationRequested, view: OperationView, ending: TerminalEvent
    ) -> Answer:
        url = request.callback_url or ""
        try:
            # Checked again: the allowed hosts may have changed since it was queued.
            target = check_callback_url(url, self.hosts)
        except CallbackUrlError as error:
            return Answer(error=str(error), refused=True)
        body = callback_body(view, ending)
        secrets = [tenant_secret(key, ending.tenant) for key in self.master_keys]
        headers = signed_headers(secrets, ending.event_id, int(time.time()), body)
        return await self.sender.post(target, body, headers)

    async def _answer(self, raw: Msg, verdict: Verdict, attempt: int, answer: Answer) -> None:
        match verdict:
            case Delivered():
                self.metrics.delivered.inc()
                await raw.ack()
            case RetryAt(when=when):
                self.metrics.retried.inc()
                delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
                log.info(
                    "%s: callback attempt %d failed (%s); next in %.0f s",
                    raw.subject, attempt, answer.describe(), delay,
                )  # fmt: skip
                await raw.nak(delay=delay)
            case GiveUp():
                self.metrics.abandoned.inc()
                log.warning(
                    "%s: callback abandoned after attempt %d (%s)",
                    raw.subject, attempt, answer.describe(),
                )  # fmt: skip
                await raw.ack()
