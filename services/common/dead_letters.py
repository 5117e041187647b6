"""Reading an event off a consumer, or setting it aside when it cannot be read.

A message that does not decode would fail the same way on every redelivery, so it is published,
untouched, to the dead-letter stream with the reason in its headers, then terminated: the
consumer keeps going, and an operator can inspect or replay it.
"""

import logging

import msgspec
from faststream.nats import NatsMessage
from nats.js import JetStreamContext

from contracts.events import OperationEvent, decode_event
from contracts.names import dead_letter_subject

log = logging.getLogger(__name__)

REASON_HEADER = "Asyncgate-Reason"
SUBJECT_HEADER = "Asyncgate-Original-Subject"
SEQUENCE_HEADER = "Asyncgate-Original-Sequence"
MAX_REASON_CHARS = 500


async def set_aside(js: JetStreamContext, msg: NatsMessage, service: str, reason: str) -> None:
    """Store ``msg`` on the dead-letter stream with ``reason``, then terminate it."""
    raw = msg.raw_message
    sequence = raw.metadata.sequence.stream
    await js.publish(
        dead_letter_subject(service),
        raw.data,
        headers={
            REASON_HEADER: reason[:MAX_REASON_CHARS],
            SUBJECT_HEADER: raw.subject,
            SEQUENCE_HEADER: str(sequence),
            # Several replicas may set aside the same message: store it once.
            "Nats-Msg-Id": f"{service}.{sequence}",
        },
    )
    log.warning("%s set aside message %d on %s: %s", service, sequence, raw.subject, reason)
    await msg.reject()


async def read_event(js: JetStreamContext, msg: NatsMessage, service: str) -> OperationEvent | None:
    """The message's event, or None once an unreadable message has been set aside."""
    try:
        return decode_event(msg.raw_message.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        await set_aside(js, msg, service, f"not a readable operation event: {error}")
        return None
