"""What the FastStream services share: their broker, pull consumer, JetStream handles, retry
back-off, and what happens when NATS is gone for good."""

import functools
import gc
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, cast

import nats.errors
from faststream import AckPolicy, FastStream
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.subscriber.usecases.stream_pull_subscriber import BatchPullStreamSubscriber
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from services.common.event_log import EventLog
from services.common.jetstream import report_nats_error
from services.common.layout import (
    CHECK_RIDE_THROUGH_S,
    NotProvisionedError,
    check_provisioned,
    layout_for,
)
from services.common.metrics import MetricsPortError
from services.common.nats_auth import nats_security
from services.common.nats_headers import FastHeadersClient
from services.common.prompt_pull import PromptPull
from services.common.retry import riding_through
from services.common.settings import Settings

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the service cannot go on, and starting it again is the remedy.
EXIT_NATS_LOST: Final = 75
# EX_CONFIG: JetStream is not provisioned as the settings say; starting again will not help.
EXIT_NOT_PROVISIONED: Final = 78
# sysexits' EX_UNAVAILABLE: the metrics port it was given cannot be listened on.
EXIT_METRICS_PORT: Final = 69


# Whether services started in this process freeze what they built at start-up: only in a
# process of its own (the command line turns it on). A service started inside another program,
# as the tests start them, leaves that program's collector alone: after a freeze the collector
# counts no long-lived objects, so every older-generation pass becomes a full collection, and in
# a test runner holding a million objects each one took about a second (a fuzz test ran 26 s
# instead of 3).
_freeze_at_startup = False
# Allocations (net of deallocations) between collections of the youngest generation; what it
# costs is a few MB more of young objects and cyclic garbage awaiting a collection.
YOUNG_GENERATION_THRESHOLD: Final = 10_000


def freeze_at_startup() -> None:
    """Have every service later started in this process freeze its start-up objects; for a
    process that runs one service and nothing else."""
    global _freeze_at_startup  # noqa: PLW0603 (a process-wide choice, made once by the command line)
    _freeze_at_startup = True


def freeze_startup_objects() -> None:
    """Keep the garbage collector from rescanning everything built at start-up, and from
    scanning the work in flight every few hundred allocations.

    Schemas, types and modules live as long as the process; without the freeze every collection
    walks them again (measured on the edge: ~0.14 ms of every request went to collections).
    Then the youngest generation is collected after YOUNG_GENERATION_THRESHOLD allocations
    instead of Python's 700: a service's requests in flight alone hold about that many, so
    each pass rescanned them, and graphql-core leaves ~37 objects of cyclic garbage per query.
    Measured in the bench's W1 (share of each process's CPU in collections, 700 → 10,000): edge
    7.0% → fewer than five collections a 4,000-operation round, executor 8.7% → 4.1%, projector
    3.6% → fewer than five collections a round.
    Does nothing unless the process runs the service alone (``freeze_at_startup``).
    """
    if _freeze_at_startup:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def worker_name() -> str:
    """Which process did something, as recorded in events and logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def exit_process() -> None:
    """End the process at once with EXIT_NATS_LOST.

    No orderly shutdown: with the connection gone there is nothing left to hand back or drain,
    and the log handlers (stream handlers) have flushed every record already.
    """
    os._exit(EXIT_NATS_LOST)


@dataclass
class ConnectionWatch:
    """Ends a service whose NATS connection nats-py has given up on, rather than leave it
    running connected to nothing (nats-py does not reconnect after, say, a payload or an
    authorization violation). A supervisor or orchestrator then starts it again."""

    service: str
    on_lost: Callable[[], None] = exit_process
    stopping: bool = False
    client: NatsClient | None = None

    def watch(self, client: NatsClient) -> None:
        """Remember the connection, so its last error can be reported when it closes."""
        self.client = client

    async def closed(self) -> None:
        """nats-py's closed callback: the end of the service, unless it is stopping anyway."""
        if self.stopping:
            return
        last_error = None if self.client is None else self.client.last_error
        log.critical(
            "%s: the NATS connection was closed and will not reconnect (%s); exiting with "
            "status %d so that a supervisor starts the service again",
            self.service,
            (str(last_error) or type(last_error).__name__) if last_error else "no error given",
            EXIT_NATS_LOST,
        )
        self.on_lost()

    async def stop(self) -> None:
        """Mark an orderly stop, so the connection closing is expected."""
        self.stopping = True


