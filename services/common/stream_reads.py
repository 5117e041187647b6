"""Reading every message of a stream that matches a subject filter, as it is now: one ordered
consumer fed to a callback, ended by the server's own count of what there was to read."""

import asyncio
from collections.abc import Callable
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

# A read's consumer is gone as soon as it is read; let the server drop it quickly.
READ_INACTIVE_THRESHOLD_S: Final = 5.0
# The longest wait for the next message before the read gives up.
READ_IDLE_TIMEOUT_S: Final = 5.0


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    on_message: Callable[[Msg], None],
    *,
    last_per_subject: bool = False,
    within_s: float | None = None,
) -> int:
    """Hand ``on_message`` every message of ``stream`` on ``subject_filter`` stored when the read
    began (with ``last_per_subject``, only each subject's newest); return how many.

    The end is told by the server's own counts (what it has delivered plus what is pending when
    asked), not by a marker: nats-py's KV watcher's "initial values done" marker can come before
    values already delivered, and under load it ended listings empty. A callback, not
    ``next_msg()``: nats-py's next_msg costs a task, a uuid and a wait_for per message.
    ``within_s`` bounds the whole read (None: only each message's wait, ``READ_IDLE_TIMEOUT_S``).
    """
    received = 0
    expected: int | None = None
    everything = asyncio.get_running_loop().create_future()

    async def deliver(msg: Msg) -> None:
        nonlocal received
        if expected is not None and received >= expected:
            return  # stored after the read began
        received += 1
        try:
            on_message(msg)
        except Exception as error:  # ends the read with it instead of nats-py swallowing it
            if not everything.done():
                everything.set_exception(error)
            return
        if received == expected and not everything.done():
            everything.set_result(None)

    subscription = await js.subscribe(
        subject_filter,
        stream=stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.ALL,
        inactive_threshold=READ_INACTIVE_THRESHOLD_S,
        cb=deliver,
    )
    try:
        info = await subscription.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        expected = (info.num_pending or 0) + (delivered or 0)
        async with asyncio.timeout(within_s):
            while received < expected and not everything.done():
                seen = received
                await asyncio.wait([everything], timeout=READ_IDLE_TIMEOUT_S)
                if received == seen and not everything.done():
                    raise TimeoutError(f"{stream}: nothing read for {READ_IDLE_TIMEOUT_S:g} s")
        if everything.done():
            everything.result()  # raises what on_message raised
    finally:
        await subscription.unsubscribe()
    return received
