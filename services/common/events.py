"""Publishing operation events to the stream, deduplicated by message id."""

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from contracts.events import OperationEvent, decode_event, encode_event, event_type
from contracts.names import STREAM, event_subject

# A stored event is acknowledged by JetStream within this; past it the publish is retried by the
# caller (the message id makes a retry harmless).
PUBLISH_TIMEOUT_S = 5.0


def message_id(event: OperationEvent, qualifier: str | None = None) -> str:
    """The Nats-Msg-Id that makes re-publishing the same fact a no-op inside the dedup window."""
    base = f"{event.operation_id}.{event_type(event)}"
    return base if qualifier is None else f"{base}.{qualifier}"


async def publish_event(
    js: JetStreamContext,
    event: OperationEvent,
    *,
    msg_id: str,
    payload: bytes | None = None,
) -> PubAck:
    """Store ``event`` on its subject and wait for JetStream's acknowledgement."""
    return await js.publish(
        event_subject(event.tenant, event.operation_id, event_type(event)),
        encode_event(event) if payload is None else payload,
        timeout=PUBLISH_TIMEOUT_S,
        headers={"Nats-Msg-Id": msg_id},
    )


async def last_event(
    js: JetStreamContext, tenant: str, operation_id: str, of_type: str
) -> tuple[int, OperationEvent] | None:
    """An operation's newest stored event of ``of_type`` (``*``: of any type), with its sequence.

    One direct get by subject; None if there is none.
    """
    try:
        message = await js.get_last_msg(
            STREAM, event_subject(tenant, operation_id, of_type), direct=True
        )
    except NotFoundError:
        return None
    if message.data is None or message.seq is None:
        return None
    return message.seq, decode_event(message.data)
