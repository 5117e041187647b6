"""The callbacks service's composition root: a FastStream app with one durable consumer on the
terminal events (``completed`` and ``failed``: cancelled and expired operations end ``failed``).

Replicas share the durable consumer. Each delivered ending whose request asked for a callback
runs as its own task in one of ``ASYNCGATE_CALLBACK_CONCURRENCY`` slots; the others are
acknowledged at once. A failed attempt is handed back with the next pause of the retry schedule
(a nak with a delay, never a sleep in a slot), so a slow or failing receiver holds up nobody
else's callbacks. The consumer has no delivery limit and no cap on messages awaiting
acknowledgement: callbacks waiting hours for their next attempt must not stop new ones.
"""

import functools
import logging
from collections.abc import Callable

from faststream import FastStream
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.names import CALLBACKS_DURABLE, STREAM, TERMINAL_EVENTS
from services.callbacks.deliveries import SERVICE, Callbacks, wants_callback
from services.callbacks.sender import Sender, callback_client
from services.callbacks.signing import master_keys
from services.common.metrics import CallbackMetrics, MetricsServer
from services.common.runtime import (
    ConnectionWatch,
    JetStreamHandles,
    batch_subscriber,
    create_broker,
    exit_process,
)
from services.common.settings import Settings
from services.common.tracing import Tracing
from services.common.work_slots import WorkSlots

log = logging.getLogger("asyncgate.callbacks")

UNLIMITED = -1
# Beyond one attempt's time limit: reading the facts and storing the outcome.
ACK_WAIT_MARGIN_S = 30.0


# The endings are in the history stream.
CONSUMED_STREAMS = (STREAM,)


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every callbacks replica shares."""
    return ConsumerConfig(
        durable_name=CALLBACKS_DURABLE,
        filter_subjects=list(TERMINAL_EVENTS),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.callback_timeout_s + ACK_WAIT_MARGIN_S,
        max_deliver=UNLIMITED,
        max_ack_pending=UNLIMITED,
    )


def create_app(
    settings: Settings, *, on_connection_lost: Callable[[], None] = exit_process
) -> FastStream:
    """Build the callbacks app; nothing connects until it starts.

    Raises SigningKeyError without a usable ASYNCGATE_CALLBACK_SIGNING_KEY.
    ``on_connection_lost`` runs if nats-py gives up on the connection (default: exit).
    """
    keys = master_keys(
        settings.callback_signing_key.get_secret_value(),
        settings.callback_previous_signing_keys.get_secret_value(),
    )
    http = callback_client()
    handles = JetStreamHandles()
    tracing = Tracing.from_env(SERVICE)
    metrics = CallbackMetrics(CALLBACKS_DURABLE, SERVICE, CONSUMED_STREAMS)
    metrics_server: MetricsServer | None = None
    watch = ConnectionWatch(SERVICE, on_lost=on_connection_lost)
    broker = create_broker(settings, SERVICE, watch)
    slots = WorkSlots(settings.callback_concurrency)
    callbacks: Callbacks | None = None

    @batch_subscriber(
        broker, consumer_config(settings), room=slots.wait_for_room, streams=CONSUMED_STREAMS
    )
    async def on_operation_ended(messages: list[Msg]) -> None:
        """Start each wanted callback in a slot of its own; acknowledge the rest at once."""
        if callbacks is None:
            raise RuntimeError("events arrived before start-up finished")
        for raw in messages:
            if wants_callback(raw.data):
                await slots.take(raw, functools.partial(callbacks.handle, raw))
            else:
                await raw.ack()

    async def start() -> None:
        nonlocal callbacks, metrics_server
        await handles.open(
            broker, settings, watch, consumer_config(settings), streams=CONSUMED_STREAMS
        )
        js, _, events = handles.require()
        callbacks = Callbacks(
            events=events,
            sender=Sender(http, settings.callback_timeout_s),
            master_keys=keys,
            hosts=settings.callback_hosts,
            backoff_s=settings.callback_backoff_schedule,
            tracing=tracing,
            metrics=metrics,
        )
        metrics_server = await MetricsServer.start(
            settings, settings.callbacks_metrics_port, metrics.registry, metrics.backlog, js
        )

    async def stop() -> None:
        await watch.stop()
        await slots.close(settings.shutdown_grace_s)

    async def stop_telemetry() -> None:
        if metrics_server is not None:
            await metrics_server.stop()
        await tracing.shutdown()

    return FastStream(
        broker, on_startup=[start], on_shutdown=[stop, http.aclose, stop_telemetry], logger=log
    )
