"""Deciding, without I/O, whether a consumed message is an event a service can use.

A message is usable when it decodes as an operation event, it was stored on that event's own
subject (tenant, operation and type all match), and its tenant, principal and operation id are
tokens that can be part of subjects and view keys. Anything else would fail the same way on
every delivery, or worse, be folded into the wrong view: it is set aside, not retried.
"""

from dataclasses import dataclass

import msgspec

from contracts.events import OperationEvent, decode_event, event_type
from contracts.names import UnsafeTokenError, parse_event_subject, require_id_token


@dataclass(frozen=True)
class Unusable:
    """Why a message cannot be used (for the dead letter and the log)."""

    reason: str


def admit(subject: str, payload: bytes) -> OperationEvent | Unusable:
    """The event in a message stored on ``subject``, or why it cannot be used."""
    try:
        event = decode_event(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        return Unusable(f"not a readable operation event: {error}")
    parsed = parse_event_subject(subject)
    if parsed is None:
        return Unusable("not stored on an operation event subject")
    tenant, operation_id, kind = parsed
    if kind != event_type(event):
        return Unusable(f"a {event_type(event)} event stored on a {kind} subject")
    if tenant != event.tenant or operation_id != event.operation_id:
        return Unusable("its tenant or operation id is not the one its subject names")
    try:
        require_id_token(event.tenant, "tenant")
        require_id_token(event.principal, "principal")
        require_id_token(event.operation_id, "operation id")
    except UnsafeTokenError as error:
        return Unusable(f"not usable as a view key: {error}")
    return event
