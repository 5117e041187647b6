"""Operation events: past-tense facts, frozen and keyword-only, each with the same envelope.

An operation's life is OperationRequested, then OperationStarted (once per attempt), then exactly
one terminal fact: OperationCompleted (status SUCCESS) or OperationFailed (status ERROR). An
attempt that ends within moments of starting stores no OperationStarted: its start rides on its
ending instead (``start``), as an attempt's last progress report may.
OperationCancelRequested may come at any time; it changes no status by itself: the operation
then ends as OperationFailed with code CANCELLED (unless it had ended already).
OperationAttemptFailed follows an attempt that failed for a passing reason and will be retried;
it is not terminal (the next attempt's OperationStarted follows it).
OperationProgressed (zero or more, while an attempt runs) reports how far it has got; it is not
terminal and changes no status either. An attempt's last report may instead ride on its ending.

An operation queued with a callback URL is POSTed to it once it has ended; each attempt at that
is a fact after the terminal one: CallbackAttempted (failed, will be tried again),
CallbackDelivered (the receiver took it) or CallbackAbandoned (given up). They change no status.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Final, TypedDict

import msgspec

from contracts.errors import ErrorCode

SCHEMA_VERSION: Final = 1


def new_event_id() -> str:
    """A fresh, globally unique event id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope every operation event carries."""

    event_id: str = msgspec.field(default_factory=new_event_id)
    schema_version: int = SCHEMA_VERSION
    operation_id: str
    tenant: str
    principal: str
    occurred_at: datetime = msgspec.field(default_factory=utc_now)
    trace_id: str


class ActionInvocation(msgspec.Struct, frozen=True, kw_only=True):
    """A call of a user's HTTP action handler, Hasura style."""

    name: str
    input: dict[str, Any]
    session_variables: dict[str, str] = msgspec.field(default_factory=dict)
    client_headers: dict[str, str] = msgspec.field(default_factory=dict)


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """A secret sealed with AES-256-GCM (or 128/192 by key size) under the key named ``kid``:
    ``nonce`` and ``ciphertext`` (with its tag) in unpadded base64url. Only a holder of the key
    reads it; the operation it belongs to is bound in as associated data, so it cannot be moved
    onto another operation's request."""

    kid: str
    nonce: str
    ciphertext: str


class ForwardedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What an upstream GraphQL API is told about the caller when the operation runs (upstream
    mode, ``ASYNCGATE_UPSTREAM_URL``): the caller's Hasura-style session variables and, when
    ``ASYNCGATE_UPSTREAM_FORWARD_AUTHORIZATION`` is on, their ``Authorization`` header, sealed.
    """

    session_variables: dict[str, str] = msgspec.field(default_factory=dict)
    authorization: SealedSecret | None = None


class OperationRequested(Event, frozen=True, kw_only=True, tag="requested"):
    """A client asked for a GraphQL document, or an action, to be run in the background.

    For an action, ``action`` says which handler to call with what, and ``query`` is the
    client's request document (sent to the handler as ``request_query``).

    ``listing_ordinal`` is the operation's place in its principal's listing (the ordinal the
    edge took from the principal's counter, services/common/listing.py); null in requests
    stored before the request carried it.

    ``start_by``: an operation not started by then never runs and ends EXPIRED (null: no
    deadline). ``timeout_s``: the client's own time limit for a run, in seconds; the executor
    applies the smaller of it and its own (null: the executor's alone).

    ``forwarded``: who the caller is, for an upstream GraphQL API (null outside upstream mode).
    ``callback_url``: where the operation's final state is POSTed once it has ended (asyncQuery's
    ``callbackUrl``, an action's ``callback_url``); null: no callback.
    """

    query: str
    variables: dict[str, Any] = msgspec.field(default_factory=dict)
    operation_name: str | None = None
    action: ActionInvocation | None = None
    listing_ordinal: int | None = None
    start_by: datetime | None = None
    timeout_s: float | None = None
    forwarded: ForwardedIdentity | None = None
    callback_url: str | None = None


class OperationStarted(Event, frozen=True, kw_only=True, tag="started"):
    """An executor began an attempt at the operation.

    ``attempt`` counts the starts (1 is the first; a later one means an earlier attempt was
    lost with its executor). ``delivery`` is the JetStream delivery of the request that made
    this start, so an older delivery can tell it has been overtaken (0: not recorded).
    """

    attempt: int
    worker: str
    delivery: int = 0


class AttemptStart(msgspec.Struct, frozen=True, kw_only=True):
    """The start of the attempt an ending concludes, carried by the ending rather than stored
    as an OperationStarted of its own: the same ``attempt``, ``worker`` and ``delivery``, and
    ``started_at`` where OperationStarted has its envelope's ``occurred_at``."""

    attempt: int
    worker: str
    delivery: int
    started_at: datetime


class ResultReference(msgspec.Struct, frozen=True, kw_only=True):
    """Where a result too large to carry in its event is kept: the object ``name`` in the
    results bucket (contracts.names.RESULTS_BUCKET, a JetStream Object Store), ``size`` bytes
    of JSON whose SHA-256 is ``digest`` (``SHA-256=`` and the digest in base64url, as the
    Object Store writes it). The object holds exactly the JSON ``response`` would have held.
    """

    name: str
    size: int
    digest: str


class ProgressReport(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt's last progress report, carried by the attempt's ending rather than stored as
    an OperationProgressed event of its own: ``report`` numbers it as OperationProgressed does."""

    attempt: int
    report: int
    done: int
    total: int
    message: str | None = None


class OperationCompleted(Event, frozen=True, kw_only=True, tag="completed"):
    """The operation produced data: ``response`` is the synchronous GraphQL response.

    A response over ASYNCGATE_INLINE_RESULT_BYTES is not carried: ``response`` is then null and
    ``response_ref`` says where the object holding it is (stored before this event). Events
    stored before results could be stored apart have no ``response_ref``.

    What ran: ``operation_name`` is the GraphQL operation name of the document (null for an
    anonymous operation), ``action`` the action's name (null unless an action ran). Both are
    null in events stored before asyncgate recorded them. ``callback``: its request asked for a
    callback (so the callbacks service reads the request only for these). ``progress``: the
    attempt's last progress report when it was not published on its own before the ending
    (null if there was none, and in events stored before endings carried it). ``start``: the
    start of the attempt that ended, when it was not stored as an OperationStarted (an attempt
    that ended within moments; null otherwise, for endings of operations never run, and in
    events stored before endings carried it).
    """

    response: dict[str, Any] | None = None
    response_ref: ResultReference | None = None
    operation_name: str | None = None
    action: str | None = None
    callback: bool = False
    progress: ProgressReport | None = None
    start: AttemptStart | None = None


class OperationFailed(Event, frozen=True, kw_only=True, tag="failed"):
    """The operation produced no data; ``response`` holds the GraphQL response if there was one.

    ``code`` is a stable error code and ``error`` a message for people. ``operation_name``,
    ``action``, ``callback``, ``progress``, ``start`` and ``response_ref`` (standing for a
    large ``response``) as in OperationCompleted.
    """

    code: str
    error: str
    response: dict[str, Any] | None = None
    response_ref: ResultReference | None = None
    operation_name: str | None = None
    action: str | None = None
    callback: bool = False
    progress: ProgressReport | None = None
    start: AttemptStart | None = None


class OperationCancelRequested(Event, frozen=True, kw_only=True, tag="cancel_requested"):
    """The operation's owner asked for it to be cancelled (asyncCancel).

    No executor starts the operation once this is stored; the one running it (if any) cancels
    its attempt and ends it as OperationFailed with code CANCELLED.
    """


class OperationAttemptFailed(Event, frozen=True, kw_only=True, tag="attempt_failed"):
    """Attempt ``attempt`` failed for a passing reason (an action handler's 5xx, refused
    connection or time-out) and the operation will be tried again from ``retry_at``.

    Not terminal: the status stays RUNNING until the next attempt ends it. ``code`` and
    ``error`` are what the attempt would have ended in; after the last attempt allowed the
    same failure is stored as OperationFailed instead.
    """

    attempt: int
    code: str
    error: str
    retry_at: datetime


class OperationProgressed(Event, frozen=True, kw_only=True, tag="progressed"):
    """A running attempt reported how far it has got (its resolver called
    ``info.context.progress.report``); the executor publishes these throttled, the latest value
    always last.

    ``done`` of ``total`` steps, with an optional ``message`` for people. ``attempt`` is the
    attempt reporting it and ``report`` counts its reports (1 is the first), so a reader can
    tell a newer report from an older one whatever order they arrive in.
    """

    attempt: int
    report: int
    done: int
    total: int
    message: str | None = None


class CallbackAttempted(Event, frozen=True, kw_only=True, tag="callback_attempted"):
    """Attempt ``attempt`` at POSTing the operation's final state to its callback URL failed and
    will be tried again from ``retry_at``.

    ``error`` says why (for people); ``status`` is the receiver's HTTP status, null when there
    was no answer (refused, timed out, an address not allowed).
    """

    attempt: int
    error: str
    status: int | None = None
    retry_at: datetime


class CallbackDelivered(Event, frozen=True, kw_only=True, tag="callback_delivered"):
    """Attempt ``attempt`` was answered with a 2xx ``status``: the callback is delivered."""

    attempt: int
    status: int


class CallbackAbandoned(Event, frozen=True, kw_only=True, tag="callback_abandoned"):
    """Attempt ``attempt`` failed (``error``, ``status`` as in CallbackAttempted) and no other
    will be made: the retry schedule is used up, or the receiver refused it for good."""

    attempt: int
    error: str
    status: int | None = None


class Correlation(TypedDict):
    """The envelope fields every event of one operation shares."""

    operation_id: str
    tenant: str
    principal: str
    trace_id: str


def correlation_of(event: Event) -> Correlation:
    """The shared envelope fields of ``event``, to start another event of the same operation."""
    return {
        "operation_id": event.operation_id,
        "tenant": event.tenant,
        "principal": event.principal,
        "trace_id": event.trace_id,
    }


class WhatRan(TypedDict):
    """What a terminal event names: the GraphQL operation name of the document that ran (None
    for an anonymous operation), for an action the action's name (None otherwise), and whether
    its request asked for a callback."""

    operation_name: str | None
    action: str | None
    callback: bool


def what_ran(request: OperationRequested) -> WhatRan:
    """The names a terminal event of ``request`` carries."""
    return {
        "operation_name": request.operation_name,
        "action": None if request.action is None else request.action.name,
        "callback": request.callback_url is not None,
    }


def cancelled(request: OperationRequested) -> OperationFailed:
    """How an operation its owner cancelled (asyncCancel) ends, whoever stores it."""
    return OperationFailed(
        **correlation_of(request),
        **what_ran(request),
        code=ErrorCode.CANCELLED,
        error="the operation was cancelled by its owner",
    )


OperationEvent = (
    OperationRequested
    | OperationStarted
    | OperationCompleted
    | OperationFailed
    | OperationCancelRequested
    | OperationAttemptFailed
    | OperationProgressed
    | CallbackAttempted
    | CallbackDelivered
    | CallbackAbandoned
)
TerminalEvent = OperationCompleted | OperationFailed
CallbackEvent = CallbackAttempted | CallbackDelivered | CallbackAbandoned

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[OperationEvent] = msgspec.json.Decoder(OperationEvent)


def event_type(event: OperationEvent) -> str:
    """The tag of an event, also the last token of its subject."""
    return str(type(event).__struct_config__.tag)


def encode_event(event: OperationEvent) -> bytes:
    """Serialize an event to its JSON wire form."""
    return _encoder.encode(event)


def decode_event(payload: bytes) -> OperationEvent:
    """Parse an event's JSON wire form; raises a msgspec error (a ValueError) on bad input."""
    return _decoder.decode(payload)
