"""Stream, subject, consumer and bucket names: the one place they are spelled.

Subjects are ``ops.events.<tenant>.<operation>.<type>`` so a consumer can filter by tenant, by
operation or by event type with ordinary NATS wildcards. View keys are
``<tenant>.<principal>.<operation>`` so one principal's operations are one key filter away.
"""

import base64
import re
from typing import Final

SUBJECT_ROOT: Final = "ops.events"
ALL_EVENTS: Final = f"{SUBJECT_ROOT}.>"
REQUESTED_EVENTS: Final = f"{SUBJECT_ROOT}.*.*.requested"
# The events are stored in two streams: the requests in one, everything that happens to an
# operation after it in the other. With every write synced (infra/nats/nats.conf), nats-server
# syncs one stream's messages one at a time, so one stream holding both a request and its ending
# capped an operation at two syncs in a row; two streams sync side by side. Each operation's
# history after its request stays in one stream, with one sequence order, which guarded appends
# (services/common/event_log.py) and the view's positions rely on. The subjects stay one tree:
# a subscriber to ALL_EVENTS sees both.
REQUESTS_STREAM: Final = "ASYNCGATE_REQUESTS"
STREAM: Final = "ASYNCGATE_OPERATIONS"
# The event types stored in STREAM: every type but ``requested`` (contracts/events.py's tags; a
# unit test keeps the two lists together). A message on any other subject has no stream.
HISTORY_EVENT_TYPES: Final = (
    "started",
    "attempt_failed",
    "progressed",
    "cancel_requested",
    "completed",
    "failed",
    "callback_attempted",
    "callback_delivered",
    "callback_abandoned",
)
HISTORY_EVENTS: Final = tuple(f"{SUBJECT_ROOT}.*.*.{kind}" for kind in HISTORY_EVENT_TYPES)
EVENT_STREAMS: Final = (REQUESTS_STREAM, STREAM)
# Every way an operation ends is one of these two (cancelled and expired are ``failed`` with a
# code): what the callbacks service consumes.
TERMINAL_EVENTS: Final = (f"{SUBJECT_ROOT}.*.*.completed", f"{SUBJECT_ROOT}.*.*.failed")
# The facts the callbacks service stores about delivering an operation's callback.
CALLBACK_EVENT_TYPES: Final = ("callback_attempted", "callback_delivered", "callback_abandoned")

# Messages a service could not read, set aside with the reason (headers) for an operator.
DEAD_LETTER_STREAM: Final = "ASYNCGATE_DEAD_LETTERS"
DEAD_LETTER_ROOT: Final = "ops.deadletter"

VIEW_BUCKET: Final = "asyncgate_operations"
# Per-user limit state (active operations, last start), keyed <tenant>.<principal>.
LIMITS_BUCKET: Final = "asyncgate_limits"

# Each principal's operations in the order they were queued, for paging newest first: key
# <tenant>.<principal>.n.<ordinal> holds the operation id (the request carries its ordinal).
# Operations queued before requests carried it also have <tenant>.<principal>.o.<operation>
# holding their ordinal. Ordinals come from a per-principal counter (a JetStream counter stream,
# one subject per principal), so queueing needs no compare-and-set.
LISTING_BUCKET: Final = "asyncgate_listing"
LISTING_COUNTER_STREAM: Final = "ASYNCGATE_LISTING_COUNTERS"
LISTING_COUNTER_ROOT: Final = "listing.count"

# Idempotency keys a principal has used, keyed <tenant>.<principal>.<sha256 of the key>: each
# holds the operation the key queued and a digest of what was asked (services/edge/idempotency.py).
IDEMPOTENCY_BUCKET: Final = "asyncgate_idempotency"

# Results too large to carry in their terminal event (over ASYNCGATE_INLINE_RESULT_BYTES): a
# JetStream Object Store (stream OBJ_asyncgate_results), kept as long as the views. The executor
# writes an object before the event that refers to it; the edge reads and deletes them.
RESULTS_BUCKET: Final = "asyncgate_results"

EXECUTOR_DURABLE: Final = "asyncgate-executor"
PROJECTOR_DURABLE: Final = "asyncgate-projector"
CALLBACKS_DURABLE: Final = "asyncgate-callbacks"

# Tokens that become parts of subjects and keys: no dots, wildcards, whitespace or control
# characters, so no id can widen a subscription or a key filter.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class UnsafeTokenError(ValueError):
    """A tenant, principal or operation id that cannot be part of a subject or key."""


# Ids longer than this (before encoding) are refused rather than encoded.
MAX_ID_CHARS: Final = 256
_ENCODED_MARK: Final = "="
# Up to 256 characters of up to 4 UTF-8 bytes each, in unpadded base64url.
_ENCODED_TOKEN = re.compile(r"=[A-Za-z0-9_-]{2,1366}")


