"""The status view of one operation, as the projector stores it in the KV bucket."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from contracts.events import ResultReference


class TaskStatus(StrEnum):
    """Where an operation is in its life (the names are Business NXT's)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"

    @property
    def is_terminal(self) -> bool:
        """True once the operation has its final outcome."""
        return self in (TaskStatus.SUCCESS, TaskStatus.ERROR)


class OperationProgress(msgspec.Struct, frozen=True, kw_only=True):
    """The latest progress an operation's running attempt reported: ``done`` of ``total``.

    ``attempt``, ``report`` and ``sequence`` say which report it is (internal: they keep the
    fold from going backwards); clients see ``done``, ``total`` and ``message``.
    """

    done: int
    total: int
    message: str | None = None
    attempt: int
    report: int
    sequence: int


class CallbackState(StrEnum):
    """Where an operation's callback is: not yet taken by its receiver (PENDING: before the
    operation ends, and while failed attempts are retried), taken (DELIVERED), or given up
    (FAILED)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class CallbackStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How delivering an operation's callback has gone: its ``state``, the ``attempts`` made, and
    the error of the newest failed one (``last_error``, from attempt ``last_error_attempt``:
    internal, it keeps the fold order-free)."""

    state: CallbackState = CallbackState.PENDING
    attempts: int = 0
    last_error: str | None = None
    last_error_attempt: int = 0


class OperationView(msgspec.Struct, frozen=True, kw_only=True):
    """What a client can read about one operation.

    ``last_sequence`` is the highest sequence folded in of the history stream (0 while only the
    request, stored in a stream of its own, is); ``request_sequence`` the request's place in the
    requests stream (None before it is folded, and for a request stored in the history stream
    before requests had a stream of their own); ``terminal_sequence`` the sequence of the
    terminal event that decided the outcome (the first one stored wins).
    ``listing_ordinal`` is the request's place in the principal's listing (None for operations
    queued before requests carried it); internal, not part of the GraphQL API.
    ``progress`` is the newest progress reported (None until the operation reports any).
    ``callback`` is how its callback has gone (None when its request asked for none).
    ``response_ref``, when set, stands for ``response``: the result is an object in the results
    bucket (a large one), which the projector never reads; the edge does, for clients.
    """

    operation_id: str
    tenant: str
    principal: str
    status: TaskStatus = TaskStatus.QUEUED
    operation_name: str | None = None
    action: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    code: str | None = None
    error: str | None = None
    response: dict[str, Any] | None = None
    response_ref: ResultReference | None = None
    last_sequence: int = 0
    request_sequence: int | None = None
    terminal_sequence: int | None = None
    listing_ordinal: int | None = None
    progress: OperationProgress | None = None
    callback: CallbackStatus | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(OperationView)


def encode_view(view: OperationView) -> bytes:
    """Serialize a view to the JSON stored in the KV bucket."""
    return _encoder.encode(view)


def decode_view(payload: bytes) -> OperationView:
    """Parse a view read from the KV bucket."""
    return _decoder.decode(payload)
