"""The projector's composition root: a FastStream app with one durable consumer on every event.

Several replicas may run: they share the durable consumer, and compare-and-set on each key's
revision plus an order-free fold keep the view right whichever replica applies which event.
An event that cannot be folded (unreadable, not matching its subject, a view too large to store)
is set aside at once; one that keeps failing for another reason is retried with a growing delay
and set aside on its last delivery (ASYNCGATE_PROJECTOR_MAX_DELIVER), never retried forever.
"""

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from faststream import FastStream
from faststream.exceptions import NackMessage
from faststream.nats import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import InvalidKeyError

from contracts.names import ALL_EVENTS, PROJECTOR_DURABLE
from services.common.active_operations import EndedOperations
from services.common.dead_letters import set_aside
from services.common.poison import Unusable, admit
from services.common.runtime import (
    ConnectionWatch,
    JetStreamHandles,
    create_broker,
    exit_process,
    pull_subscriber,
    retry_delay,
)
from services.common.settings import Settings
from services.common.views import apply_event, request_lookup

log = logging.getLogger("asyncgate.projector")

SERVICE = "projector"


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every projector replica shares."""
    return ConsumerConfig(
        durable_name=PROJECTOR_DURABLE,
        filter_subject=ALL_EVENTS,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.projector_ack_wait_s,
        max_deliver=settings.projector_max_deliver,
    )


def create_app(
    settings: Settings, *, on_connection_lost: Callable[[], None] = exit_process
) -> FastStream:
    """Build the projector app; nothing connects until it starts.

    ``on_connection_lost`` runs if nats-py gives up on the connection (default: exit).
    """
    handles = JetStreamHandles()
    watch = ConnectionWatch(SERVICE, on_lost=on_connection_lost)
    broker = create_broker(settings, SERVICE, watch)
    # Per-user limits: an operation stops counting once its terminal event is folded.
    ended = EndedOperations(settings)

    @pull_subscriber(broker, consumer_config(settings), concurrency=settings.projector_concurrency)
    async def on_operation_event(msg: NatsMessage) -> None:
        """Fold one event into its view; acknowledged once the view is stored."""
        js, kv, events = handles.require()
        raw = msg.raw_message
        event = admit(raw.subject, raw.data)
        if isinstance(event, Unusable):
            await set_aside(js, msg, SERVICE, event.reason)
            return
        sequence = raw.metadata.sequence.stream
        delivery = raw.metadata.num_delivered
        try:
            await apply_event(kv, event, sequence, request_lookup(events))
            await ended.release(event)
        except asyncio.CancelledError:
            # Stopping: hand it back now, not after the ack wait, so views never lag for long.
            await msg.nack()
            raise
        except (nats.errors.MaxPayloadError, InvalidKeyError) as error:
            # The same on every delivery: the view cannot be stored at all.
            await set_aside(js, msg, SERVICE, f"its view cannot be stored: {error!r}")
        except Exception as error:
            if delivery >= settings.projector_max_deliver:
                await set_aside(js, msg, SERVICE, f"not folded in {delivery} deliveries: {error!r}")
                return
            delay = retry_delay(delivery)
            log.warning(
                "event %d (%s): not folded (%r); retrying in %.1f s",
                sequence,
                raw.subject,
                error,
                delay,
            )
            raise NackMessage(delay=delay) from error

    async def start() -> None:
        await handles.open(broker, settings, watch, consumer_config(settings))
        await ended.open(broker.connection.jetstream())

    return FastStream(broker, on_startup=[start], on_shutdown=[watch.stop], logger=log)
