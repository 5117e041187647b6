"""The typed context every edge resolver gets (``strawberry.Info[EdgeContext, None]``)."""

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
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
    shape: ShapeLimits
    # asyncQuery's inner documents, parsed and validated against the target schema.
    inner_documents: DocumentCache
    http: httpx.AsyncClient
    client_headers: Mapping[str, str]
    retention: timedelta
    trace_id: str
    nats_connected: bool = True
    # strawberry puts a WebSocket's connection_init payload here.
    connection_params: object = None

    @property
    def target_graphql_schema(self) -> GraphQLSchema:
        """The target schema as graphql-core sees it, for validating inner documents."""
        return self.target._schema

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
