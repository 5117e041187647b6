"""Setting aside a message a service cannot use: a bounded dead letter, then terminate it.

The dead letter (format in ``contracts/dead_letters.py``) refers to the original by stream and
sequence and carries only an excerpt, so it always fits in a NATS message however large the
original was; the original stays in its stream. Terminating the message means the consumer
never delivers it again and goes on with the next one.
"""

import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.dead_letters import (
    DELIVERIES_HEADER,
    EXCERPT_BYTES,
    MAX_REASON_CHARS,
    MAX_SUBJECT_CHARS,
    REASON_HEADER,
    SEQUENCE_HEADER,
    SERVICE_HEADER,
    SIZE_HEADER,
    STREAM_HEADER,
    SUBJECT_HEADER,
)
from contracts.names import dead_letter_subject
from services.common.event_log import REQUEST_TIMEOUT_S

log = logging.getLogger(__name__)


def header_value(text: str, limit: int) -> str:
    """``text`` as a safe, bounded header value: one line of printable ASCII."""
    one_line = " ".join(text.split())[:limit]
    return one_line.encode("ascii", "backslashreplace").decode("ascii")


async def set_aside(js: JetStreamContext, raw: Msg, service: str, reason: str) -> None:
    """Store a dead letter for the delivered message ``raw`` with ``reason``, then terminate it.

    Raises if the dead letter cannot be stored; the message is then left to be redelivered.
    """
    metadata = raw.metadata
    sequence = metadata.sequence.stream
    await js.publish(
        dead_letter_subject(service),
        raw.data[:EXCERPT_BYTES],
        timeout=REQUEST_TIMEOUT_S,
        headers={
            REASON_HEADER: header_value(reason, MAX_REASON_CHARS),
            SERVICE_HEADER: service,
            STREAM_HEADER: metadata.stream,
            SEQUENCE_HEADER: str(sequence),
            SUBJECT_HEADER: header_value(raw.subject, MAX_SUBJECT_CHARS),
            SIZE_HEADER: str(len(raw.data)),
            DELIVERIES_HEADER: str(metadata.num_delivered),
            # Replicas of a service, or a redelivery after a crash, store it once.
            "Nats-Msg-Id": f"{service}.{metadata.stream}.{sequence}",
        },
    )
    log.warning(
        "%s set aside message %d on %s: %s",
        service,
        sequence,
        header_value(raw.subject, MAX_SUBJECT_CHARS),
        header_value(reason, MAX_REASON_CHARS),
    )
    await raw.term()
