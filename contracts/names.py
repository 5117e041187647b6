"""Stream, subject, consumer and bucket names: the one place they are spelled.

Subjects are ``ops.events.<tenant>.<operation>.<type>`` so a consumer can filter by tenant, by
operation or by event type with ordinary NATS wildcards. View keys are
``<tenant>.<principal>.<operation>`` so one principal's operations are one key filter away.
"""

import re
from typing import Final

STREAM: Final = "ASYNCGATE_OPERATIONS"
SUBJECT_ROOT: Final = "ops.events"
ALL_EVENTS: Final = f"{SUBJECT_ROOT}.>"
REQUESTED_EVENTS: Final = f"{SUBJECT_ROOT}.*.*.requested"

# Messages a service could not read, set aside with the reason (headers) for an operator.
DEAD_LETTER_STREAM: Final = "ASYNCGATE_DEAD_LETTERS"
DEAD_LETTER_ROOT: Final = "ops.deadletter"

VIEW_BUCKET: Final = "asyncgate_operations"

EXECUTOR_DURABLE: Final = "asyncgate-executor"
PROJECTOR_DURABLE: Final = "asyncgate-projector"

# Tokens that become parts of subjects and keys: no dots, wildcards, whitespace or control
# characters, so no id can widen a subscription or a key filter.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class UnsafeTokenError(ValueError):
    """A tenant, principal or operation id that cannot be part of a subject or key."""


def require_safe_token(value: str, what: str) -> str:
    """Return ``value`` if it is a safe subject/key token, else raise UnsafeTokenError."""
    if not _SAFE_TOKEN.fullmatch(value):
        raise UnsafeTokenError(f"{what} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def event_subject(tenant: str, operation_id: str, event_type: str) -> str:
    """The subject an operation's event of ``event_type`` is published on."""
    return f"{SUBJECT_ROOT}.{tenant}.{operation_id}.{event_type}"


def dead_letter_subject(service: str) -> str:
    """Where ``service`` sets aside the messages it could not read."""
    return f"{DEAD_LETTER_ROOT}.{service}"


def view_key(tenant: str, principal: str, operation_id: str) -> str:
    """The KV key of one operation's view."""
    return f"{tenant}.{principal}.{operation_id}"


def principal_view_keys(tenant: str, principal: str) -> str:
    """A key filter matching every view of one principal."""
    return f"{tenant}.{principal}.*"
