"""A delivery in hand stays in hand while the event loop is held (services/executor/heartbeats.py).

A resolver that computes, or makes a blocking call, holds the executor's event loop; reports
sent from that loop would stop, and JetStream would hand the request to another executor while
it still runs.
"""

import asyncio
import time
from pathlib import Path

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from contracts.events import OperationCompleted, OperationStarted
from services.executor.heartbeats import Heartbeats
from tests.stack import eventually, stored_events
from tests.support.nats_servers import NatsServer, start_server
from tests.support.processes import ServiceStack

ACK_WAIT_S = 1.0


def hold_the_event_loop(seconds: float) -> None:
    """Do nothing for ``seconds`` without letting the event loop run (a blocking call)."""
    time.sleep(seconds)


async def _one_delivery(nc: NatsClient) -> tuple[Msg, JetStreamContext.PullSubscription]:
    js = nc.jetstream()
    await js.add_stream(name="HELD", subjects=["held.>"])
    await js.publish("held.work", b"work")
    subscription = await js.pull_subscribe(
        "held.work",
        durable="worker",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S),
    )
    [message] = await subscription.fetch(1, timeout=5)
    return message, subscription


async def test_a_held_delivery_is_not_redelivered_while_the_event_loop_is_blocked(
    nc: NatsClient, nats_server: NatsServer
) -> None:
    heartbeats = Heartbeats(lambda: nats.connect(nats_server.url), every_s=ACK_WAIT_S / 3)
    await asyncio.to_thread(heartbeats.start)
    try:
        message, _ = await _one_delivery(nc)
        with heartbeats.holding(message.reply):
            hold_the_event_loop(3 * ACK_WAIT_S)
        await message.ack_sync()
        info = await nc.jetstream().consumer_info("HELD", "worker")
    finally:
        await asyncio.to_thread(heartbeats.stop)

    assert heartbeats.beats_sent >= 5
    assert (info.num_redelivered, info.num_ack_pending) == (0, 0)


async def test_without_holding_it_the_same_delivery_is_redelivered(nc: NatsClient) -> None:
    # The control: the ack wait really is short enough for the blocked second above to matter.
    message, subscription = await _one_delivery(nc)
    hold_the_event_loop(3 * ACK_WAIT_S)
    [again] = await subscription.fetch(1, timeout=5)

    assert again.metadata.num_delivered == 2
    assert message.metadata.num_delivered == 1


async def test_an_operation_that_holds_the_executors_loop_runs_once(tmp_path: Path) -> None:
    # Two executors: a request given up on by one would be started by the other.
    env = {"ASYNCGATE_EXECUTOR_ACK_WAIT_S": str(ACK_WAIT_S)}
    with start_server(tmp_path) as server:
        async with ServiceStack(server.url, tmp_path / "services", env) as stack:
            second = stack.add("executor", name="executor-2")
            second.start()
            await second.wait_ready(30.0)
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
                submitted = await client.post(
                    "/graphql",
                    json={
                        "query": "mutation($q: String!) { asyncQuery(query: $q) { operationId } }",
                        "variables": {"q": "{ busyReport(seconds: 4) }"},
                    },
                )
                operation_id = submitted.json()["data"]["asyncQuery"]["operationId"]

                async def finished() -> dict[str, object] | None:
                    answer = await client.post(
                        "/graphql",
                        json={
                            "query": "query($id: String!) { asyncResult(id: $id) "
                            "{ status attempts data } }",
                            "variables": {"id": operation_id},
                        },
                    )
                    result: dict[str, object] = answer.json()["data"]["asyncResult"]
                    return result if result["status"] in ("SUCCESS", "ERROR") else None

                result = await eventually(finished, timeout_s=60)
            nc = await nats.connect(server.url)
            try:
                events = [event for _, event in await stored_events(nc.jetstream())]
            finally:
                await nc.close()

    assert result["status"] == "SUCCESS"
    assert result["attempts"] == 1
    # One start: stored, or (the loop being held past the moment it would have been stored)
    # carried by the ending.
    stored = [e for e in events if isinstance(e, OperationStarted)]
    carried = [e.start for e in events if isinstance(e, OperationCompleted) and e.start]
    assert len(stored) + len(carried) == 1
