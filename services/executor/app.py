"""The executor's composition root: a FastStream app with one durable pull consumer.

Competing replicas bind to the same durable consumer and split the requests between them. The
consumer never gives up on a request (no JetStream delivery limit): the executor itself stops
running it after ASYNCGATE_EXECUTOR_MAX_ATTEMPTS starts and ends it as ATTEMPTS_EXHAUSTED,
and a delivery that cannot store that ending is handed back, with a growing delay, until one
can. So every request with a readable body ends in a terminal event; an unreadable one is set
aside on the dead-letter stream.
"""

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from faststream import FastStream
from faststream.exceptions import NackMessage, SkipMessage
from faststream.nats import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.events import OperationRequested
from contracts.names import EXECUTOR_DURABLE, REQUESTED_EVENTS
from services.actions.config import load_actions
from services.actions.handler import handler_client
from services.common.dead_letters import set_aside
from services.common.poison import Unusable, admit
from services.common.runtime import (
    ConnectionWatch,
    JetStreamHandles,
    create_broker,
    exit_process,
    pull_subscriber,
    retry_delay,
    worker_name,
)
from services.common.settings import Settings
from services.common.target import load_schema, with_document_caches
from services.executor.handlers import (
    ContestedOperationError,
    SupersededDeliveryError,
    handle_requested,
)
from services.executor.runner import OperationRunner

log = logging.getLogger("asyncgate.executor")

SERVICE = "executor"
# Unlimited: a request is never dropped by JetStream (see the module docstring).
UNLIMITED_DELIVERIES = -1


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
    actions = None if settings.actions_file is None else load_actions(settings.actions_file)
    http = handler_client()
    run = OperationRunner(
        schema=with_document_caches(load_schema(settings.target_schema)),
        timeout_s=settings.operation_timeout_s,
        actions=actions,
        http=http,
    )
    worker = worker or worker_name()
    handles = JetStreamHandles()
    watch = ConnectionWatch(SERVICE, on_lost=on_connection_lost)
    broker = create_broker(settings, SERVICE, watch)

    @pull_subscriber(broker, consumer_config(settings), concurrency=settings.executor_concurrency)
    async def on_operation_requested(msg: NatsMessage) -> None:
        """Act on one delivery of a request; acknowledged once the operation has ended."""
        js, _, events = handles.require()
        raw = msg.raw_message
        request = admit(raw.subject, raw.data)
        if not isinstance(request, OperationRequested):
            # The subject filter and admit's subject check let only requests through.
            reason = request.reason if isinstance(request, Unusable) else "not a request"
            await set_aside(js, msg, SERVICE, reason)
            return
        delivery = raw.metadata.num_delivered
        try:
            await handle_requested(
                request,
                delivery=delivery,
                max_attempts=settings.executor_max_attempts,
                events=events,
                run=run,
                worker=worker,
                max_payload=handles.max_payload,
                keep_alive=msg.in_progress,
                keep_alive_every_s=settings.executor_ack_wait_s / 3,
            )
        except SupersededDeliveryError:
            # Neither ack nor nak: the newer delivery owns the request now.
            raise SkipMessage from None
        except asyncio.CancelledError:
            # Shutting down mid-operation: hand it back now instead of after ack_wait.
            await msg.nack()
            raise
        except Exception as error:
            delay = retry_delay(delivery)
            if isinstance(error, nats.errors.Error | TimeoutError | ContestedOperationError):
                trouble = "contested" if isinstance(error, ContestedOperationError) else "NATS"
                log.warning(
                    "operation %s: %s trouble (%s); handing it back for delivery %d in %.1f s",
                    request.operation_id,
                    trouble,
                    str(error) or type(error).__name__,
                    delivery + 1,
                    delay,
                )
            else:
                log.exception(
                    "operation %s: delivery %d failed; handing it back",
                    request.operation_id,
                    delivery,
                )
            raise NackMessage(delay=delay) from error

    async def start() -> None:
        await handles.open(broker, settings, watch, consumer_config(settings))

    return FastStream(broker, on_startup=[start], on_shutdown=[watch.stop, http.aclose], logger=log)
