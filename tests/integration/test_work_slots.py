"""A stopping service hands back what a pull brings in after it closed its slots
(services/common/work_slots.py)."""

from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.work_slots import WorkSlots

# Long, so that a redelivery within the test can only come from the hand-back.
ACK_WAIT_S = 60.0


async def test_a_message_taken_after_closing_is_handed_back_at_once_and_not_begun(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    await js.add_stream(name="WORK", subjects=["work.>"])
    await js.publish("work.one", b"one")
    subscription = await js.pull_subscribe(
        "work.one",
        durable="worker",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S),
    )
    slots = WorkSlots(4)
    begun: list[bytes] = []

    async def work() -> None:
        begun.append(b"one")

    [message] = await subscription.fetch(1, timeout=5)
    await slots.close(grace_s=0.1)
    await slots.take(message, work)
    [again] = await subscription.fetch(1, timeout=5)

    assert begun == []
    assert again.metadata.num_delivered == 2