def encode_id(value: str, what: str) -> str:
    """A tenant or user id as a safe subject/key token.

    A safe id stays as it is; any other (an e-mail address, a dotted name) becomes ``=`` and its
    unpadded base64url, which is safe too and can never equal a plain id (``=`` is not in the
    safe set), so two ids never share a token. Empty, overlong or non-printable ids are refused.
    """
    if _SAFE_TOKEN.fullmatch(value):
        return value
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise UnsafeTokenError(f"{what} must be 1-{MAX_ID_CHARS} printable characters")
    encoded = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    return _ENCODED_MARK + encoded


def decode_id(token: str) -> str:
    """The id a token stands for (the inverse of ``encode_id``)."""
    if not token.startswith(_ENCODED_MARK):
        return token
    body = token[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def require_id_token(value: str, what: str) -> str:
    """Return ``value`` if it is a token ``encode_id`` could have made, else raise."""
    if _SAFE_TOKEN.fullmatch(value) or _ENCODED_TOKEN.fullmatch(value):
        return value
    raise UnsafeTokenError(f"{what} {value!r} is not a safe token")


def stream_of(event_type: str) -> str:
    """The stream an event of ``event_type`` is stored in."""
    return REQUESTS_STREAM if event_type == "requested" else STREAM


def event_subject(tenant: str, operation_id: str, event_type: str) -> str:
    """The subject an operation's event of ``event_type`` is published on."""
    return f"{SUBJECT_ROOT}.{tenant}.{operation_id}.{event_type}"


def dead_letter_subject(service: str) -> str:
    """Where ``service`` sets aside the messages it could not read."""
    return f"{DEAD_LETTER_ROOT}.{service}"


def view_key(tenant: str, principal: str, operation_id: str) -> str:
    """The KV key of one operation's view."""
    return f"{tenant}.{principal}.{operation_id}"


def idempotency_key(tenant: str, principal: str, key_digest: str) -> str:
    """The idempotency bucket's key of one principal's key (given as its hex SHA-256)."""
    return f"{tenant}.{principal}.{key_digest}"


def limits_key(tenant: str, principal: str) -> str:
    """The limits bucket's key of one principal's active operations and last start."""
    return f"{tenant}.{principal}"


def listing_counter_subject(tenant: str, principal: str) -> str:
    """The counter subject handing out one principal's listing ordinals."""
    return f"{LISTING_COUNTER_ROOT}.{tenant}.{principal}"


def listing_entry_key(tenant: str, principal: str, ordinal: int) -> str:
    """The listing key holding the id of the principal's operation number ``ordinal``."""
    return f"{tenant}.{principal}.n.{ordinal}"


def listing_position_key(tenant: str, principal: str, operation_id: str) -> str:
    """The listing key holding the ordinal of one operation queued before its request carried
    the ordinal (read for such operations, written for them only when rebuilding)."""
    return f"{tenant}.{principal}.o.{operation_id}"


def principal_view_keys(tenant: str, principal: str) -> str:
    """A key filter matching every view of one principal."""
    return f"{tenant}.{principal}.*"


def operation_subjects(tenant: str, operation_id: str) -> str:
    """A subject filter matching every event of one operation."""
    return f"{SUBJECT_ROOT}.{tenant}.{operation_id}.*"


_SUBJECT_ROOT_TOKENS: Final = SUBJECT_ROOT.count(".") + 1


def parse_event_subject(subject: str) -> tuple[str, str, str] | None:
    """(tenant, operation id, event type) of an event subject, or None if it is not one."""
    tokens = subject.split(".")
    if len(tokens) != _SUBJECT_ROOT_TOKENS + 3 or ".".join(tokens[:_SUBJECT_ROOT_TOKENS]) != (
        SUBJECT_ROOT
    ):
        return None
    tenant, operation_id, event_type = tokens[_SUBJECT_ROOT_TOKENS:]
    return tenant, operation_id, event_type


def result_object_name(operation_id: str, event_id: str) -> str:
    """The name of the object holding the result of the terminal event ``event_id`` of an
    operation. Retrying the write of one outcome rewrites the same object; another attempt's
    outcome (which may differ) never overwrites the one a stored event refers to."""
    return f"{operation_id}.{event_id}"


def terminal_msg_id(operation_id: str) -> str:
    """The message id of an operation's terminal event, whoever stores it: a retried or racing
    write of an ending is deduplicated to the first."""
    return f"{operation_id}.terminal"


def callback_msg_id(operation_id: str, event_type: str, attempt: int) -> str:
    """The message id of the fact (of ``event_type``) recording callback attempt ``attempt``: a
    retried write of it is stored once."""
    return f"{operation_id}.{event_type}.{attempt}"
