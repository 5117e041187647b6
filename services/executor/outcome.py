"""Deciding, without I/O, which terminal event an attempt at an operation ends in.

SUCCESS (OperationCompleted): the operation returned data, even if some fields carry errors; the
errors stay inside the stringified result, exactly as a synchronous call would have returned them.
ERROR (OperationFailed): no data at all, because the whole operation failed (``data`` is null,
for example a non-null root field raised), it timed out, its result was too large to store, or
the executors lost it too often.
"""

from typing import Any, Final

from contracts.events import (
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    TerminalEvent,
    correlation_of,
    encode_event,
)

OPERATION_FAILED: Final = "OPERATION_FAILED"
TIMEOUT: Final = "TIMEOUT"
RESULT_TOO_LARGE: Final = "RESULT_TOO_LARGE"
EXECUTOR_LOST: Final = "EXECUTOR_LOST"

# Room left for NATS headers (Nats-Msg-Id and friends) next to the event itself.
HEADER_ALLOWANCE_BYTES: Final = 1024


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
    code = str(codes.pop()) if len(codes) == 1 else OPERATION_FAILED
    return OperationFailed(**correlation_of(request), code=code, error=messages, response=response)


def fit_to_message(event: TerminalEvent, max_payload: int) -> tuple[TerminalEvent, bytes]:
    """The event and its wire form, or a RESULT_TOO_LARGE failure when it would not fit."""
    payload = encode_event(event)
    limit = max_payload - HEADER_ALLOWANCE_BYTES
    if len(payload) <= limit:
        return event, payload
    too_large = OperationFailed(
        **correlation_of(event),
        code=RESULT_TOO_LARGE,
        error=f"the result is {len(payload)} bytes; results of at most {limit} bytes are stored",
    )
    return too_large, encode_event(too_large)
