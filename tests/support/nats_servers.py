"""Real nats-server processes for fault-injection tests: one server or a three-node JetStream
cluster, any node of which a test may SIGKILL and start again on the same ports and store."""

import asyncio
import concurrent.futures
import json
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import nats
from nats.aio.client import Client as NatsClient

from services.common.nats_server import free_port, nats_server_binary, port_is_free
from tests.support.processes import ChildProcess

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, even inside an async test's running loop (which forbids
    ``asyncio.run``), by giving it a loop of its own in a helper thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _quiet(_: Exception) -> None:
    """nats-py error callback: a node the test just killed is expected, not worth a log line."""


async def connect(urls: list[str]) -> NatsClient:
    """A short-lived nats-py connection to any of ``urls``, for looking at JetStream."""
    return await nats.connect(
        servers=urls, connect_timeout=2, max_reconnect_attempts=2, error_cb=_quiet
    )


@dataclass(frozen=True)
class ClusterRoutes:
    """A node's part in a cluster: the cluster's name, its own route port, every route port."""

    name: str
    port: int
    routes: tuple[int, ...]


class NatsServer(ChildProcess):
    """One nats-server with JetStream, its own config, store, log and free ports, started from
    a config file (``sync_interval`` has no command-line flag). After ``kill()``, ``start()``
    brings it back on the same ports with the same store, as a rebooted machine comes back."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "n1",
        sync_always: bool = False,
        max_payload: int | None = None,
        cluster: ClusterRoutes | None = None,
        extra_config: str = "",
    ) -> None:
        super().__init__(directory / "server.log")
        self._name = name
        self.port, self.monitor_port = free_port(), free_port()
        self.store_dir = directory / "store"
        self.config_path = directory / "server.conf"
        lines = [
            f"server_name: {json.dumps(name)}",
            f'listen: "127.0.0.1:{self.port}"',
            f'http: "127.0.0.1:{self.monitor_port}"',  # for /healthz
            f"jetstream {{\n  store_dir: {json.dumps(str(self.store_dir))}",
            *(["  sync_interval: always"] if sync_always else []),
            "}",
            *([f"max_payload: {max_payload}"] if max_payload is not None else []),
            extra_config,
        ]
        if cluster is not None:
            routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in cluster.routes)
            lines.append(
                f"cluster {{\n  name: {json.dumps(cluster.name)}\n"
                f'  listen: "127.0.0.1:{cluster.port}"\n  routes: [{routes}]\n}}'
            )
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def name(self) -> str:
        """The server_name (what JetStream reports as a stream's leader)."""
        return self._name

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the process; return once its client port accepts connections."""
        self._spawn([nats_server_binary(), "--config", str(self.config_path)])
        deadline = time.monotonic() + timeout_s
        while port_is_free(self.port):
            if not self.running or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server {self._name} did not listen:\n{self.log_tail()}")
            time.sleep(0.02)

    def restart(self) -> None:
        """Stop it if running (SIGTERM), then start it on the same ports with the same store."""
        self.stop()
        self.start()

    def healthy(self) -> bool:
        """True when /healthz answers 200: up and, in a cluster, JetStream has a meta leader."""
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Block until ``healthy()``, e.g. until a restarted node has rejoined its cluster."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if not self.running or time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self._name} not healthy:\n{self.log_tail()}")
            time.sleep(0.1)


def start_server(
    tmp_path: Path,
    *,
    name: str = "n1",
    sync_always: bool = False,
    max_payload: int | None = None,
    extra_config: str = "",
) -> NatsServer:
    """A started single JetStream server under ``tmp_path``; the caller stops it.

    ``extra_config`` is appended to its configuration (an ``authorization`` block, say); edit
    ``config_path`` and send SIGHUP to reload it.
    """
    server = NatsServer(
        tmp_path / f"nats-{name}",
        name=name,
        sync_always=sync_always,
        max_payload=max_payload,
        extra_config=extra_config,
    )
    server.start()
    return server


class NatsCluster:
    """Three JetStream nodes (n1, n2, n3) routed to each other in one cluster."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        cluster_name: str = "asyncgate",
        sync_always: bool = True,
        max_payload: int | None = None,
    ) -> None:
        names = ("n1", "n2", "n3")
        route_ports = tuple(free_port() for _ in names)
        self._servers = [
            NatsServer(
                tmp_path / f"nats-{name}",
                name=name,
                sync_always=sync_always,
                max_payload=max_payload,
                cluster=ClusterRoutes(cluster_name, port, route_ports),
            )
            for name, port in zip(names, route_ports, strict=True)
        ]

    @property
    def servers(self) -> list[NatsServer]:
        """The three nodes."""
        return list(self._servers)

    @property
    def urls(self) -> str:
        """Every node's URL, comma-separated (as ASYNCGATE_NATS_URL takes them)."""
        return ",".join(server.url for server in self._servers)

    @property
    def running(self) -> bool:
        """True while any node runs."""
        return any(server.running for server in self._servers)

    def node(self, name: str) -> NatsServer:
        """The node whose server_name is ``name``."""
        return next(server for server in self._servers if server.name == name)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node, then wait until JetStream is usable (a meta leader exists)."""
        try:
            for server in self._servers:
                server.start()
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every running node is healthy and JetStream answers account info."""
        deadline = time.monotonic() + timeout_s
        for server in self._servers:
            if server.running:
                server.wait_healthy(max(0.0, deadline - time.monotonic()))

        async def answers() -> None:
            while True:
                try:
                    nc = await connect(self._running_urls())
                    try:
                        await nc.jetstream(timeout=2).account_info()
                        return
                    finally:
                        await nc.close()
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

        run_sync(answers)

    def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, then wait (SIGKILL what lingers)."""
        for server in self._servers:
            server.signal(signal.SIGTERM)
        for server in self._servers:
            server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _running_urls(self) -> list[str]:
        return [server.url for server in self._servers if server.running] or [self._servers[0].url]

    async def stream_leader(
        self, stream: str, *, timeout_s: float = 30.0, caught_up: bool = False
    ) -> str:
        """The server_name of ``stream``'s leader, waiting out an election in progress (a leader
        that is not running does not count). ``caught_up``: also wait until every replica is
        current, e.g. until a restarted node has caught up."""
        deadline = time.monotonic() + timeout_s
        last: object = "no answer"
        while time.monotonic() < deadline:
            try:
                nc = await connect(self._running_urls())
                try:
                    # Short: during an election requests go unanswered, and a long wait here
                    # would make the measured failover look slower than it is.
                    info = await nc.jetstream(timeout=0.5).stream_info(stream)
                finally:
                    await nc.close()
                last = cluster = info.cluster
                leader = cluster.leader if cluster is not None else None
                replicas = (cluster.replicas or []) if cluster is not None else []
                alive = {server.name for server in self._servers if server.running}
                current = all(peer.current and not peer.offline for peer in replicas)
                complete = current and len(replicas) == (info.config.num_replicas or 1) - 1
                if leader in alive and (complete or not caught_up):
                    return str(leader)
            except Exception as error:  # no leader yet: nobody answers
                last = error
            await asyncio.sleep(0.1)
        raise TimeoutError(f"stream {stream}: no (current) leader within {timeout_s:g} s: {last}")