class _FastHeadersBroker(NatsBroker):
    """FastStream's NATS broker on a connection that reads headers faster than nats-py's own
    (services/common/nats_headers.py): every event carries seven to eleven, and parsing them
    was 6% of an executor's CPU. FastStream's own ``_connect`` is ``nats.connect`` and these
    same three lines; tests/integration/test_consumers.py checks the services get this client.
    """

    async def _connect(self) -> NatsClient:
        connection = FastHeadersClient()
        await connection.connect(**self._connection_kwargs)
        self.config.connect(connection)
        return connection


def create_broker(
    settings: Settings,
    service: str,
    watch: ConnectionWatch,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> NatsBroker:
    """The broker of a FastStream service: every configured server, its login, its watch, and
    what to do each time the connection is back after a loss."""
    return _FastHeadersBroker(
        settings.nats_servers,
        name=f"asyncgate-{service}",
        graceful_timeout=settings.shutdown_grace_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        security=nats_security(settings),
        error_cb=report_nats_error,
        closed_cb=watch.closed,
        reconnected_cb=on_reconnect,
        # One access-log line per message is noise at INFO; failures are still logged.
        log_level=logging.DEBUG,
        # Through the service's own logging: FastStream's default logger writes colour codes
        # even into a pipe (`asyncgate up`'s labelled output, a log file).
        logger=logging.getLogger(f"asyncgate.{service}.broker"),
        # Handlers take the nats-py messages as they came (see batch_subscriber): nothing to
        # resolve, and fast_depends would resolve a NatsMessage argument through a worker
        # thread on every call (measured: a fifth of the projector's CPU).
        apply_types=False,
    )


async def run_service(app: FastStream, service: str) -> int:
    """Run a FastStream service until it is told to stop; its exit status.

    Stopping while NATS is unreachable is still an orderly stop: FastStream's last step, draining
    the connection, fails then (nats-py refuses to drain a reconnecting connection), but what the
    service had in hand is redelivered after its ack wait anyway.
    """
    try:
        await app.run()
    except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError):
        log.warning(
            "%s stopped while NATS was unreachable; messages it held are redelivered after "
            "their ack wait",
            service,
        )
    except nats.errors.Error as error:
        # NATS refused the service at start (a wrong login, say): say so in one line.
        log.critical("%s could not start: %s", service, str(error) or type(error).__name__)
        return EXIT_NATS_LOST
    except NotProvisionedError as error:
        log.critical("%s will not start: %s", service, error)
        return EXIT_NOT_PROVISIONED
    except MetricsPortError as error:
        log.critical("%s will not start: %s", service, error)
        return EXIT_METRICS_PORT
    return 0


# Room: how many more messages the service can take now; waits until it can take one.
Room = Callable[[], Awaitable[int]]


class _PromptBatchSubscriber(BatchPullStreamSubscriber):
    """FastStream's batch pull subscriber, fed by PromptPull instead of ``fetch``.

    FastStream's own loop waits to fill each batch until its timeout; this one hands the handler
    whatever has arrived, as soon as anything has (see services/common/prompt_pull.py). One
    handler call per batch also pays FastStream's per-call cost (argument resolution, context,
    logging: ~400 us measured) once per batch instead of once per message.
    """

    __slots__ = ()
    prompt_durable: str
    prompt_room: Room

    async def _create_subscription(self) -> None:
        if self.subscription is not None:
            return
        pull = PromptPull(self.connection, self.stream.name, self.prompt_durable)
        await pull.start()
        # Duck-typed: FastStream only calls unsubscribe() on it when stopping.
        self.subscription = pull  # type: ignore[assignment]
        self.add_task(self._consume_pull)

    async def _consume_pull(self) -> None:
        pull = self.subscription
        assert isinstance(pull, PromptPull)  # noqa: S101 (set just before this task starts)
        while self.running:
            limit = await self.prompt_room()
            messages = await pull.next_batch(limit)
            if messages and self.running:
                await self.consume(messages)


