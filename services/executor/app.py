"""The executor's composition root: a FastStream app with one durable pull consumer.

Competing replicas bind to the same durable consumer and split the requests between them. Ack
policy NACK_ON_ERROR: a handler only raises for infrastructure trouble (NATS unreachable), and
then the request is handed back for another try; the operation's own failures end as events.
"""

import asyncio
import logging

import nats.errors
from faststream import AckPolicy, FastStream
from faststream.exceptions import NackMessage, SkipMessage
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.events import OperationRequested
from contracts.names import EXECUTOR_DURABLE, REQUESTED_EVENTS, STREAM
from services.actions.config import load_actions
from services.actions.handler import handler_client
from services.common.dead_letters import read_event, set_aside
from services.common.nats_auth import nats_security
from services.common.runtime import JetStreamHandles, pull_batch_size, worker_name
from services.common.settings import Settings
from services.common.target import load_schema, with_document_caches
from services.executor.handlers import (
    OperationRunner,
    SupersededDeliveryError,
    handle_requested,
)

log = logging.getLogger("asyncgate.executor")

MAX_RETRY_DELAY_S = 30.0
SERVICE = "executor"


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable consumer every executor replica shares."""
    return ConsumerConfig(
        durable_name=EXECUTOR_DURABLE,
        filter_subject=REQUESTED_EVENTS,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.executor_ack_wait_s,
        max_deliver=settings.executor_max_deliver,
    )


def create_app(settings: Settings, *, worker: str | None = None) -> FastStream:
    """Build the executor app; nothing connects until it starts.

    ``worker`` names this replica in OperationStarted events (default: host and process id).
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
    broker = NatsBroker(
        settings.nats_url,
        graceful_timeout=settings.shutdown_grace_s,
        max_reconnect_attempts=-1,
        security=nats_security(settings),
        # One access-log line per message is noise at INFO; failures are still logged.
        log_level=logging.DEBUG,
    )

    @broker.subscriber(
        REQUESTED_EVENTS,
        stream=JStream(STREAM, declare=False),
        durable=EXECUTOR_DURABLE,
        config=consumer_config(settings),
        pull_sub=PullSub(batch_size=pull_batch_size(settings.executor_concurrency), timeout=5.0),
        max_workers=settings.executor_concurrency,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_operation_requested(msg: NatsMessage) -> None:
        """Run one requested operation; acknowledged once its terminal event is stored."""
        js, _ = handles.require()
        request = await read_event(js, msg, SERVICE)
        if request is None:
            return
        if not isinstance(request, OperationRequested):
            await set_aside(js, msg, SERVICE, f"a {type(request).__name__} on a request subject")
            return
        attempt = msg.raw_message.metadata.num_delivered
        try:
            await handle_requested(
                request,
                attempt=attempt,
                max_attempts=settings.executor_max_deliver,
                js=js,
                run=run,
                worker=worker,
                max_payload=handles.max_payload,
                keep_alive=msg.in_progress,
                keep_alive_every_s=settings.executor_ack_wait_s / 3,
            )
        except SupersededDeliveryError:
            # Neither ack nor nak: the newer delivery owns the request now.
            raise SkipMessage from None
        except (nats.errors.Error, TimeoutError) as error:
            delay = min(MAX_RETRY_DELAY_S, 2.0**attempt)
            log.warning(
                "operation %s: NATS trouble (%s); handing it back for a retry in %.0f s",
                request.operation_id,
                error,
                delay,
            )
            raise NackMessage(delay=delay) from error
        except asyncio.CancelledError:
            # Shutting down mid-operation: hand it back now instead of after ack_wait.
            await msg.nack()
            raise

    async def start() -> None:
        await handles.open(broker, settings)

    return FastStream(broker, on_startup=[start], on_shutdown=[http.aclose], logger=log)
