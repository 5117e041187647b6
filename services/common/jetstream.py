"""Connecting to NATS and declaring, explicitly and idempotently, the stream and the view bucket."""

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from contracts.names import (
    ALL_EVENTS,
    DEAD_LETTER_ROOT,
    DEAD_LETTER_STREAM,
    LIMITS_BUCKET,
    STREAM,
    VIEW_BUCKET,
)
from services.common.nats_auth import nats_connect_options
from services.common.retry import riding_through
from services.common.settings import Settings

log = logging.getLogger(__name__)

# JetStream's duplicate window: a request re-published with the same operation id inside it is
# stored once. Two minutes is the server default, stated so nobody has to look it up.
DUPLICATE_WINDOW_S = 120.0
LIMITS_TTL_S = 24 * 3600.0


async def connect(
    settings: Settings,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> NatsClient:
    """Open a NATS connection that keeps reconnecting, to any configured server, for as long
    as the service runs; ``on_closed`` is told if nats-py gives up on it."""
    options: dict[str, Any] = nats_connect_options(settings)
    options["error_cb"] = report_nats_error
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect
    if on_closed is not None:
        options["closed_cb"] = on_closed
    return await nats.connect(
        settings.nats_servers,
        name=name,
        **options,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


async def close_connection(nc: NatsClient) -> None:
    """Drain the connection (finish what is in flight), or just close it while it is down:
    nats-py refuses to drain a reconnecting connection."""
    if nc.is_closed:
        return
    if nc.is_connected:
        await nc.drain()
    else:
        await nc.close()


# The same connection error is reported once per this many seconds: during an outage the client
# retries twice a second, and the log must stay readable.
REPEAT_REPORT_S = 30.0
_last_reported: dict[str, float] = {}


async def report_nats_error(error: Exception) -> None:
    """nats-py's error callback: the client keeps retrying (NATS may start after us), but an
    operator must still see why, for instance a login NATS refuses."""
    text = str(error) or type(error).__name__
    now = time.monotonic()
    if now - _last_reported.get(text, -REPEAT_REPORT_S) >= REPEAT_REPORT_S:
        _last_reported[text] = now
        log.error("NATS: %s (repeats are reported every %g s)", text, REPEAT_REPORT_S)


def stream_config(settings: Settings) -> StreamConfig:
    """The event stream: limits retention (replayable), file storage, kept longer than the view."""
    return StreamConfig(
        name=STREAM,
        subjects=[ALL_EVENTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.stream_max_age_s,
        num_replicas=settings.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
    )


def dead_letter_stream_config(settings: Settings) -> StreamConfig:
    """Messages the services could not read, kept as long as the events for an operator."""
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_ROOT}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.stream_max_age_s,
        num_replicas=settings.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def view_bucket_config(settings: Settings) -> KeyValueConfig:
    """The status view: one value per operation, expiring ``result_ttl`` after its last write."""
    return KeyValueConfig(
        bucket=VIEW_BUCKET,
        description="asyncgate operation status view (rebuildable from the event stream)",
        history=1,
        ttl=settings.result_ttl_s,
        storage=StorageType.FILE,
        replicas=settings.replicas,
        direct=True,
    )


async def declare_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream, or bring an existing one to the configured limits."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with other limits (say, a changed retention): converge on the configuration.
        log.info("updating stream %s to the configured limits", config.name)
        await js.update_stream(config)


async def declare_view_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Create the view bucket, or bind to it and bring its TTL to the configured one."""
    config = view_bucket_config(settings)
    try:
        return await js.create_key_value(config)
    except BadRequestError:
        kv = await js.key_value(VIEW_BUCKET)
        info = await js.stream_info(f"KV_{VIEW_BUCKET}")
        if info.config.max_age != config.ttl:
            log.info("updating bucket %s TTL to %ss", VIEW_BUCKET, config.ttl)
            info.config.max_age = config.ttl
            await js.update_stream(info.config)
        return kv


async def declare_limits_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    """The per-user limit state; an idle user's entry expires after a day."""
    return await riding_through(
        functools.partial(_declare_limits_bucket, js, settings),
        what="declaring the limits bucket",
        budget_s=DECLARE_RIDE_THROUGH_S,
    )


async def _declare_limits_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    try:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=LIMITS_BUCKET,
                description="asyncgate per-user limits (active operations, last start)",
                history=1,
                ttl=LIMITS_TTL_S,
                storage=StorageType.FILE,
                replicas=settings.replicas,
            )
        )
    except BadRequestError:
        return await js.key_value(LIMITS_BUCKET)


# Declaring is idempotent; a service started during a cluster's leader election waits it out.
DECLARE_RIDE_THROUGH_S = 30.0


async def declare_all(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Declare everything asyncgate stores in JetStream; return the view bucket."""

    async def declare() -> KeyValue:
        await declare_stream(js, stream_config(settings))
        await declare_stream(js, dead_letter_stream_config(settings))
        return await declare_view_bucket(js, settings)

    return await riding_through(
        declare, what="declaring the stream and buckets", budget_s=DECLARE_RIDE_THROUGH_S
    )


async def is_ready(js: JetStreamContext) -> bool:
    """True when the stream and the view bucket both exist."""
    try:
        await js.stream_info(STREAM)
        await js.stream_info(f"KV_{VIEW_BUCKET}")
    except (NotFoundError, TimeoutError, nats.errors.Error):
        return False
    return True
