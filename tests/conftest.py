"""Fixtures: a fresh nats-server for every infrastructure test, on a free port, own store."""

import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import hypothesis
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from services.common.event_log import EventLog
from services.common.jetstream import connect
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.provision import provision_nats

# hypothesis's first run in a fresh clone scans the source for constants (about 2 s here), which
# its too_slow health check took for a slow strategy: `./dev unit` failed on every fresh clone.
# Timing is no test's business on a shared machine, so neither is a per-example deadline.
hypothesis.settings.register_profile(
    "asyncgate", suppress_health_check=[hypothesis.HealthCheck.too_slow], deadline=None
)
hypothesis.settings.load_profile("asyncgate")


@dataclass
class NatsServer:
    """A nats-server process the test may also stop or restart (same port, same store)."""

    url: str
    process: subprocess.Popen[bytes]
    command: list[str]
    port: int
    log: IO[bytes]

    def stop(self) -> None:
        """Stop the server the way an operator would (SIGTERM)."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same store."""
        self.stop()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real JetStream server that lives for one test."""
    port = free_port()
    command = nats_server_command(store_dir=tmp_path / "nats", port=port)
    log = (tmp_path / "nats-server.log").open("wb")
    server = NatsServer(
        url=f"nats://127.0.0.1:{port}",
        process=subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
        command=command,
        port=port,
        log=log,
    )
    try:
        wait_for_port(port)
        yield server
    finally:
        server.stop()
        log.close()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL of the test's nats-server."""
    return nats_server.url


@pytest.fixture
async def settings(nats_url: str) -> Settings:
    """Settings pointing every service at the test's server, provisioned as they expect."""
    configured = Settings(
        nats_url=nats_url,
        http_port=free_port(),
        shutdown_grace_s=2.0,
        executor_ack_wait_s=5.0,
        # Tests submit many operations as one user; the limits have tests of their own.
        max_active_per_user=0,
        min_start_interval_s=0,
    )
    await provision_nats(configured)
    return configured


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NatsClient]:
    """A plain NATS connection for the test's own looks at the stream and the bucket."""
    client = await connect(settings, "asyncgate-test")
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    """JetStream, provisioned (by the settings fixture ``nc`` depends on)."""
    return nc.jetstream()


@pytest.fixture
async def kv(js: JetStreamContext) -> KeyValue:
    """The view bucket."""
    return await js.key_value(VIEW_BUCKET)


@pytest.fixture
async def event_log(nc: NatsClient, js: JetStreamContext) -> EventLog:
    """The event stream as services read and append to it."""
    return EventLog(nc, js)
