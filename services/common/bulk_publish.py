"""Many JetStream publishes in flight at once, their acknowledgements counted on one reply
subscription: what rebuilding the views and the listing writes by the tens of thousands.

nats-py's ``publish_async`` gives each message a NUID, a future, a semaphore slot and a parsed
PubAck; measured while rebuilding 33,000 views, that was about half of the rebuild's CPU. Here
a message's reply subject is its index in the window, an acknowledgement is one callback that
counts it, and only an error is parsed.
"""

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import APIError

# A message to store: subject, payload, headers (None: none).
Outgoing = tuple[str, bytes, dict[str, str] | None]

# Messages in flight at once; the server answers them in order, well within the time-out.
WINDOW: Final = 2000
ACK_TIMEOUT_S: Final = 10.0
_NO_RESPONDERS: Final = "503"


def _no_progress(_: int) -> None:
    """Nobody is watching."""


async def publish_all(
    nc: NatsClient,
    messages: Sequence[Outgoing],
    *,
    progress: Callable[[int], None] = _no_progress,
) -> list[APIError | None]:
    """Store ``messages`` in order, at most ``WINDOW`` unacknowledged at a time; for each, None
    once stored or the APIError the stream answered with (a compare-and-set refused, say).

    Raises TimeoutError if no acknowledgement comes for ``ACK_TIMEOUT_S``.
    """
    outcomes: list[APIError | None] = [None] * len(messages)
    prefix = nc.new_inbox()
    prefix_length = len(prefix) + 1
    acked = 0
    # Set while there is room for more messages in flight (and once everything is acknowledged).
    room = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acked
        headers = msg.headers
        if headers is not None and headers.get("Status") == _NO_RESPONDERS:
            error = APIError(code=503, description="no stream took the message")
            outcomes[int(msg.subject[prefix_length:])] = error
        elif b'"error"' in msg.data:
            error = APIError.from_error(json.loads(msg.data)["error"])
            outcomes[int(msg.subject[prefix_length:])] = error
        acked += 1
        if acked % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
        if acked == len(messages) or (sent - acked) * 2 <= WINDOW:
            room.set()

    sent = 0
    subscription = await nc.subscribe(prefix + ".*", cb=on_ack)
    try:
        for subject, payload, headers in messages:
            if sent - acked >= WINDOW:
                room.clear()
                await _progressing(room, lambda: acked)
            await nc.publish(subject, payload, reply=f"{prefix}.{sent}", headers=headers)
            sent += 1
        while acked < len(messages):
            room.clear()
            await _progressing(room, lambda: acked)
        progress(acked % _PROGRESS_EVERY)
    finally:
        await subscription.unsubscribe()
    return outcomes


_PROGRESS_EVERY: Final = 1000


async def _progressing(room: asyncio.Event, acked: Callable[[], int]) -> None:
    """Wait for ``room``; TimeoutError if no acknowledgement came for ``ACK_TIMEOUT_S``."""
    while True:
        before = acked()
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await room.wait()
            return
        except TimeoutError:
            if acked() == before:
                raise TimeoutError(f"no acknowledgement for {ACK_TIMEOUT_S:g} s") from None
