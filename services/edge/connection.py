"""The edge's NATS connection and everything it holds open, between lifespan start and stop."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.cloudevents import EDGE_SOURCE
from contracts.names import IDEMPOTENCY_BUCKET, LIMITS_BUCKET, VIEW_BUCKET
from services.actions.handler import handler_client
from services.common.active_operations import LimitPolicy
from services.common.event_log import EventLog
from services.common.jetstream import close_connection, connect
from services.common.layout import (
    NotProvisionedError,
    check_provisioned,
    layout_for,
)
from services.common.listing import Listing
from services.common.results import ResultStore
from services.common.runtime import ConnectionWatch
from services.common.settings import Settings
from services.edge.limits import Limiter
from services.edge.watch import ViewWatchHub

log = logging.getLogger("asyncgate.edge")


@dataclass
class EdgeConnection:
    """The NATS connection and its handles; present between lifespan start and stop."""

    nc: NatsClient | None = None
    js: JetStreamContext | None = None
    events: EventLog | None = None
    kv: KeyValue | None = None
    views: ViewWatchHub = field(default_factory=ViewWatchHub)
    # For synchronous actions, which call their handler inside the request.
    http: httpx.AsyncClient | None = None
    limits: Limiter | None = None
    listing: Listing | None = None
    idempotency: KeyValue | None = None
    # Large results: read for asyncResult.data and downloads, removed by asyncDelete.
    results: ResultStore | None = None
    watch: ConnectionWatch | None = None

    async def open(self, settings: Settings, *, on_connection_lost: Callable[[], None]) -> None:
        """Connect, check that JetStream is provisioned, bind the buckets, start the hub.

        Raises NotProvisionedError (after logging why) if JetStream is not as it must be.
        """

        async def resync_subscriptions() -> None:
            # nats-py has subscribed again by now; what changed meanwhile is read back.
            self.views.resync()

        self.watch = ConnectionWatch("edge", on_lost=on_connection_lost)
        nc = self.nc = await connect(
            settings,
            "asyncgate-edge",
            on_reconnect=resync_subscriptions,
            on_closed=self.watch.closed,
        )
        self.watch.watch(nc)
        js = self.js = nc.jetstream()
        self.events = EventLog(nc, js, source=EDGE_SOURCE)
        try:
            await check_provisioned(
                js, layout_for(settings, limits=True, listing=True, idempotency=True, results=True)
            )
        except NotProvisionedError as error:
            log.critical("edge will not start: %s", error)
            await self.close()
            raise
        self.kv = await js.key_value(VIEW_BUCKET)
        self.limits = Limiter(
            state=await js.key_value(LIMITS_BUCKET),
            events=self.events,
            policy=LimitPolicy.from_settings(settings),
        )
        self.listing = Listing.over(nc)
        self.idempotency = await js.key_value(IDEMPOTENCY_BUCKET)
        self.results = ResultStore(js, self.events.inbox)
        # Core subscriptions per watched key: nothing to create on the server until a client
        # subscribes.
        self.views.start(nc, self.kv)
        self.http = handler_client()
        log.info("edge connected to %s", settings.nats_url)

    async def close(self) -> None:
        """Stop the hub and the clients, then drain (or, while NATS is away, close) NATS."""
        if self.watch is not None:
            await self.watch.stop()
        if self.http is not None:
            await self.http.aclose()
        await self.views.stop()
        if self.listing is not None:
            await self.listing.reads.close()
        if self.events is not None:
            await self.events.close()
        if self.nc is not None:
            await close_connection(self.nc)
        self.nc = self.js = self.kv = self.events = self.http = self.limits = self.listing = None
        self.idempotency = self.results = None
