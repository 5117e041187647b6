"""The executor's composition root: a FastStream app with one durable pull consumer.

Competing replicas bind to the same durable consumer and split the requests between them. The
consumer never gives up on a request (no JetStream delivery limit): the executor itself stops
running it after ASYNCGATE_EXECUTOR_MAX_ATTEMPTS starts and ends it as ATTEMPTS_EXHAUSTED,
and a delivery that cannot store that ending is handed back, with a growing delay, until one
can. So every request with a readable body ends in a terminal event; an unreadable one is set
aside on the dead-letter stream.
"""

import asyncio
import functools
import logging
from collections.abc import Callable

import httpx
from faststream import FastStream
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.names import EXECUTOR_DURABLE, REQUESTED_EVENTS, REQUESTS_STREAM
from services.actions.config import Retry, load_actions
from services.actions.handler import handler_client
from services.common.jetstream import connect
from services.common.metrics import ExecutorMetrics, MetricsServer
from services.common.results import ResultStore
from services.common.runtime import (
    ConnectionWatch,
    JetStreamHandles,
    batch_subscriber,
    create_broker,
    exit_process,
    worker_name,
)
from services.common.settings import Settings
from services.common.target import InProcessTarget, Target, load_schema, with_document_caches
from services.common.tracing import Tracing
from services.common.upstream.config import UpstreamConfig
from services.common.upstream.sealing import KeyRing
from services.common.upstream.target import UpstreamTarget
from services.common.work_slots import WorkSlots
from services.executor.cancellation import CancellableRuns
from services.executor.deliveries import SERVICE, Deliveries
from services.executor.heartbeats import Heartbeats
from services.executor.outcome import ResultLimits
from services.executor.progress import ProgressPublisher
from services.executor.retries import RetryPolicies
from services.executor.runner import OperationRunner

log = logging.getLogger("asyncgate.executor")

# Unlimited: a request is never dropped by JetStream (see the module docstring).
UNLIMITED_DELIVERIES = -1


# The executors take the requests, from the stream that holds them.
CONSUMED_STREAMS = (REQUESTS_STREAM,)


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every executor replica shares."""
    return ConsumerConfig(
        durable_name=EXECUTOR_DURABLE,
        filter_subject=REQUESTED_EVENTS,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.executor_ack_wait_s,
        max_deliver=UNLIMITED_DELIVERIES,
    )


def _target(settings: Settings, http: httpx.AsyncClient) -> tuple[Target, KeyRing | None]:
    """The target operations run against, from the settings: an upstream API when
    ASYNCGATE_UPSTREAM_URL is set (with the keys that open forwarded Authorization headers),
    else ASYNCGATE_TARGET_SCHEMA in-process."""
    if not settings.upstream_url:
        return InProcessTarget(with_document_caches(load_schema(settings.target_schema))), None
    upstream = UpstreamConfig.from_settings(settings)
    # Connecting is bounded; the answer only by the operation's own time-out (a background
    # operation is one that may take long).
    timeout = httpx.Timeout(None, connect=upstream.timeout_s)
    target = UpstreamTarget(url=upstream.url, http=http, headers=upstream.headers, timeout=timeout)
    return target, upstream.keys


def create_app(
    settings: Settings,
    *,
    worker: str | None = None,
    on_connection_lost: Callable[[], None] = exit_process,
) -> FastStream:
    """Build the executor app; nothing connects until it starts.

    ``worker`` names this replica in OperationStarted events (default: host and process id);
    ``on_connection_lost`` runs if nats-py gives up on the connection (default: exit).
    """
    actions = (
        None
        if settings.actions_file is None
        else load_actions(settings.actions_file, callback_hosts=settings.callback_hosts)
    )
    http = handler_client()
    handles = JetStreamHandles()
    target, forward_keys = _target(settings, http)
    run = OperationRunner(
        target=target,
        timeout_s=settings.operation_timeout_s,
        actions=actions,
        http=http,
        progress=ProgressPublisher(lambda: handles.require()[2]),
        forward_keys=forward_keys,
    )
    worker = worker or worker_name()
    tracing = Tracing.from_env(SERVICE)
    metrics = ExecutorMetrics(EXECUTOR_DURABLE, SERVICE, CONSUMED_STREAMS)
    metrics_server: MetricsServer | None = None
    watch = ConnectionWatch(SERVICE, on_lost=on_connection_lost)
    broker = create_broker(settings, SERVICE, watch)
    slots = WorkSlots(settings.executor_concurrency)
    runs = CancellableRuns(metrics.timed(run))
    deliveries: Deliveries | None = None
    # A third of the ack wait: a lost report or two still leaves the delivery in hand.
    heartbeats = Heartbeats(
        lambda: connect(settings, f"asyncgate-{SERVICE}-heartbeats"),
        every_s=settings.executor_ack_wait_s / 3,
    )

    @batch_subscriber(
        broker, consumer_config(settings), room=slots.wait_for_room, streams=CONSUMED_STREAMS
    )
    async def on_operation_requested(messages: list[Msg]) -> None:
        """Start working on each delivered request; each one is acknowledged once its
        operation has ended."""
        if deliveries is None:
            raise RuntimeError("requests arrived before start-up finished")
        for raw in messages:
            await slots.take(raw, functools.partial(deliveries.handle, raw))

    async def start() -> None:
        nonlocal deliveries, metrics_server
        await handles.open(
            broker,
            settings,
            watch,
            consumer_config(settings),
            streams=CONSUMED_STREAMS,
            results=True,
        )
        await asyncio.to_thread(heartbeats.start)
        js, _, events = handles.require()
        await runs.listen(events.nc)
        deliveries = Deliveries(
            js=js,
            events=events,
            run=runs,
            worker=worker,
            max_attempts=settings.executor_max_attempts,
            limits=ResultLimits(
                max_payload=handles.max_payload,
                inline_bytes=settings.inline_result_bytes,
                max_result_bytes=settings.max_result_bytes,
            ),
            results=ResultStore(js, events.inbox),
            heartbeats=heartbeats,
            tracing=tracing,
            metrics=metrics,
            retries=RetryPolicies(
                default=Retry(attempts=settings.retry_attempts, backoff_s=settings.retry_backoff_s),
                actions=actions,
            ),
        )
        metrics_server = await MetricsServer.start(
            settings, settings.executor_metrics_port, metrics.registry, metrics.backlog, js
        )

    async def stop() -> None:
        await watch.stop()
        # Before the broker stops: what still runs needs the connection to store its ending.
        await slots.close(settings.shutdown_grace_s)
        await runs.close()
        await asyncio.to_thread(heartbeats.stop)

    async def stop_telemetry() -> None:
        if metrics_server is not None:
            await metrics_server.stop()
        await tracing.shutdown()

    return FastStream(
        broker,
        on_startup=[start],
        on_shutdown=[stop, http.aclose, stop_telemetry],
        logger=log,
    )
