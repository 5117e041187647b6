"""Where the bench sees work finish without asking the systems under test: asyncgate's view
bucket and event stream (read with the bench's own NATS connection), the peer's result
backend (Redis pub/sub, which Celery's Redis backend publishes every result on)."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import nats
import redis.asyncio as aioredis
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bench.load import DoneFeed
from contracts.names import STREAM, VIEW_BUCKET, event_subject, parse_event_subject
from contracts.view import TaskStatus, decode_view


@dataclass
class ViewFeed(DoneFeed):
    """Every view change and every started event, as NATS stores them.

    Both timestamps are the server's own (the stored message's time), so "RUNNING visible after
    the started event was stored" compares two clocks that are one clock.
    """

    started_stored: dict[str, datetime] = field(default_factory=dict)
    # The reply subject (which carries the stored time) of each operation's first view that
    # shows it started: read into a time only for the operations asked about, as parsing it
    # costs the load generator 8 us a view.
    running_replies: dict[str, str] = field(default_factory=dict)
    view_changes: int = 0

    async def on_view(self, msg: Msg) -> None:
        """A view was written (or deleted)."""
        if not msg.data:
            return  # a delete or purge marker
        self.view_changes += 1
        view = decode_view(msg.data)
        key = view.operation_id
        # The first stored view that shows the operation started: RUNNING, or already final
        # when a projector folds several events into one write.
        if view.attempts >= 1 and key not in self.running_replies:
            self.running_replies[key] = msg.reply
        if view.status.is_terminal:
            self.mark(key, ok=view.status == TaskStatus.SUCCESS)

    async def on_started(self, msg: Msg) -> None:
        """An OperationStarted event was stored."""
        parsed = parse_event_subject(msg.subject)
        if parsed is not None and parsed[1] not in self.started_stored:
            self.started_stored[parsed[1]] = msg.metadata.timestamp

    def running_delays_ms(self, keys: list[str]) -> list[float]:
        """For each of ``keys`` seen both ways: ms from its started event's storage to the first
        stored view that shows it started."""
        delays = []
        for key in keys:
            started, reply = self.started_stored.get(key), self.running_replies.get(key)
            if started is not None and reply is not None:
                running = Msg.Metadata._from_reply(reply).timestamp
                delays.append((running - started).total_seconds() * 1000)
        return delays


@contextlib.asynccontextmanager
async def view_feed(nats_url: str) -> AsyncIterator[ViewFeed]:
    """Follow the view bucket and the started events from now on, for the block."""
    feed = ViewFeed()
    nc = await nats.connect(nats_url, name="asyncgate-bench")
    try:
        js = nc.jetstream()
        # Ordered push consumers from "now": nothing durable is left on the server.
        await js.subscribe(
            f"$KV.{VIEW_BUCKET}.>",
            stream=f"KV_{VIEW_BUCKET}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=feed.on_view,
        )
        await js.subscribe(
            event_subject("*", "*", "started"),
            stream=STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=feed.on_started,
        )
        yield feed
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def result_feed(redis_url: str) -> AsyncIterator[DoneFeed]:
    """Follow the peer's result backend from now on, for the block."""
    feed = DoneFeed()
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()

    async def on_result(message: dict[str, object]) -> None:
        data = message.get("data")
        if isinstance(data, bytes):
            decoded = decode_result_message(data)
            if decoded is not None:
                feed.mark(decoded[0], ok=decoded[1])

    try:
        await pubsub.psubscribe(**{"celery-task-meta-*": on_result})
        async with _listening(pubsub):
            yield feed
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        await client.aclose()


@contextlib.asynccontextmanager
async def _listening(pubsub: aioredis.client.PubSub) -> AsyncIterator[None]:
    """Run the pub/sub reader (which calls the handlers) for the block."""
    task = asyncio.create_task(pubsub.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def decode_result_message(data: bytes) -> tuple[str, bool] | None:
    """(task id, succeeded) from a Celery result-backend announcement, None if it is not final."""
    meta = json.loads(data)
    status = meta.get("status")
    if status not in ("SUCCESS", "FAILURE"):
        return None
    return str(meta.get("task_id")), status == "SUCCESS"
