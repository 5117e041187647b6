"""Fixtures of the fault tests: a single JetStream server that syncs every write, a stack of
service processes on it, and a connection for auditing what happened."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.support.nats_servers import NatsServer, connect, start_server
from tests.support.processes import ServiceStack

# Short timers so that lost work comes back within seconds, not the production half-minute.
FAST_RECOVERY = {
    "ASYNCGATE_EXECUTOR_ACK_WAIT_S": "2",
    "ASYNCGATE_PROJECTOR_ACK_WAIT_S": "2",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """One JetStream server, configured as production is (every write synced before its ack)."""
    with start_server(tmp_path, sync_always=True) as started:
        yield started


@pytest.fixture
async def stack(server: NatsServer, tmp_path: Path) -> AsyncIterator[ServiceStack]:
    """Edge, executor and projector as processes on ``server``, ready."""
    async with ServiceStack(server.url, tmp_path / "services", FAST_RECOVERY) as services:
        yield services


class Inspector:
    """A look at JetStream from outside the services."""

    def __init__(self, nc: NatsClient, js: JetStreamContext) -> None:
        self.nc, self.js = nc, js


async def inspector(urls: list[str]) -> Inspector:
    """Connect to any of ``urls``."""
    nc = await connect(urls)
    return Inspector(nc, nc.jetstream())
