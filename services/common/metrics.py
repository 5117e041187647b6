"""Prometheus metrics of each service, in a registry of its own (README: "Metrics and traces").

Every labelled series a message can touch is bound once, when the service is built, so the work
per message is an increment or an observation; label values come from small fixed sets (an
error code outside the known ones counts as OTHER past a bound), never ids.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from contracts.events import OperationCompleted, OperationRequested, TerminalEvent
from contracts.view import OperationView
from services.common.settings import Settings

log = logging.getLogger(__name__)

# From a few milliseconds (a light operation) to the hour an operation may run by default.
SECONDS_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# Failure codes come from the target schema and action handlers too: past this many distinct
# ones, a new code is counted as OTHER, so a misbehaving handler cannot grow the series.
MAX_FAILURE_CODES: Final = 50
MAX_CODE_CHARS: Final = 64
OTHER_CODE: Final = "OTHER"
# A scrape waits at most this long for a consumer's numbers; past it the last ones are shown.
CONSUMER_INFO_TIMEOUT_S: Final = 2.0


def new_registry() -> CollectorRegistry:
    """A service's own registry, with the process's CPU, memory and file descriptors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of a /metrics answer."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _dead_letters(registry: CollectorRegistry, service: str) -> Counter:
    counter = Counter(
        "asyncgate_dead_letters",
        "Messages set aside on the dead-letter stream, by the service that set them aside.",
        ["service"],
        registry=registry,
    )
    return counter.labels(service)


def _seconds(since: datetime, until: datetime) -> float:
    return max(0.0, (until - since).total_seconds())


@dataclass
class EdgeMetrics:
    """What the edge counts."""

    registry: CollectorRegistry = field(default_factory=new_registry)

    def __post_init__(self) -> None:
        submitted = Counter(
            "asyncgate_operations_submitted",
            "Operations queued (stored as requested), by kind: a GraphQL query or an action.",
            ["kind"],
            registry=self.registry,
        )
        self._queries = submitted.labels("query")
        self._actions = submitted.labels("action")

    def count_submitted(self, requested: OperationRequested) -> None:
        """One more operation queued."""
        (self._queries if requested.action is None else self._actions).inc()


class ConsumerBacklog:
    """Gauges of a durable consumer's backlog, read from its consumer info at each scrape."""

    def __init__(self, registry: CollectorRegistry, durable: str, streams: tuple[str, ...]) -> None:
        self._durable = durable
        self._streams = streams
        self._pending = Gauge(
            "asyncgate_consumer_pending_messages",
            "Messages stored for the consumer and not yet delivered to it.",
            ["consumer"],
            registry=registry,
        ).labels(durable)
        self._ack_pending = Gauge(
            "asyncgate_consumer_ack_pending_messages",
            "Messages delivered to the consumer and not yet acknowledged.",
            ["consumer"],
            registry=registry,
        ).labels(durable)

    async def refresh(self, js: JetStreamContext) -> None:
        """Read the numbers again (one request per stream the consumer is on, summed); if NATS
        does not answer, keep the last ones."""
        answers = await asyncio.gather(
            *(
                js.consumer_info(stream, self._durable, timeout=CONSUMER_INFO_TIMEOUT_S)
                for stream in self._streams
            ),
            return_exceptions=True,
        )
        found = [info for info in answers if isinstance(info, ConsumerInfo)]
        if len(found) < len(answers):
            log.debug("consumer %s: no consumer info (%r)", self._durable, answers)
            return
        self._pending.set(sum(info.num_pending or 0 for info in found))
        self._ack_pending.set(sum(info.num_ack_pending or 0 for info in found))


Run = Callable[[OperationRequested, int], Awaitable[TerminalEvent]]


