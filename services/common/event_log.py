"""The event streams as one operation's log: read what they hold, append only if nothing changed.

Reading takes two requests side by side, one per stream (contracts/names.py: the requests, and
everything after them): a batched direct get (``multi_last``) returns the newest event of each
type on the operation's subjects in the history, and another the first messages on its request
subject, which is all a decision or a fresh read needs. Appending to
the operation's history can be guarded like an aggregate's expected version in an event store:
JetStream refuses the write when anything was stored on the operation's subjects after the
sequence the writer last saw (``Nats-Expected-Last-Subject-Sequence`` over the operation's
subject filter, in the stream the event goes to). That is what keeps an operation to exactly one
terminal event and its attempts in order, whatever number of executors race on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from contracts.cloudevents import cloudevent_headers
from contracts.events import (
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    CallbackEvent,
    OperationAttemptFailed,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
    encode_event,
    event_type,
)
from contracts.lifecycle import evolve, folded_at
from contracts.names import REQUESTS_STREAM, STREAM, event_subject, operation_subjects
from contracts.view import OperationView
from services.common.direct_gets import batch_get
from services.common.jetstream_writes import store
from services.common.poison import admit
from services.common.reply_inbox import ReplyInbox
from services.common.tracing import add_traceparent

# A stored event is acknowledged (and a read answered) within this, or the caller retries.
REQUEST_TIMEOUT_S: Final = 5.0
# JetStream's error code for "wrong last sequence" on a guarded publish.
WRONG_LAST_SEQUENCE: Final = 10071
# More events than an operation can have of distinct types; a bound, not an expectation.
MAX_BATCH: Final = 32
# How many of the first messages on an operation's request subject are read. A request is stored
# once (its message id deduplicates retries), so anything after it there is a forgery or
# garbage, which a reader skips: the first usable one is the request.
FIRST_REQUESTS: Final = 4

Stored = tuple[int, OperationEvent]


class AppendConflictError(Exception):
    """Something was stored on the operation's subjects after the sequence the writer saw."""


@dataclass(frozen=True)
class OperationFacts:
    """What the stream holds about one operation: the newest event of each type.

    ``started`` is the latest attempt, ``first_started`` the first (when asked for and
    different), ``terminal`` the one terminal event, ``cancel_requested`` the owner's latest
    request to cancel it, ``attempt_failed`` the latest attempt that failed for a passing
    reason (to be retried), ``callbacks`` the newest record of each kind of callback attempt,
    and ``last_sequence`` the newest message on the operation's subjects in the history stream
    (``STREAM``), readable or not: the sequence a guarded append must name. ``requested``'s
    sequence is its place in the requests stream (0 for a request stored in the history stream,
    before requests had a stream of their own).
    """

    requested: tuple[int, OperationRequested] | None = None
    started: tuple[int, OperationStarted] | None = None
    first_started: tuple[int, OperationStarted] | None = None
    terminal: tuple[int, TerminalEvent] | None = None
    cancel_requested: tuple[int, OperationCancelRequested] | None = None
    attempt_failed: tuple[int, OperationAttemptFailed] | None = None
    callbacks: tuple[tuple[int, CallbackEvent], ...] = ()
    last_sequence: int = 0

    def events(self) -> list[Stored]:
        """The readable events: the request, then the rest in stream order."""
        found = [
            self.requested,
            self.first_started,
            self.started,
            self.cancel_requested,
            self.attempt_failed,
            self.terminal,
            *self.callbacks,
        ]
        by_sequence: dict[int, Stored] = {item[0]: item for item in found[1:] if item is not None}
        history = [by_sequence[sequence] for sequence in sorted(by_sequence)]
        return history if self.requested is None else [self.requested, *history]

    def view(self, base: OperationView | None = None) -> OperationView | None:
        """``base`` (None: nothing yet) with these events folded in, as the projector will."""
        view = base
        for sequence, event in self.events():
            view = evolve(view, event, sequence)
        return view


def facts_from(
    messages: Sequence[tuple[int, str, bytes]], requests: Sequence[tuple[int, str, bytes]] = ()
) -> OperationFacts:
    """The facts in (sequence, subject, payload) messages of one operation's subjects: from the
    history stream (``messages``) and from the requests stream (``requests``).

    A message consumers would set aside (``services.common.poison.admit``) counts for
    ``last_sequence`` only: a reader skips what it cannot use rather than failing on it. A
    request stored in the history stream (before asyncgate stored requests apart) is found there
    when the requests stream has none.
    """
    requested: tuple[int, OperationRequested] | None = None
    started: list[tuple[int, OperationStarted]] = []
    terminals: list[tuple[int, TerminalEvent]] = []
    cancel_requested: tuple[int, OperationCancelRequested] | None = None
    attempt_failed: tuple[int, OperationAttemptFailed] | None = None
    callbacks: list[tuple[int, CallbackEvent]] = []
    last_sequence = 0
    for sequence, subject, payload in messages:
        last_sequence = max(last_sequence, sequence)
        match admit(subject, payload):
            case OperationRequested() as event:
                if requested is None or sequence < requested[0]:
                    requested = (sequence, event)
            case OperationStarted() as event:
                started.append((sequence, event))
            case OperationCompleted() | OperationFailed() as event:
                terminals.append((sequence, event))
            case OperationCancelRequested() as event:
                if cancel_requested is None or sequence > cancel_requested[0]:
                    cancel_requested = (sequence, event)
            case OperationAttemptFailed() as event:
                if attempt_failed is None or event.attempt > attempt_failed[1].attempt:
                    attempt_failed = (sequence, event)
            case CallbackAttempted() | CallbackDelivered() | CallbackAbandoned() as event:
                callbacks.append((sequence, event))
    # A request in the requests stream is the one; one stored in the history stream (before
    # requests were kept apart) is found there otherwise.
    if requested is not None:
        requested = (folded_at(STREAM, requested[1], requested[0]), requested[1])
    requested = _first_request(requests) or requested
    started.sort(key=lambda item: item[1].attempt)
    return OperationFacts(
        requested=requested,
        started=started[-1] if started else None,
        first_started=started[0] if len(started) > 1 else None,
        terminal=min(terminals, key=lambda item: item[0]) if terminals else None,
        cancel_requested=cancel_requested,
        attempt_failed=attempt_failed,
        callbacks=tuple(callbacks),
        last_sequence=last_sequence,
    )


