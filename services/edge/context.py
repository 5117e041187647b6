"""The typed context every edge resolver gets (``strawberry.Info[EdgeContext, None]``)."""

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import strawberry
from graphql import GraphQLSchema
from nats.js.kv import KeyValue

from contracts.view import OperationView
from services.common.documents import DocumentCache
from services.common.event_log import EventLog
from services.common.identity import OperationContext
from services.common.listing import Listing
from services.common.metrics import EdgeMetrics
from services.common.results import ResultStore
from services.common.tracing import Tracing, trace_id_of
from services.edge.downloads import ReadBudget, result_json
from services.edge.limits import Limiter
from services.edge.reads import find_operation, follow_operation
from services.edge.shape_limits import ShapeLimits
from services.edge.watch import ViewWatchHub


@dataclass(kw_only=True)
class EdgeContext(OperationContext):
    """The target schema's context plus what the async fields need to queue and read."""

    events: EventLog
    kv: KeyValue
    target: strawberry.Schema
    views: ViewWatchHub
    limits: Limiter
    listing: Listing
    # Idempotency keys and the operations they queued (services/edge/idempotency.py).
    idempotency: KeyValue
    shape: ShapeLimits
    # asyncQuery's inner documents, parsed and validated against the target schema.
    inner_documents: DocumentCache
    http: httpx.AsyncClient
    client_headers: Mapping[str, str]
    retention: timedelta
    # Large results (services/common/results.py) and how much of them ``data`` reads: within
    # one HTTP request, ``read_budget`` in all; on a WebSocket (whose context lasts as long as
    # the connection, so None here) ``max_read_bytes`` per field.
    results: ResultStore
    max_read_bytes: int
    read_budget: ReadBudget | None = None
    # ASYNCGATE_START_WITHIN_S: the start deadline of a request that sets none (0: none).
    start_within_s: float = 0.0
    tracing: Tracing
    metrics: EdgeMetrics
    # The client's W3C traceparent, if it sent a valid one: its trace is the request's.
    traceparent: str | None = None
    # The request's one random id: the id of the first operation it queues, and its trace id
    # unless the client sent one.
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    nats_connected: bool = True
    # strawberry puts a WebSocket's connection_init payload here.
    connection_params: object = None
    _request_id_taken: bool = field(default=False, init=False, repr=False)

    @property
    def trace_id(self) -> str:
        """The request's OpenTelemetry trace id (32 hex digits), which a client quotes about it
        (in every response's extensions) and every event of its operations carries."""
        if self.traceparent is not None:
            return trace_id_of(self.traceparent)
        return self.request_id.hex

    def new_operation_id(self) -> str:
        """An id for an operation this request queues: the request's own id for the first, a
        fresh one for any other (several asyncQuery fields in one document, or a WebSocket's
        later operations, which share its context). Either way a random UUID, used once, so it
        can be the request's deduplication id and its event's id."""
        if self._request_id_taken:
            return str(uuid.uuid4())
        self._request_id_taken = True
        return str(self.request_id)

    @property
    def target_graphql_schema(self) -> GraphQLSchema:
        """The target schema as graphql-core sees it, for validating inner documents."""
        return self.target._schema

    async def result_json(self, view: OperationView) -> bytes:
        """The operation's result as ``data`` returns it (read from the results bucket when
        the view refers to an object); a coded error when over the read limit or gone."""
        budget = self.read_budget or ReadBudget(self.max_read_bytes)
        return await result_json(view, self.results, budget, self.max_read_bytes)

    async def find_operation(self, operation_id: str) -> OperationView | None:
        """The caller's operation, or None if it is not theirs, never existed or expired."""
        return await find_operation(
            self.events,
            self.kv,
            self.principal,
            operation_id,
            now=datetime.now(UTC),
            retention=self.retention,
        )

    def follow_operation(self, operation_id: str) -> AsyncIterator[OperationView | None]:
        """The caller's operation now, then every change, ending with its final state."""
        return follow_operation(
            self.views,
            self.events,
            self.kv,
            self.principal,
            operation_id,
            now=datetime.now(UTC),
            retention=self.retention,
        )