BatchHandler = Callable[[list[Msg]], Awaitable[None]]


async def _messages_as_they_came(message: StreamMessage[list[Msg]]) -> list[Msg]:
    """The decoder of batch handlers: the nats-py messages themselves. FastStream's default
    would parse every body as JSON first (results included) for nothing."""
    return message.raw_message


def batch_subscriber(
    broker: NatsBroker, config: ConsumerConfig, *, room: Room, streams: tuple[str, ...]
) -> Callable[[BatchHandler], BatchHandler]:
    """The decorator that binds a batch handler to a durable pull consumer on each of
    ``streams`` (event streams; the same handler for all).

    The handler gets the nats-py messages that arrived together (at most what ``room``
    allowed, per stream), and acknowledges each one itself, only once what it stands for is
    stored. A message it neither acknowledges nor hands back is redelivered after the consumer's
    ack wait.
    """
    subjects = [config.filter_subject] if config.filter_subject else config.filter_subjects
    if not subjects or config.durable_name is None:
        raise ValueError("a service consumer needs a durable name and a filter subject")
    durable = config.durable_name

    def bind(handler: BatchHandler) -> BatchHandler:
        for stream in streams:
            subscriber = broker.subscriber(
                # A name for FastStream's logs: the consumer is declared with its own filters
                # at start.
                subjects[0],
                stream=JStream(stream, declare=False),
                durable=durable,
                config=config,
                pull_sub=PullSub(batch=True),
                ack_policy=AckPolicy.MANUAL,
                decoder=_messages_as_they_came,
            )
            subscriber.__class__ = _PromptBatchSubscriber
            prompt = cast(_PromptBatchSubscriber, subscriber)
            prompt.prompt_durable = durable
            prompt.prompt_room = room
            prompt(handler)
        return handler

    return bind


MAX_RETRY_DELAY_S: Final = 30.0
FIRST_RETRY_DELAY_S: Final = 0.5


def retry_delay(delivery: int) -> float:
    """How long to wait before delivery ``delivery + 1`` after delivery ``delivery`` failed.

    Exponential from half a second to half a minute, with jitter so that many messages failing
    together (NATS briefly away) do not all come back at the same instant.
    """
    ceiling = min(MAX_RETRY_DELAY_S, FIRST_RETRY_DELAY_S * 2 ** max(0, delivery - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not cryptography)


@dataclass
class JetStreamHandles:
    """Filled in at start-up, once the broker is connected; never at import time."""

    js: JetStreamContext | None = None
    kv: KeyValue | None = None
    events: EventLog | None = None
    max_payload: int = 0

    async def open(
        self,
        broker: NatsBroker,
        settings: Settings,
        watch: ConnectionWatch,
        consumer: ConsumerConfig,
        *,
        streams: tuple[str, ...],
        results: bool = False,
    ) -> None:
        """Connect the broker; check the streams and buckets (with ``results``, the results
        bucket too); declare the service's consumer on each of ``streams``.

        Raises NotProvisionedError if JetStream does not hold what the service relies on.
        """
        await broker.connect()
        watch.watch(broker.connection)
        js = self.js = broker.connection.jetstream()
        await check_provisioned(js, layout_for(settings, results=results))
        self.kv = await js.key_value(VIEW_BUCKET)
        # Its own consumer (its ack wait and delivery limit are its settings), declared here,
        # where a cluster's leader election is waited out, rather than left to FastStream's
        # subscriber start, which gives up on the first time-out.
        for stream in streams:
            await riding_through(
                functools.partial(js.add_consumer, stream, consumer),
                what=f"declaring the consumer {consumer.durable_name} on {stream}",
                budget_s=CHECK_RIDE_THROUGH_S,
            )
        self.events = EventLog(broker.connection, self.js)
        self.max_payload = broker.connection.max_payload
        freeze_startup_objects()

    def require(self) -> tuple[JetStreamContext, KeyValue, EventLog]:
        """The handles, or an error if a message arrived before start-up finished."""
        if self.js is None or self.kv is None or self.events is None:
            raise RuntimeError("JetStream handles used before start-up")
        return self.js, self.kv, self.events
