"""The typed context every edge resolver gets (``strawberry.Info[EdgeContext, None]``)."""

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from graphql import GraphQLSchema
from nats.js.kv import KeyValue
from starlette.responses import Response

from contracts.errors import ErrorCode
from contracts.events import ForwardedIdentity
from contracts.view import OperationView
from services.common.callback_urls import AllowedHosts, CallbackUrlError, check_callback_url
from services.common.documents import DocumentCache
from services.common.event_log import EventLog
from services.common.identity import OperationContext
from services.common.listing import Listing
from services.common.metrics import EdgeMetrics
from services.common.results import ResultStore
from services.common.target import Target
from services.common.tracing import Tracing, trace_id_of
from services.edge.downloads import result_json
from services.edge.errors import coded_error
from services.edge.forwarding import Forwarding
from services.edge.limits import Limiter
from services.edge.reads import find_operation, follow_operation
from services.edge.result_memory import ReadBudget, ResultMemory
from services.edge.shape_limits import ShapeLimits
from services.edge.watch import ViewWatchHub


@dataclass(kw_only=True)
class EdgeContext(OperationContext):
    """The target schema's context plus what the async fields need to queue and read."""

    events: EventLog
    kv: KeyValue
    target: Target
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
    # The edge's one budget for results held in memory (services/edge/result_memory.py).
    result_memory: ResultMemory | None = None
    # ASYNCGATE_START_WITHIN_S: the start deadline of a request that sets none (0: none).
    start_within_s: float = 0.0
    # ASYNCGATE_CALLBACK_ALLOWED_HOSTS: where callback URLs may point (none: nowhere).
    callback_hosts: AllowedHosts = field(default_factory=AllowedHosts)
    tracing: Tracing
    metrics: EdgeMetrics
    # The client's W3C traceparent, if it sent a valid one: its trace is the request's.
    traceparent: str | None = None
    # The request's one random id: the id of the first operation it queues, and its trace id
    # unless the client sent one.
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    nats_connected: bool = True
    # Upstream mode: forwarding the upstream's operations, and who the caller is for it.
    forwarding: Forwarding | None = None
    # strawberry puts a WebSocket's connection_init payload here.
    connection_params: object = None
    # The HTTP response being built for this request (None over a WebSocket): headers set on it
    # during resolution reach the client, as a synchronous action's Set-Cookie does.
    response: Response | None = None
    # What the compiled path for submits met queueing this request's operation: the resolver
    # raises it, so that it is answered as every other error (services/edge/compiled_submits.py).
    submit_failure: Exception | None = None
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

    def callback_url(self, url: str | None) -> str | None:
        """``url`` if callbacks may go there (None stays None); a coded error otherwise."""
        if url is None:
            return None
        try:
            check_callback_url(url, self.callback_hosts)
        except CallbackUrlError as error:
            raise coded_error(str(error), ErrorCode.CALLBACK_URL_NOT_ALLOWED) from None
        return url

    @property
    def target_graphql_schema(self) -> GraphQLSchema:
        """The target's schema as graphql-core sees it, for validating inner documents."""
        return self.target.graphql_schema

    def forwarded_identity(self, operation_id: str) -> ForwardedIdentity | None:
        """What operation ``operation_id`` carries for an upstream (None: not upstream mode)."""
        if self.forwarding is None:
            return None
        return self.forwarding.identity(self.principal, self.client_headers, operation_id)

    async def result_json(self, view: OperationView) -> bytes:
        """The operation's result as ``data`` returns it (read from the results bucket when
        the view refers to an object); a coded error when over the read limit or gone."""
        if self.read_budget is not None:
            return await result_json(view, self.results, self.read_budget, self.max_read_bytes)
        # A WebSocket's field: its own budget, given back once the field is answered.
        budget = ReadBudget(self.max_read_bytes, self.result_memory)
        try:
            return await result_json(view, self.results, budget, self.max_read_bytes)
        finally:
            budget.release()

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
