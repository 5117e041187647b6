"""asyncgate as the bench runs it: nats-server and each service a process of its own, started
with the helpers the tests use (tests/support), plus a second, idle edge whose NATS traffic
tells whether an edge receives view changes nobody there watches."""

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.probes import connections_by_cid
from services.common.nats_server import free_port
from tests.support.nats_servers import NatsServer, start_server
from tests.support.processes import ServiceProcess, ServiceStack

# What the edge names its NATS connection (services/edge/connection.py).
EDGE_CONNECTION_NAME: Final = "asyncgate-edge"
# The services the bench counts CPU for, and nats-server, in the order reports list them.
PROCESSES: Final = ("edge", "executor", "projector", "nats-server")


@dataclass
class AsyncgateStack:
    """A running nats-server, edge, executor and projector, and the idle second edge."""

    server: NatsServer
    services: ServiceStack
    idle_edge: ServiceProcess
    idle_edge_cid: int | None

    @property
    def base_url(self) -> str:
        """The measured edge's HTTP address."""
        return self.services.base_url

    @property
    def ws_url(self) -> str:
        """The measured edge's GraphQL WebSocket address."""
        return self.services.base_url.replace("http://", "ws://", 1) + "/graphql"

    @property
    def monitor_url(self) -> str:
        """nats-server's HTTP monitoring address."""
        return f"http://127.0.0.1:{self.server.monitor_port}"

    def pids(self) -> dict[str, list[int]]:
        """Each measured process's pid, by the names in PROCESSES (the idle edge is left out)."""
        stack = self.services
        return {
            "edge": [stack.edge.pid],
            "executor": [stack.executor.pid],
            "projector": [stack.projector.pid],
            "nats-server": [self.server.pid],
        }


def _edge_cids(monitor_url: str) -> set[int]:
    connections = connections_by_cid(monitor_url)
    return {cid for cid, conn in connections.items() if conn.get("name") == EDGE_CONNECTION_NAME}


@contextlib.asynccontextmanager
async def asyncgate_stack(
    directory: Path, *, sync_always: bool, env: Mapping[str, str] | None = None
) -> AsyncIterator[AsyncgateStack]:
    """nats-server and the services under ``directory``; every process stopped at the end,
    whatever ends the block (an error, Ctrl-C)."""
    server = start_server(directory, sync_always=sync_always)
    try:
        services = ServiceStack(server.url, directory / "logs", env)
        idle_edge = services.add(
            "edge", name="idle-edge", env={"ASYNCGATE_HTTP_PORT": str(free_port())}
        )
        try:
            await services.provision()
            for process in (services.edge, services.executor, services.projector):
                process.start()
            await services.wait_ready(60.0)
            # The idle edge starts last, so the connection that appears now is its own.
            before = _edge_cids(f"http://127.0.0.1:{server.monitor_port}")
            idle_edge.start()
            await idle_edge.wait_ready(60.0)
            new = _edge_cids(f"http://127.0.0.1:{server.monitor_port}") - before
            yield AsyncgateStack(server, services, idle_edge, min(new) if len(new) == 1 else None)
        finally:
            services.stop()
    finally:
        server.stop()


@contextlib.contextmanager
def scratch_server(directory: Path) -> Iterator[NatsServer]:
    """A throwaway nats-server with its default settings (sync_interval included)."""
    server = start_server(directory, name="scratch")
    try:
        yield server
    finally:
        server.stop()
