"""CloudEvents 1.0 attributes of every operation event, carried as NATS headers.

Binary content mode: the message body is the event's JSON as it always was, and each CloudEvents
attribute is a ``ce-`` header, so a consumer can route and deduplicate on the headers without
parsing the body, and a CloudEvents SDK reads the message as a CloudEvent.
"""

from datetime import UTC
from typing import Final

import msgspec

from contracts.events import OperationEvent, event_type

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"

SPEC_VERSION_HEADER: Final = "ce-specversion"
ID_HEADER: Final = "ce-id"
SOURCE_HEADER: Final = "ce-source"
TYPE_HEADER: Final = "ce-type"
TIME_HEADER: Final = "ce-time"
SUBJECT_HEADER: Final = "ce-subject"
CONTENT_TYPE_HEADER: Final = "content-type"

TYPE_PREFIX: Final = "io.asyncgate.operation."
EDGE_SOURCE: Final = "asyncgate/edge"
# Which service usually states each fact: the edge queues requests, the executors run them (the
# edge also ends an operation cancelled before it started: its EventLog names itself instead).
SOURCES: Final = {
    "requested": "asyncgate/edge",
    "started": "asyncgate/executor",
    "completed": "asyncgate/executor",
    "failed": "asyncgate/executor",
    "cancel_requested": "asyncgate/edge",
    "attempt_failed": "asyncgate/executor",
    "progressed": "asyncgate/executor",
    "callback_attempted": "asyncgate/callbacks",
    "callback_delivered": "asyncgate/callbacks",
    "callback_abandoned": "asyncgate/callbacks",
}
TYPES: Final = {tag: TYPE_PREFIX + tag for tag in SOURCES}

_time_encoder = msgspec.json.Encoder()


def cloudevent_headers(event: OperationEvent, source: str | None = None) -> dict[str, str]:
    """The CloudEvents attributes of ``event`` as NATS headers, plus its content type.

    ``source`` is the service storing it (default: the one that usually states that fact).

    ``ce-id`` is the event id (what a consumer deduplicates on), ``ce-subject`` the operation
    id, ``ce-time`` when the event happened (RFC 3339, the same text as the body's
    ``occurred_at``). A fresh dict: callers add their own headers to it.
    """
    tag = event_type(event)
    occurred_at = event.occurred_at
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)  # events are stamped in UTC
    return {
        SPEC_VERSION_HEADER: SPEC_VERSION,
        ID_HEADER: event.event_id,
        SOURCE_HEADER: source or SOURCES[tag],
        TYPE_HEADER: TYPES[tag],
        # msgspec writes RFC 3339 (UTC as "Z"), exactly as in the event's JSON.
        TIME_HEADER: _time_encoder.encode(occurred_at)[1:-1].decode(),
        SUBJECT_HEADER: event.operation_id,
        CONTENT_TYPE_HEADER: CONTENT_TYPE,
    }
