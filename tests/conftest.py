"""Fixtures: a fresh nats-server for every infrastructure test, on a free port, own store."""

import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from services.common.jetstream import connect, declare_all
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings


@dataclass
class NatsServer:
    """A nats-server process the test may also stop."""

    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real JetStream server that lives for one test."""
    port = free_port()
    log = (tmp_path / "nats-server.log").open("w")
    process = subprocess.Popen(
        nats_server_command(store_dir=tmp_path / "nats", port=port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield NatsServer(url=f"nats://127.0.0.1:{port}", process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL of the test's nats-server."""
    return nats_server.url


@pytest.fixture
def settings(nats_url: str) -> Settings:
    """Settings pointing every service at the test's server."""
    return Settings(
        nats_url=nats_url,
        http_port=free_port(),
        shutdown_grace_s=2.0,
        executor_ack_wait_s=5.0,
    )


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NatsClient]:
    """A plain NATS connection for the test's own looks at the stream and the bucket."""
    client = await connect(settings, "asyncgate-test")
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
async def js(nc: NatsClient, settings: Settings) -> JetStreamContext:
    """JetStream with the stream and the view bucket declared."""
    context = nc.jetstream()
    await declare_all(context, settings)
    return context


@pytest.fixture
async def kv(js: JetStreamContext, settings: Settings) -> KeyValue:
    """The view bucket."""
    return await declare_all(js, settings)
