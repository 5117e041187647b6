"""Deciding, without I/O, which terminal event an attempt at an operation ends in.

SUCCESS (OperationCompleted): the operation returned data, even if some fields carry errors; the
errors stay inside the stringified result, exactly as a synchronous call would have returned them.
ERROR (OperationFailed): no data at all, because the whole operation failed (``data`` is null,
for example a non-null root field raised), it timed out, its result was too large to store, or
the executors lost it too often.

And where its result goes (``place_result``): inline in the event, or, when larger than the
inline limit or than a NATS message allows, into the results bucket, the event carrying a
reference instead (services/common/results.py writes it first); above the hard cap, nowhere.
"""

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from contracts.errors import ErrorCode
from contracts.events import (
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    ResultReference,
    TerminalEvent,
    correlation_of,
    encode_event,
    what_ran,
)
from contracts.lifecycle import evolve
from contracts.view import OperationView, encode_view

# Room left for NATS headers (message id, expected-sequence guard) next to the event itself, and
# for the digits of the sequences and attempts a stored view adds.
HEADER_ALLOWANCE_BYTES: Final = 1024
# The error summary of a failure (its errors' messages joined) is cut off after this many
# characters, so that a response of thousands of errors still makes an event that fits.
MAX_ERROR_CHARS: Final = 2000
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
    if len(messages) > MAX_ERROR_CHARS:
        # Every message stays in the response (stored apart when large); the summary is short.
        messages = f"{messages[:MAX_ERROR_CHARS]}... ({len(errors)} errors in all)"
    codes = {(e.get("extensions") or {}).get("code") for e in errors} - {None}
    code = str(codes.pop()) if len(codes) == 1 else ErrorCode.OPERATION_FAILED
    return OperationFailed(**correlation_of(request), code=code, error=messages, response=response)


def naming_what_ran(request: OperationRequested, event: TerminalEvent) -> TerminalEvent:
    """``event`` with the operation name and action of ``request``, whoever built it."""
    return msgspec.structs.replace(event, **what_ran(request))


@dataclass(frozen=True)
class ResultLimits:
    """Where results go: inline in the terminal event up to ``inline_bytes`` of JSON (and only
    if the event and its view fit in one NATS message of ``max_payload``), in the results
    bucket up to ``max_result_bytes``, nowhere above that (RESULT_TOO_LARGE)."""

    max_payload: int
    inline_bytes: int = 256 * 1024
    max_result_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Inline:
    """Store ``event`` as it is; ``payload`` is its wire form."""

    event: TerminalEvent
    payload: bytes


@dataclass(frozen=True)
class ToStore:
    """Write ``body`` (the response's JSON) as an object first, then store ``event`` with a
    reference to it instead of its response (``with_reference``)."""

    event: TerminalEvent
    body: bytes


def place_result(
    request: OperationRequested, event: TerminalEvent, limits: ResultLimits
) -> Inline | ToStore:
    """Whether ``event``'s response travels inline, goes to the results bucket, or is too large
    to keep (then the event is a RESULT_TOO_LARGE failure)."""
    if event.response is None:
        return _fit_to_message(request, event, limits.max_payload)
    body = msgspec.json.encode(event.response)
    if len(body) > limits.max_result_bytes:
        return Inline(*_too_large(request, event, len(body), limits.max_result_bytes))
    if len(body) <= limits.inline_bytes:
        inline = _fits(request, event, limits.max_payload)
        if inline is not None:
            return Inline(event, inline)
    return ToStore(event, body)


def with_reference(
    request: OperationRequested,
    event: TerminalEvent,
    reference: ResultReference,
    limits: ResultLimits,
) -> Inline:
    """``event`` carrying ``reference`` in place of its response, which is stored as that
    object; RESULT_TOO_LARGE if even so it does not fit a message (an error message of
    megabytes, say)."""
    referring = msgspec.structs.replace(event, response=None, response_ref=reference)
    return _fit_to_message(request, referring, limits.max_payload)


def _fit_to_message(request: OperationRequested, event: TerminalEvent, max_payload: int) -> Inline:
    """``event`` if it fits in one message, or else a RESULT_TOO_LARGE failure."""
    payload = _fits(request, event, max_payload)
    if payload is not None:
        return Inline(event, payload)
    size = max(len(encode_event(event)), len(encode_view(_view_of(request, event))))
    return Inline(*_too_large(request, event, size, max_payload - HEADER_ALLOWANCE_BYTES))


def _fits(request: OperationRequested, event: TerminalEvent, max_payload: int) -> bytes | None:
    """The wire form of ``event`` if both it and the view the projector will store from it fit
    in one NATS message; a view also carries the request's operation name, so it can be the
    larger of the two."""
    payload = encode_event(event)
    limit = max_payload - HEADER_ALLOWANCE_BYTES
    size = len(payload)
    if size > limit * _CLEARLY_FITS:
        size = max(size, len(encode_view(_view_of(request, event))))
    return payload if size <= limit else None


def _view_of(request: OperationRequested, event: TerminalEvent) -> OperationView:
    return evolve(evolve(None, request, 1), event, 2)


def _too_large(
    request: OperationRequested, event: TerminalEvent, size: int, limit: int
) -> tuple[OperationFailed, bytes]:
    too_large = OperationFailed(
        **correlation_of(event),
        **what_ran(request),
        code=ErrorCode.RESULT_TOO_LARGE,
        error=f"the result is {size} bytes; results of at most {limit} bytes are stored",
    )
    return too_large, encode_event(too_large)
