"""An edge receives only the view changes of the operations its clients watch, and misses none
of them across a lost connection. Real nats-server (its monitoring endpoint says what each
connection received), real uvicorn edges, executor and projector."""

import asyncio
import contextlib
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from contracts.view import OperationView, TaskStatus, encode_view
from services.common.jetstream import connect
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.edge.watch import LatestView, ViewWatchHub
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.provision import provision_nats
from tests.conftest import NatsServer
from tests.stack import eventually, graphql, running, serving_edge, stored_views
from tests.support.tcp_proxy import tcp_proxy
from tests.ws_client import GraphQLWebSocket, graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBSCRIPTION = """subscription follow($id: String!) {
  asyncResult(id: $id) { operationId status data }
}"""
RANK = {"QUEUED": 0, "RUNNING": 1, "SUCCESS": 2, "ERROR": 2}
VIEW_SUBJECTS = f"$KV.{VIEW_BUCKET}."
EDGE_CONNECTION = "asyncgate-edge"


@dataclasses.dataclass
class MonitoredNats:
    """A nats-server with its monitoring endpoint on."""

    url: str
    monitor: str


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[MonitoredNats]:
    """A JetStream server whose /connz tells what each client connection was sent."""
    port, monitor_port = free_port(), free_port()
    command = [
        *nats_server_command(store_dir=tmp_path / "nats", port=port),
        "--http_port",
        str(monitor_port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        wait_for_port(monitor_port)
        yield MonitoredNats(f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor_port}")
    finally:
        process.terminate()
        process.wait(timeout=10)


async def edge_connections(monitor: str) -> dict[int, dict[str, Any]]:
    """The server's record of every edge connection (messages sent to it, its subscriptions),
    by connection id."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{monitor}/connz", params={"subs": "1", "limit": "1000"})
    connections = response.json()["connections"] or []
    return {c["cid"]: c for c in connections if c.get("name") == EDGE_CONNECTION}


def ws_url(client: httpx.AsyncClient) -> str:
    """The WebSocket URL of the edge behind ``client``."""
    return str(client.base_url).replace("http://", "ws://") + "/graphql"


async def submit(client: httpx.AsyncClient, inner: str) -> str:
    """Queue ``inner``; return the operation id."""
    response = await graphql(
        client, "mutation($q: String!) { asyncQuery(query: $q) { operationId } }", {"q": inner}
    )
    return str(response["data"]["asyncQuery"]["operationId"])


async def follow(ws: GraphQLWebSocket, operation_ids: list[str]) -> list[list[str]]:
    """Every status each subscription pushes, one subscription per operation, until all end."""
    sids = [await ws.start(SUBSCRIPTION, {"id": op}) for op in operation_ids]
    messages = await asyncio.wait_for(ws.collect(set(sids)), 30)
    return [[m["payload"]["data"]["asyncResult"]["status"] for m in messages[sid]] for sid in sids]


async def test_an_edge_receives_the_changes_of_watched_operations_only(
    monitored_nats: MonitoredNats,
) -> None:
    settings = Settings(
        nats_url=monitored_nats.url,
        http_port=free_port(),
        shutdown_grace_s=2.0,
        executor_ack_wait_s=5.0,
        max_active_per_user=0,
        min_start_interval_s=0,
        executor_concurrency=64,
    )
    await provision_nats(settings)
    nc = await connect(settings, "asyncgate-test")
    operations, watched = 100, 5
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(create_projector(settings)))
        await stack.enter_async_context(running(create_executor(settings)))
        await stack.enter_async_context(serving_edge(settings))  # the idle edge
        (idle_edge,) = await edge_connections(monitored_nats.monitor)
        busy = await stack.enter_async_context(
            serving_edge(settings.replace(http_port=free_port()))
        )
        before = (await edge_connections(monitored_nats.monitor))[idle_edge]

        operation_ids = [
            await submit(busy, "{ slowReport(seconds: 0.3) }") for _ in range(operations)
        ]
        async with graphql_websocket(ws_url(busy)) as ws:
            followed = await follow(ws, operation_ids[:watched])
        # Before the test's own listings below, which read the bucket through consumers.
        bucket = await nc.jetstream().stream_info(f"KV_{VIEW_BUCKET}")

        async def all_final() -> bool | None:
            views = await stored_views(nc.jetstream())
            done = [v for v in views.values() if v.status.is_terminal]
            return True if len(done) == operations else None

        await eventually(all_final, timeout_s=60, what=f"{operations} operations final")
        await asyncio.sleep(0.5)  # anything still on its way to the idle edge arrives
        connections = await edge_connections(monitored_nats.monitor)
        after = connections[idle_edge]
        busy_edge = next(c for cid, c in connections.items() if cid != idle_edge)
    await nc.drain()

    # Every state reached the subscribers, in order, ending on the final one.
    for statuses in followed:
        assert statuses[-1] == TaskStatus.SUCCESS, statuses
        assert [RANK[s] for s in statuses] == sorted(RANK[s] for s in statuses), statuses
    # The idle edge was sent nothing while 3 x 100 view changes were written.
    assert after["out_msgs"] == before["out_msgs"], (before["out_msgs"], after["out_msgs"])
    # Neither edge listens to the bucket once its subscribers are done, nor owns a consumer.
    for connection in (after, busy_edge):
        subjects = connection.get("subscriptions_list") or []
        assert not [s for s in subjects if s.startswith(VIEW_SUBJECTS)], subjects
    assert bucket.state.consumer_count == 0


async def test_a_final_state_written_while_the_edge_is_cut_off_still_arrives(
    settings: Settings, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async with (
        tcp_proxy(nats_server.port) as proxy,
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings.replace(nats_url=proxy.url)) as edge,
        graphql_websocket(ws_url(edge)) as ws,
    ):
        operation_id = await submit(edge, "{ slowReport(seconds: 1) }")
        sid = await ws.start(SUBSCRIPTION, {"id": operation_id})
        pushed: list[str] = []

        async def read_states() -> None:
            async for message in ws.messages():
                if message.get("id") != sid:
                    continue
                if message["type"] == "complete":
                    return
                pushed.append(message["payload"]["data"]["asyncResult"]["status"])

        reading = asyncio.create_task(read_states())
        await eventually(lambda: asyncio.sleep(0, pushed or None), what="a first state")
        await proxy.cut()  # the edge alone loses NATS; the projector keeps writing

        async def stored_final() -> bool | None:
            views = await stored_views(js)
            return True if any(v.status.is_terminal for v in views.values()) else None

        await eventually(stored_final, timeout_s=30, what="the final view stored")
        assert pushed[-1] != "SUCCESS", "the final state was written while the edge was away"
        await proxy.restore()
        await asyncio.wait_for(reading, 30)

    assert pushed[-1] == "SUCCESS"
    assert [RANK[s] for s in pushed] == sorted(RANK[s] for s in pushed), pushed


def view_at(status: TaskStatus, sequence: int) -> OperationView:
    """A view of one operation whose last folded event is at ``sequence``."""
    return OperationView(
        operation_id="op-1", tenant="t1", principal="u1", status=status, last_sequence=sequence
    )


async def states_within(mailbox: LatestView, seconds: float) -> list[OperationView | None]:
    """Every state the mailbox hands over within ``seconds``."""
    seen: list[OperationView | None] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                seen.append(await mailbox.next())
    return seen


async def test_a_write_the_bucket_refused_never_ends_a_subscription(
    nc: NatsClient, kv: KeyValue
) -> None:
    # A refused compare-and-set still reaches core subscribers of the key; the hub must not
    # hand it over as the final state.
    key = "t1.u1.op-1"
    revision = await kv.put(key, encode_view(view_at(TaskStatus.RUNNING, 2)))
    hub = ViewWatchHub()
    hub.start(nc, kv)
    async with hub.watching(key) as mailbox:
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update(key, encode_view(view_at(TaskStatus.SUCCESS, 3)), last=revision + 9)
        after_refused = await states_within(mailbox, 2.0)
        await kv.update(key, encode_view(view_at(TaskStatus.SUCCESS, 4)), last=revision)
        after_stored = await states_within(mailbox, 2.0)
        await kv.delete(key)
        after_delete = await states_within(mailbox, 2.0)
    await hub.stop()

    assert all(state is not None and not state.status.is_terminal for state in after_refused)
    assert after_stored == [view_at(TaskStatus.SUCCESS, 4)]
    assert after_delete == [None]
