"""Deciding, without I/O, which terminal event an attempt at an operation ends in.

SUCCESS (OperationCompleted): the operation returned data, even if some fields carry errors; the
errors stay inside the stringified result, exactly as a synchronous call would have returned them.
ERROR (OperationFailed): no data at all, because the whole operation failed (``data`` is null,
for example a non-null root field raised), it timed out, its result was too large to store, or
the executors lost it too often.
"""

from typing import Any, Final

import msgspec

from contracts.errors import ErrorCode
from contracts.events import (
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    TerminalEvent,
    correlation_of,
    encode_event,
    what_ran,
)
from contracts.lifecycle import evolve
from contracts.view import encode_view

# Room left for NATS headers (message id, expected-sequence guard) next to the event itself, and
# for the digits of the sequences and attempts a stored view adds.
HEADER_ALLOWANCE_BYTES: Final = 1024
# Below this share of the limit neither the event nor its view can be near it: skip measuring.
_CLEARLY_FITS = 0.5


def failed(request: OperationRequested, code: str, error: str) -> OperationFailed:
    """The operation ended without data for a reason of asyncgate's own."""
    return OperationFailed(**correlation_of(request), code=code, error=error)


def outcome_of(request: OperationRequested, response: dict[str, Any]) -> TerminalEvent:
    """The terminal event for a GraphQL ``response`` to ``request``."""
    if response.get("data") is not None:
        return OperationCompleted(**correlation_of(request), response=response)
    errors = response.get("errors") or []
    messages = (
        "; ".join(str(e.get("message", "")) for e in errors) or "the operation returned no data"
    )
    codes = {(e.get("extensions") or {}).get("code") for e in errors} - {None}
    code = str(codes.pop()) if len(codes) == 1 else ErrorCode.OPERATION_FAILED
    return OperationFailed(**correlation_of(request), code=code, error=messages, response=response)


def naming_what_ran(request: OperationRequested, event: TerminalEvent) -> TerminalEvent:
    """``event`` with the operation name and action of ``request``, whoever built it."""
    return msgspec.structs.replace(event, **what_ran(request))


def fit_to_message(
    request: OperationRequested, event: TerminalEvent, max_payload: int
) -> tuple[TerminalEvent, bytes]:
    """The event and its wire form, or a RESULT_TOO_LARGE failure when it would not fit.

    Both the event and the view the projector will store from it must fit in one NATS message;
    a view also carries the request's operation name, so it can be the larger of the two.
    """
    payload = encode_event(event)
    limit = max_payload - HEADER_ALLOWANCE_BYTES
    size = len(payload)
    if size > limit * _CLEARLY_FITS:
        view = evolve(evolve(None, request, 1), event, 2)
        size = max(size, len(encode_view(view)))
    if size <= limit:
        return event, payload
    too_large = OperationFailed(
        **correlation_of(event),
        **what_ran(request),
        code=ErrorCode.RESULT_TOO_LARGE,
        error=f"the result is {size} bytes; results of at most {limit} bytes are stored",
    )
    return too_large, encode_event(too_large)
