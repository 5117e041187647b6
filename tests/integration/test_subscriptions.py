"""Subscriptions on an operation's status over real WebSockets (graphql-transport-ws and the
legacy graphql-ws), against a real uvicorn edge, executor, projector and nats-server."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.names import VIEW_BUCKET
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.conftest import NatsServer
from tests.stack import graphql, running, serving_edge
from tests.ws_client import LEGACY_WS, TRANSPORT_WS, graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBSCRIPTION = """subscription follow($id: String!) {
  asyncResult(id: $id) { operationId status error data createdAt startedAt completedAt }
}"""
RANK = {"QUEUED": 0, "RUNNING": 1, "SUCCESS": 2, "ERROR": 2}


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Edge, executor and projector against the test's nats-server."""
    settings = settings.replace(executor_concurrency=64)
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


def ws_url(client: httpx.AsyncClient) -> str:
    """The WebSocket URL of the edge behind ``client``."""
    return str(client.base_url).replace("http://", "ws://") + "/graphql"


async def submit(client: httpx.AsyncClient, inner: str) -> str:
    """Queue ``inner``; return the operation id."""
    response = await graphql(
        client, "mutation($q: String!) { asyncQuery(query: $q) { operationId } }", {"q": inner}
    )
    return str(response["data"]["asyncQuery"]["operationId"])


def states(messages: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """The asyncResult payloads of a subscription's messages."""
    return [message["payload"]["data"]["asyncResult"] for message in messages]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscriber_gets_the_state_at_once_then_each_change_then_completion(
    stack: httpx.AsyncClient, protocol: str
) -> None:
    operation_id = await submit(stack, "{ slowReport(seconds: 1) }")

    async with graphql_websocket(ws_url(stack), protocol) as ws:
        sid = await ws.start(SUBSCRIPTION, {"id": operation_id})
        received = states((await asyncio.wait_for(ws.collect({sid}), 20))[sid])

    assert all(state is not None for state in received)
    seen = [state["status"] for state in received if state is not None]
    assert seen[0] in ("QUEUED", "RUNNING")
    assert seen[-1] == "SUCCESS"
    assert "RUNNING" in seen
    assert [RANK[s] for s in seen] == sorted(RANK[s] for s in seen), "never backwards"
    final = received[-1]
    assert final is not None
    assert final["data"] == '{"data":{"slowReport":"report ready after 1 s"}}'
    assert final["completedAt"] is not None


async def test_a_late_subscriber_gets_the_final_state_then_completion(
    stack: httpx.AsyncClient,
) -> None:
    operation_id = await submit(stack, "{ slowReport(seconds: 0) }")
    async with graphql_websocket(ws_url(stack)) as ws:
        first = await ws.start(SUBSCRIPTION, {"id": operation_id})
        await asyncio.wait_for(ws.collect({first}), 20)

        late = await ws.start(SUBSCRIPTION, {"id": operation_id})
        received = states((await asyncio.wait_for(ws.collect({late}), 20))[late])

    assert [state["status"] for state in received if state] == ["SUCCESS"]


async def test_unknown_ids_push_null_and_malformed_ids_an_error(stack: httpx.AsyncClient) -> None:
    async with graphql_websocket(ws_url(stack)) as ws:
        unknown = await ws.start(SUBSCRIPTION, {"id": str(uuid.uuid4())})
        unknown_messages = (await asyncio.wait_for(ws.collect({unknown}), 10))[unknown]
        malformed = await ws.start(SUBSCRIPTION, {"id": "ops.>"})
        malformed_messages = (await asyncio.wait_for(ws.collect({malformed}), 10))[malformed]

    assert states(unknown_messages) == [None]
    errors = malformed_messages[0]["payload"]
    errors = errors["errors"] if isinstance(errors, dict) else errors
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_thousand_subscriptions_open_no_consumer_and_all_end_final(
    stack: httpx.AsyncClient, js: JetStreamContext
) -> None:
    connections, per_connection, operations = 100, 10, 50
    operation_ids = [await submit(stack, "{ slowReport(seconds: 3) }") for _ in range(operations)]
    ready = asyncio.Event()
    subscribed = 0
    results: list[dict[str, list[dict[str, Any]]]] = []

    async def subscriber(index: int) -> None:
        nonlocal subscribed
        async with graphql_websocket(ws_url(stack)) as ws:
            ids = set()
            for n in range(per_connection):
                operation_id = operation_ids[(index * per_connection + n) % operations]
                ids.add(await ws.start(SUBSCRIPTION, {"id": operation_id}))
            subscribed += per_connection
            if subscribed == connections * per_connection:
                ready.set()
            results.append(await ws.collect(ids))

    tasks = [asyncio.create_task(subscriber(i)) for i in range(connections)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(0.5)  # let every subscription reach its watch
    bucket = await js.stream_info(f"KV_{VIEW_BUCKET}")
    await asyncio.wait_for(asyncio.gather(*tasks), 120)

    # Core subscriptions on the watched keys: the server holds no consumer for them.
    assert bucket.state.consumer_count == 0, bucket.state.consumer_count
    failures = [
        message["payload"]
        for result in results
        for messages in result.values()
        for message in messages
        if not message["payload"].get("data")
    ]
    assert failures == [], failures[:3]
    finals = [states(messages)[-1] for result in results for messages in result.values()]
    assert len(finals) == connections * per_connection
    assert all(final is not None and final["status"] == "SUCCESS" for final in finals)


async def test_the_final_state_arrives_across_a_nats_restart_and_a_projector_restart(
    settings: Settings, nats_server: NatsServer
) -> None:
    async with (
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        operation_id = await submit(client, "{ slowReport(seconds: 2) }")
        async with graphql_websocket(ws_url(client)) as ws:
            sid = await ws.start(SUBSCRIPTION, {"id": operation_id})
            collecting = asyncio.create_task(ws.collect({sid}))
            async with running(create_projector(settings)):
                await asyncio.sleep(0.5)
            nats_server.restart()
            async with running(create_projector(settings)):
                received = states((await asyncio.wait_for(collecting, 60))[sid])

    final = received[-1]
    assert final is not None
    assert final["status"] == "SUCCESS"
