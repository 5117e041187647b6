"""The typed context every edge resolver gets (``strawberry.Info[EdgeContext, None]``)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import httpx
import strawberry
from graphql import GraphQLSchema
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from services.common.identity import OperationContext
from services.edge.limits import Limiter
from services.edge.shape_limits import ShapeLimits
from services.edge.watch import ViewWatchHub


@dataclass(kw_only=True)
class EdgeContext(OperationContext):
    """The target schema's context plus what the async fields need to queue and read."""

    js: JetStreamContext
    kv: KeyValue
    target: strawberry.Schema
    views: ViewWatchHub
    limits: Limiter
    shape: ShapeLimits
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