def _first_request(
    requests: Sequence[tuple[int, str, bytes]],
) -> tuple[int, OperationRequested] | None:
    """The first usable request in the requests stream (a later message on its subject, usable
    or not, does not hide it)."""
    for sequence, subject, payload in sorted(requests):
        request = admit(subject, payload)
        if isinstance(request, OperationRequested):
            return sequence, request
    return None


@dataclass
class EventLog:
    """Reads and guarded appends on the event stream, over one NATS connection."""

    nc: NatsClient
    js: JetStreamContext
    # The ce-source of what it stores (None: the service that usually states each fact).
    source: str | None = None
    inbox: ReplyInbox = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = ReplyInbox(self.nc)

    async def facts(
        self, tenant: str, operation_id: str, *, with_first_start: bool = False
    ) -> OperationFacts:
        """The operation's facts in two requests side by side: the newest event of each type in
        the history stream, the first request in the requests stream (one more read when
        ``with_first_start`` and retried)."""
        newest: dict[str, object] = {"multi_last": [operation_subjects(tenant, operation_id)]}
        first_requests: dict[str, object] = {
            "seq": 1,
            "next_by_subj": event_subject(tenant, operation_id, "requested"),
            "batch": FIRST_REQUESTS,
        }
        history, requests = await asyncio.gather(
            batch_get(self.nc, self.inbox, STREAM, newest, limit=MAX_BATCH),
            batch_get(self.nc, self.inbox, REQUESTS_STREAM, first_requests, limit=FIRST_REQUESTS),
        )
        facts = facts_from(history.messages, requests.messages)
        started = facts.started
        if with_first_start and started is not None and started[1].attempt > 1:
            first = await self._first_started(tenant, operation_id)
            if first is not None and first[1].attempt < started[1].attempt:
                facts = dataclasses.replace(facts, first_started=first)
        return facts

    async def append(
        self,
        event: OperationEvent,
        *,
        msg_id: str,
        after: int | None = None,
        payload: bytes | None = None,
        refuse_duplicate: bool = False,
    ) -> int:
        """Store ``event``; return its sequence.

        With ``after``, only if nothing was stored on the operation's subjects since that
        sequence (0: nothing at all); otherwise AppendConflictError and nothing is stored.
        ``msg_id`` makes an unguarded retry of the same fact a no-op inside the dedup window.
        JetStream checks that window before any expectation, so a message with the same id
        stored within it is acknowledged as a duplicate whatever it held: with
        ``refuse_duplicate`` that is an AppendConflictError too (the caller reads what is
        stored and tells its own earlier try from someone else's).
        Every event carries its CloudEvents attributes as headers (contracts/cloudevents.py).
        """
        headers = cloudevent_headers(event, self.source)
        headers["Nats-Msg-Id"] = msg_id
        add_traceparent(headers)
        if after is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(after)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = operation_subjects(
                event.tenant, event.operation_id
            )
        try:
            ack = await store(
                self.inbox,
                event_subject(event.tenant, event.operation_id, event_type(event)),
                encode_event(event) if payload is None else payload,
                headers=headers,
                within_s=REQUEST_TIMEOUT_S,
            )
        except APIError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                raise AppendConflictError(error.description) from None
            raise
        if refuse_duplicate and ack.duplicate:
            raise AppendConflictError(f"a message with id {msg_id} is stored already")
        return ack.seq

    async def _first_started(
        self, tenant: str, operation_id: str
    ) -> tuple[int, OperationStarted] | None:
        try:
            message = await self.js.get_msg(
                STREAM,
                seq=1,
                subject=event_subject(tenant, operation_id, "started"),
                direct=True,
                next=True,
            )
        except NotFoundError:
            return None
        if message.seq is None or message.data is None or message.subject is None:
            return None
        event = admit(message.subject, message.data)
        return (message.seq, event) if isinstance(event, OperationStarted) else None

    async def close(self) -> None:
        """Drop the reply subscription (the connection itself belongs to the caller)."""
        await self.inbox.close()
