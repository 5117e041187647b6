"""Publishing operation events to the stream, deduplicated by message id."""

from nats.js import JetStreamContext
from nats.js.api import PubAck

from contracts.events import OperationEvent, encode_event, event_type
from contracts.names import event_subject

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
