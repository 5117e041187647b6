"""Connecting to NATS: every configured server, the configured login, quiet about repeats."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient

from services.common.nats_auth import nats_connect_options
from services.common.nats_headers import FastHeadersClient
from services.common.settings import Settings

log = logging.getLogger(__name__)


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
    # nats-py annotates the wait as int; it takes seconds as a float.
    options.update(max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5)
    nc = FastHeadersClient()
    await nc.connect(settings.nats_servers, name=name, **options)
    return nc


def stored_at(reply: str) -> tuple[int, float]:
    """(stream sequence, time stored in seconds since the epoch) of a JetStream delivery, from
    its reply subject, without nats-py's metadata parsing (a dataclass and a datetime per
    message): ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time ns>
    .<pending>`` (9 tokens), or with a domain and an account hash before the stream (12)."""
    tokens = reply.split(".")
    offset = 0 if len(tokens) == 9 else 2
    return int(tokens[5 + offset]), int(tokens[7 + offset]) / 1e9


RECONNECT_POLL_S = 0.05


async def connected_within(nc: NatsClient, seconds: float) -> bool:
    """True if the connection is up, or back within ``seconds``: a failover to another server
    of a cluster takes about half a second, and is better waited out than refused."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not nc.is_connected:
        if nc.is_closed or loop.time() >= deadline:
            return False
        await asyncio.sleep(RECONNECT_POLL_S)
    return True


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
