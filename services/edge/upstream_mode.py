"""The edge in upstream mode: its schema loaded at start and kept fresh, merged into the edge's
schema each time it changes (services/edge/forwarding.py)."""

import logging

import httpx
import strawberry
from graphql import GraphQLSchema

from services.actions.handler import handler_client
from services.common.settings import Settings
from services.common.upstream.config import UpstreamConfig
from services.common.upstream.schema import SchemaRefresher
from services.common.upstream.target import UpstreamTarget
from services.edge.forwarding import Forwarding, merged_schema

log = logging.getLogger(__name__)


class EdgeUpstream:
    """The upstream target the edge forwards to and validates against, and its refresh."""

    def __init__(self, settings: Settings, schema: strawberry.Schema) -> None:
        """Load the upstream's schema (synchronously: this runs while the app is built) and
        merge it into ``schema``, the edge's own fields (and actions), in place.

        UpstreamUnavailableError if the upstream cannot be had; ConfigurationError for bad
        upstream settings.
        """
        self.config = UpstreamConfig.from_settings(settings)
        upstream_schema = self.config.schema_source.load_at_start()
        self._own = schema._schema
        self._schema = schema
        self._schema._schema = merged_schema(self._own, upstream_schema)
        self._http = handler_client()
        self.target = UpstreamTarget(
            url=self.config.url,
            http=self._http,
            headers=self.config.headers,
            timeout=httpx.Timeout(self.config.timeout_s),
            schema=upstream_schema,
        )
        self.forwarding = Forwarding.around(
            self._own,
            forward_authorization=self.config.forward_authorization,
            keys=self.config.keys,
        )
        self._refresher: SchemaRefresher | None = None

    def replace_schema(self, upstream_schema: GraphQLSchema) -> None:
        """Serve ``upstream_schema`` from now on (UpstreamSchemaError, and nothing changes,
        if asyncgate's fields cannot be added to it)."""
        merged = merged_schema(self._own, upstream_schema)
        self.target.schema = upstream_schema
        self._schema._schema = merged

    async def refresh(self) -> bool:
        """Load the upstream's schema now; True if it changed."""
        if self._refresher is None:
            raise RuntimeError("the edge's upstream refresh has not started")
        return await self._refresher.refresh()

    def start(self) -> None:
        """Refresh the schema on SIGHUP and every ASYNCGATE_UPSTREAM_SCHEMA_REFRESH_S."""
        self._refresher = SchemaRefresher(
            self.config.schema_source,
            self._http,
            self.target.graphql_schema,
            interval_s=self.config.refresh_s,
            on_change=self.replace_schema,
        )
        self._refresher.start()

    async def close(self) -> None:
        """Stop refreshing and close the upstream's connections."""
        if self._refresher is not None:
            await self._refresher.stop()
        await self._http.aclose()
