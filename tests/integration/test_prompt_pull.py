"""The services' pull consumer hands messages over as they arrive, never more than asked."""

import asyncio
import functools
import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.prompt_pull import LOST_MARGIN_S, PromptPull
from services.common.work_slots import WorkSlots
from tests.stack import eventually
from tests.support.nats_servers import NatsServer

pytestmark = pytest.mark.nats

STREAM, DURABLE = "PULLED", "reader"
# Far longer than any wait below: a message handed over in time was not held for the request
# to fill or expire.
LONG_EXPIRES_S = 60.0


async def _stream_with_consumer(nc: NatsClient) -> None:
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["pulled.>"])
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )


async def test_a_lone_message_is_handed_over_without_waiting_for_a_full_batch(
    nc: NatsClient,
) -> None:
    await _stream_with_consumer(nc)
    pull = PromptPull(nc, STREAM, DURABLE, expires_s=LONG_EXPIRES_S)
    await pull.start()
    try:
        waiting = asyncio.create_task(pull.next_batch(16))
        await asyncio.sleep(0.2)  # the request is open before the message exists
        await nc.jetstream().publish("pulled.one", b"1")
        batch = await asyncio.wait_for(waiting, LONG_EXPIRES_S / 6)
    finally:
        await pull.unsubscribe()

    assert [msg.data for msg in batch] == [b"1"]


async def test_every_message_arrives_once_in_batches_no_larger_than_the_limit(
    nc: NatsClient,
) -> None:
    await _stream_with_consumer(nc)
    js = nc.jetstream()
    await asyncio.gather(*(js.publish(f"pulled.{n}", str(n).encode()) for n in range(500)))
    pull = PromptPull(nc, STREAM, DURABLE, expires_s=LONG_EXPIRES_S)
    await pull.start()
    received: list[bytes] = []
    sizes: list[int] = []
    try:
        async with asyncio.timeout(LONG_EXPIRES_S / 2):
            while len(received) < 500:
                batch = await pull.next_batch(7)
                sizes.append(len(batch))
                for msg in batch:
                    received.append(msg.data)
                    await msg.ack()
    finally:
        await pull.unsubscribe()
    # Acks are processed by the server after they are sent: let them land.
    for _ in range(50):
        info = await js.consumer_info(STREAM, DURABLE)
        if info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.1)

    assert sorted(received) == sorted(str(n).encode() for n in range(500))
    assert max(sizes) <= 7
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0


async def test_a_request_the_server_forgot_holds_up_a_backlog_no_longer_than_its_expiry(
    nats_server: NatsServer, nc: NatsClient
) -> None:
    """As the services consume: take only what there is room for, each message worked on for
    a moment. The server forgets a partly filled request (a restart); the backlog published
    afterwards must then flow at the pace of the work, not one batch per request expiry."""
    await _stream_with_consumer(nc)
    js = nc.jetstream()
    expires_s, room, backlog = 5.0, 20, 200
    pull = PromptPull(nc, STREAM, DURABLE, expires_s=expires_s)
    await pull.start()
    slots = WorkSlots(room)
    done: list[bytes] = []
    all_done = asyncio.Event()

    async def work(msg: Msg) -> None:
        await asyncio.sleep(0.05)
        await msg.ack()
        done.append(msg.data)
        if len(done) == 15 + backlog:
            all_done.set()

    async def consume() -> None:
        while True:
            limit = await slots.wait_for_room()
            for msg in await pull.next_batch(limit):
                await slots.take(msg, functools.partial(work, msg))

    async def connected() -> bool | None:
        return True if nc.is_connected else None

    async def first_ones_done() -> bool | None:
        return True if len(done) == 15 else None

    consuming = asyncio.create_task(consume())
    try:
        # A request for 20 is open; 15 arrive and are worked on, 5 stay owed.
        await asyncio.gather(*(js.publish(f"pulled.first.{n}", b"first") for n in range(15)))
        await eventually(first_ones_done, what="the first 15 worked on")
        await asyncio.to_thread(nats_server.restart)  # it forgets the open request
        await eventually(connected, what="the reconnection")
        await asyncio.gather(*(js.publish(f"pulled.later.{n}", b"later") for n in range(backlog)))
        began = time.monotonic()
        await asyncio.wait_for(all_done.wait(), 30)
        drained_s = time.monotonic() - began
    finally:
        consuming.cancel()
        await slots.close(0)
        await pull.unsubscribe()

    # The work alone takes 0.5 s (200 messages, 20 at a time, 0.05 s each), and the forgotten
    # request is given up expires_s plus a margin after it was sent, before the restart.
    assert drained_s < expires_s + LOST_MARGIN_S + 2.0, drained_s
