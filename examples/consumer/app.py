"""A small FastStream service that reacts to operations that completed or failed.

It is what a service consuming asyncgate's events needs and no more: a durable pull consumer of
its own on the event stream, filtered on the two terminal subjects, events decoded with the
published types (``contracts.events``), one log line per operation, and deduplication on the
CloudEvents id, because JetStream delivers at least once.

Run it against a stack with ``python -m examples.consumer``, logged in as the ``consumer`` user
(``ASYNCGATE_NATS_URL``, ``ASYNCGATE_NATS_USER``, ``ASYNCGATE_NATS_PASSWORD``).
"""

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.security import SASLPlaintext
from nats.js.api import ConsumerConfig

from contracts.cloudevents import ID_HEADER
from contracts.events import OperationCompleted, OperationFailed, decode_event
from contracts.names import STREAM, SUBJECT_ROOT

log = logging.getLogger("examples.consumer")

# Both terminal subjects: an operation ends in exactly one of them.
TERMINAL_SUBJECTS: Final = [f"{SUBJECT_ROOT}.*.*.completed", f"{SUBJECT_ROOT}.*.*.failed"]
# How many event ids to remember for deduplication; a redelivery comes within minutes.
REMEMBERED_IDS: Final = 10_000


@dataclass(frozen=True)
class ConsumerSettings:
    """Where the consumer reads and under which name its durable consumer is kept."""

    servers: list[str]
    user: str = ""
    password: str = ""
    durable: str = "example-consumer"


class RecentIds:
    """The ids of the last events handled, to skip a redelivered one."""

    def __init__(self, size: int = REMEMBERED_IDS) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen (recently); remembers it."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


def describe(event: OperationCompleted | OperationFailed) -> str:
    """One log line about an ended operation."""
    what = ", ".join(
        f"{label} {name}"
        for label, name in (("operation", event.operation_name), ("action", event.action))
        if name is not None
    )
    ran = f" ({what})" if what else ""
    if isinstance(event, OperationCompleted):
        return f"operation {event.operation_id} of {event.tenant} completed{ran}"
    return f"operation {event.operation_id} of {event.tenant} failed{ran}: {event.code}"


def create_app(settings: ConsumerSettings) -> FastStream:
    """The consumer service; it connects only when run."""
    security = SASLPlaintext(settings.user, settings.password) if settings.user else None
    # FastStream's own "Received"/"Processed" lines only at DEBUG: the handler logs each event.
    broker = NatsBroker(settings.servers, security=security, log_level=logging.DEBUG)
    seen = RecentIds()

    @broker.subscriber(
        "",  # the consumer's filter_subjects say which subjects it reads
        # The stream is asyncgate's; a consumer only reads it (declare=False).
        stream=JStream(STREAM, declare=False),
        durable=settings.durable,
        config=ConsumerConfig(filter_subjects=TERMINAL_SUBJECTS, ack_wait=30),
        # One message per pull: handed over as soon as it arrives.
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        # An exception hands the event back for redelivery instead of dropping it.
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_outcome(message: NatsMessage) -> None:
        event_id = message.headers.get(ID_HEADER)
        if event_id is not None and not seen.first_time(event_id):
            return  # delivered again (at least once): handled already
        try:
            event = decode_event(message.body)
        except ValueError as error:
            # Redelivering it would fail the same way for ever: note it and go on.
            log.warning("skipped an unreadable event on %s: %s", message.raw_message.subject, error)
            return
        if isinstance(event, OperationCompleted | OperationFailed):
            log.info("%s", describe(event))

    return FastStream(broker, logger=log)