class ExecutorMetrics:
    """What the executor counts and times."""

    def __init__(self, durable: str, service: str, streams: tuple[str, ...]) -> None:
        self.registry = registry = new_registry()
        self.backlog = ConsumerBacklog(registry, durable, streams)
        self.dead_letters = _dead_letters(registry, service)
        self._completed = Counter(
            "asyncgate_operations_completed",
            "Operations this executor ended with data (status SUCCESS).",
            registry=registry,
        )
        self._failed = Counter(
            "asyncgate_operations_failed",
            "Operations this executor ended without data (status ERROR), by error code.",
            ["code"],
            registry=registry,
        )
        self._failed_by_code: dict[str, Counter] = {}
        self._queue_wait = Histogram(
            "asyncgate_operation_queue_wait_seconds",
            "From an operation's request to an executor starting it (each attempt).",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self._run_time = Histogram(
            "asyncgate_operation_run_seconds",
            "How long running an operation took (each attempt that produced an outcome).",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def count_outcome(self, outcome: TerminalEvent) -> None:
        """The terminal event this executor stored."""
        if isinstance(outcome, OperationCompleted):
            self._completed.inc()
            return
        counter = self._failed_by_code.get(outcome.code)
        if counter is None:
            counter = self._failure_counter(outcome.code)
        counter.inc()

    def _failure_counter(self, code: str) -> Counter:
        if len(self._failed_by_code) >= MAX_FAILURE_CODES or len(code) > MAX_CODE_CHARS:
            code = OTHER_CODE
        counter = self._failed_by_code.get(code)
        if counter is None:
            counter = self._failed_by_code[code] = self._failed.labels(code)
        return counter

    def timed(self, run: Run) -> Run:
        """``run``, observing each attempt's queue wait (at its start) and run time."""
        queue_wait, run_time = self._queue_wait, self._run_time

        async def timed_run(request: OperationRequested, attempt: int) -> TerminalEvent:
            started = time.time()
            queue_wait.observe(max(0.0, started - request.occurred_at.timestamp()))
            outcome = await run(request, attempt)
            run_time.observe(time.time() - started)
            return outcome

        return timed_run


class ProjectorMetrics:
    """What the projector counts and times."""

    def __init__(self, durable: str, service: str, streams: tuple[str, ...]) -> None:
        self.registry = registry = new_registry()
        self.backlog = ConsumerBacklog(registry, durable, streams)
        self.dead_letters = _dead_letters(registry, service)
        self._submit_to_final = Histogram(
            "asyncgate_operation_submit_to_final_seconds",
            "From an operation's request to its terminal event (as folded into its view).",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def observe_folded(self, view: OperationView | None, sequences: list[int]) -> None:
        """A view stored after folding the events at ``sequences``: timed if they held the
        terminal event that decided it (a redelivered one is timed again; that is rare)."""
        if view is None or view.terminal_sequence not in sequences:
            return
        if view.created_at is not None and view.completed_at is not None:
            self._submit_to_final.observe(_seconds(view.created_at, view.completed_at))


class CallbackMetrics:
    """What the callbacks service counts and times."""

    def __init__(self, durable: str, service: str, streams: tuple[str, ...]) -> None:
        self.registry = registry = new_registry()
        self.backlog = ConsumerBacklog(registry, durable, streams)
        self.dead_letters = _dead_letters(registry, service)
        attempts = Counter(
            "asyncgate_callback_attempts",
            "Callback attempts, by what they came to: delivered, retried (failed, to be tried "
            "again) or abandoned (failed, the last try).",
            ["outcome"],
            registry=registry,
        )
        self.delivered = attempts.labels("delivered")
        self.retried = attempts.labels("retried")
        self.abandoned = attempts.labels("abandoned")
        self.attempt_time = Histogram(
            "asyncgate_callback_attempt_seconds",
            "How long one callback attempt took, from resolving its host to the answer.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )


class MetricsPortError(RuntimeError):
    """The metrics port cannot be listened on (taken, or not this host's)."""


class MetricsServer:
    """Answers ``GET /metrics`` for a service that serves no HTTP otherwise; 404 to anything
    else. A plain asyncio server on the service's own event loop: no thread, and a scrape can
    ask NATS for the consumer's backlog first."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    @classmethod
    async def start(
        cls,
        settings: Settings,
        port: int,
        registry: CollectorRegistry,
        backlog: ConsumerBacklog,
        js: JetStreamContext,
    ) -> "MetricsServer | None":
        """Serve ``registry`` on ``ASYNCGATE_HTTP_HOST:port`` (None, serving nothing, if the
        port is 0), refreshing ``backlog`` at each scrape."""
        if port == 0:
            return None

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(CONSUMER_INFO_TIMEOUT_S * 2):
                    head = await reader.readuntil(b"\r\n\r\n")
                    method, target = head.split(b" ", 2)[:2]
                    if method in (b"GET", b"HEAD") and target.split(b"?")[0] == b"/metrics":
                        await backlog.refresh(js)
                        body, content_type = exposition(registry)
                        status = b"200 OK"
                    else:
                        body, content_type, status = b"not found\n", "text/plain", b"404 Not Found"
                    writer.write(
                        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type.encode()
                        + b"\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\nConnection: close\r\n\r\n" + (b"" if method == b"HEAD" else body)
                    )  # fmt: skip
                    await writer.drain()
            except (
                TimeoutError,
                ValueError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ConnectionError,
            ):
                pass  # a client that sent no request, or left: nothing to answer
            finally:
                writer.close()

        try:
            server = await asyncio.start_server(answer, settings.http_host, port)
        except OSError as error:
            raise MetricsPortError(
                f"cannot serve metrics on {settings.http_host}:{port}: {error.strerror or error}"
            ) from error
        log.info("metrics at http://%s:%d/metrics", settings.http_host, port)
        return cls(server)

    async def stop(self) -> None:
        """Stop listening."""
        self._server.close()
        await self._server.wait_closed()
