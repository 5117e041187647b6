"""The projector's composition root: a FastStream app with one durable consumer on every event.

Several replicas may run: they share the durable consumer, and compare-and-set on each key's
revision plus an order-free fold keep the view right whichever replica applies which event.
"""

import logging

from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.names import ALL_EVENTS, PROJECTOR_DURABLE, STREAM
from services.common.dead_letters import read_event
from services.common.nats_auth import nats_security
from services.common.runtime import JetStreamHandles, pull_batch_size
from services.common.settings import Settings
from services.projector.store import apply_event, request_lookup

log = logging.getLogger("asyncgate.projector")

SERVICE = "projector"


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every projector replica shares."""
    return ConsumerConfig(
        durable_name=PROJECTOR_DURABLE,
        filter_subject=ALL_EVENTS,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=30,
    )


def create_app(settings: Settings) -> FastStream:
    """Build the projector app; nothing connects until it starts."""
    handles = JetStreamHandles()
    broker = NatsBroker(
        settings.nats_url,
        graceful_timeout=settings.shutdown_grace_s,
        max_reconnect_attempts=-1,
        security=nats_security(settings),
        # One access-log line per message is noise at INFO; failures are still logged.
        log_level=logging.DEBUG,
    )

    @broker.subscriber(
        ALL_EVENTS,
        stream=JStream(STREAM, declare=False),
        durable=PROJECTOR_DURABLE,
        config=consumer_config(settings),
        pull_sub=PullSub(batch_size=pull_batch_size(settings.projector_concurrency), timeout=5.0),
        max_workers=settings.projector_concurrency,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_operation_event(msg: NatsMessage) -> None:
        """Fold one event into its view; acknowledged once the view is stored."""
        js, kv = handles.require()
        event = await read_event(js, msg, SERVICE)
        if event is not None:
            sequence = msg.raw_message.metadata.sequence.stream
            await apply_event(kv, event, sequence, request_lookup(js))

    async def start() -> None:
        await handles.open(broker, settings)

    return FastStream(broker, on_startup=[start], logger=log)
