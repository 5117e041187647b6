"""The projector's composition root: a FastStream app with one durable consumer on every event.

Several replicas may run: they share the durable consumer, and compare-and-set on each key's
revision plus an order-free fold keep the view right whichever replica applies which event.
An event that cannot be folded (unreadable, not matching its subject, a view too large to store)
is set aside at once; one that keeps failing for another reason is retried with a growing delay
and set aside on its last delivery (ASYNCGATE_PROJECTOR_MAX_DELIVER), never retried forever.
"""

import logging
from collections.abc import Callable

from faststream import FastStream
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.names import ALL_EVENTS, EVENT_STREAMS, PROJECTOR_DURABLE
from services.common.active_operations import EndedOperations
from services.common.metrics import MetricsServer, ProjectorMetrics
from services.common.runtime import (
    ConnectionWatch,
    JetStreamHandles,
    batch_subscriber,
    create_broker,
    exit_process,
)
from services.common.settings import Settings
from services.common.tracing import Tracing
from services.projector.handlers import SERVICE, Projection
from services.projector.view_repair import ViewRepairs, writes_views_async
from services.projector.view_writer import ViewWriter, request_lookup

log = logging.getLogger("asyncgate.projector")

# An operation has about three events (requested, started, an ending).
EVENTS_PER_OPERATION = 3
# Operations whose request waits for their next event, at most (each holds its request
# unacknowledged; the consumer's own limit of those is 1,000).
MAX_HELD_REQUESTS = 500


# Every event folds into a view: the requests and the history after them. The projector has
# the same durable consumer on each.
CONSUMED_STREAMS = EVENT_STREAMS


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every projector replica shares (one on each event stream)."""
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
    tracing = Tracing.from_env(SERVICE)
    metrics = ProjectorMetrics(PROJECTOR_DURABLE, SERVICE, CONSUMED_STREAMS)
    metrics_server: MetricsServer | None = None
    watch = ConnectionWatch(SERVICE, on_lost=on_connection_lost)
    repairs: ViewRepairs | None = None

    async def reconnected() -> None:
        # The server may have restarted and lost the view writes it had not flushed.
        if repairs is not None:
            repairs.request()

    broker = create_broker(settings, SERVICE, watch, on_reconnect=reconnected)
    # Per-user limits: an operation stops counting once its terminal event is folded.
    ended = EndedOperations(settings)
    projection: Projection | None = None
    # Events that arrive together are folded together: this many at most per batch.
    batch_limit = settings.projector_concurrency * EVENTS_PER_OPERATION

    async def room() -> int:
        return batch_limit

    @batch_subscriber(broker, consumer_config(settings), room=room, streams=CONSUMED_STREAMS)
    async def on_operation_events(messages: list[Msg]) -> None:
        """Fold the events that arrived together, one write per operation; each event is
        acknowledged once its view is stored."""
        if projection is None:
            raise RuntimeError("events arrived before start-up finished")
        await projection.fold_batch(messages)

    async def start() -> None:
        nonlocal projection, metrics_server, repairs
        await handles.open(
            broker, settings, watch, consumer_config(settings), streams=CONSUMED_STREAMS
        )
        js, kv, events = handles.require()
        await ended.open(js)
        views = ViewWriter(kv, events.inbox, request_lookup(events))
        projection = Projection(
            js,
            views,
            ended,
            max_deliver=settings.projector_max_deliver,
            tracing=tracing,
            metrics=metrics,
            hold_requests_s=settings.projector_queued_view_delay_s,
            max_held=MAX_HELD_REQUESTS,
        )
        if await writes_views_async(js):
            repairs = ViewRepairs(events, views, settings.projector_view_repair_window_s)
            repairs.request()
        metrics_server = await MetricsServer.start(
            settings, settings.projector_metrics_port, metrics.registry, metrics.backlog, js
        )

    async def write_held() -> None:
        if repairs is not None:
            await repairs.stop()
        if projection is not None:
            await projection.write_held()

    async def stop_telemetry() -> None:
        if metrics_server is not None:
            await metrics_server.stop()
        await tracing.shutdown()

    return FastStream(
        broker,
        on_startup=[start],
        on_shutdown=[write_held, watch.stop, stop_telemetry],
        logger=log,
    )
