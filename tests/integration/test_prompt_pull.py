"""The services' pull consumer hands messages over as they arrive, never more than asked."""

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.prompt_pull import PromptPull

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
