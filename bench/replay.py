"""``python -m bench.replay`` (``./dev bench-replay``): how fast ``asyncgate ops replay`` rebuilds
the view bucket, and ``asyncgate ops replay --verify`` checks it, on a fresh nats-server whose
stream is seeded straight with events (no services run).

Three events an operation (requested, started, completed), spread over 1,000 users of 10
tenants, each stored with a dedup id as the services store them, each request carrying its
listing ordinal and each user's counter at its last, as the edge leaves them. Rebuilding the
empty bucket writes every view and indexes every operation in the listing (one key each, at the
ordinal its request carries: the worst case, a lost bucket);
verifying then reads the stream and the bucket and writes nothing; rebuilding again finds
nothing to write (the common case: a repair).
"""

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import uvloop
from nats.aio.client import Client as NatsClient

from contracts.events import (
    Correlation,
    OperationCompleted,
    OperationEvent,
    OperationRequested,
    OperationStarted,
    encode_event,
    event_type,
)
from contracts.names import EVENT_STREAMS, PROJECTOR_DURABLE, event_subject, listing_counter_subject
from services.common.jetstream import close_connection, connect
from services.common.listing import Listing
from services.common.settings import Settings
from services.projector.replay import rebuild, verify
from services.provision import provision
from tests.support.nats_servers import start_server

TARGET_EVENTS_PER_S: Final = 20_000
TENANTS: Final = 10
USERS_PER_TENANT: Final = 100
SEED_WINDOW: Final = 2000


def _principal_of(n: int) -> tuple[str, str]:
    """The tenant and user of operation ``n``."""
    return f"t{n % TENANTS}", f"u{n // TENANTS % USERS_PER_TENANT}"


def seed_events(count: int) -> Iterator[OperationEvent]:
    """``count`` events: whole operations of three, the last one cut short if need be."""
    principals = TENANTS * USERS_PER_TENANT
    for n in range((count + 2) // 3):
        tenant, principal = _principal_of(n)
        envelope: Correlation = {
            "operation_id": f"op-{n}",
            "tenant": tenant,
            "principal": principal,
            "trace_id": f"trace-{n}",
        }
        at = datetime.now(UTC)
        lifecycle: list[OperationEvent] = [
            OperationRequested(
                **envelope,
                query="{ balance }",
                occurred_at=at,
                # Its user's operations are every ``principals``-th: this is its user's n-th.
                listing_ordinal=n // principals + 1,
            ),
            OperationStarted(**envelope, attempt=1, worker="w1", occurred_at=at),
            OperationCompleted(**envelope, response={"data": {"balance": n}}, occurred_at=at),
        ]
        yield from lifecycle[: count - 3 * n]


async def seed(nc: NatsClient, count: int) -> None:
    """Store ``count`` events in the stream, ``SEED_WINDOW`` in flight at a time, and set each
    user's listing counter to the last ordinal its requests carry."""
    js = nc.jetstream()
    operations: dict[tuple[str, str], int] = {}
    for n in range((count + 2) // 3):
        operations[_principal_of(n)] = operations.get(_principal_of(n), 0) + 1
    for (tenant, principal), taken in operations.items():
        subject = listing_counter_subject(tenant, principal)
        await nc.request(subject, b"", headers={"Nats-Incr": f"+{taken}"}, timeout=5)
    acks = []
    for event in seed_events(count):
        kind = event_type(event)
        subject = event_subject(event.tenant, event.operation_id, kind)
        # Each with a dedup id, as the services store them (every replayed message has headers).
        headers = {"Nats-Msg-Id": f"{event.operation_id}.{kind}"}
        acks.append(await js.publish_async(subject, encode_event(event), headers=headers))
        if len(acks) >= SEED_WINDOW:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)


def _rate(events: int, seconds: float) -> str:
    rate = events / seconds
    verdict = "meets" if rate >= TARGET_EVENTS_PER_S else "misses"
    return f"{seconds:6.2f} s, {rate:9,.0f} events/s ({verdict} {TARGET_EVENTS_PER_S:,}/s)"


async def measure(url: str, count: int) -> bool:
    """Seed, rebuild, verify; print the figures; True when both met the target."""
    settings = Settings(nats_url=url)
    nc = await connect(settings, "asyncgate-bench-replay")
    js = nc.jetstream()
    listing = Listing.over(nc)
    try:
        await provision(js, settings)
        # No projector runs here: without its consumers, verify compares every view.
        for stream in EVENT_STREAMS:
            await js.delete_consumer(stream, PROJECTOR_DURABLE)
        started = time.perf_counter()
        await seed(nc, count)
        print(f"seeded     {count:,} events in {time.perf_counter() - started:.2f} s")

        started = time.perf_counter()
        rebuilt = await rebuild(nc, listing)
        rebuild_s = time.perf_counter() - started
        views = len(rebuilt.verified.replay.views)
        print(
            f"replay     {_rate(count, rebuild_s)}: {rebuilt.written:,} views written, "
            f"{rebuilt.indexed:,} operations indexed"
        )

        started = time.perf_counter()
        verified = await verify(js)
        verify_s = time.perf_counter() - started
        print(
            f"verify     {_rate(count, verify_s)}: {views:,} views compared, "
            f"{len(verified.differences)} differences"
        )

        started = time.perf_counter()
        again = await rebuild(nc, listing)
        repair_s = time.perf_counter() - started
        print(
            f"replay     {_rate(count, repair_s)}: again, over the rebuilt bucket: "
            f"{again.written:,} views written, {again.indexed:,} operations indexed"
        )
        return (
            not verified.differences
            and rebuilt.written == views
            and again.written == again.indexed == 0
            and min(count / rebuild_s, count / verify_s, count / repair_s) >= TARGET_EVENTS_PER_S
        )
    finally:
        await listing.reads.close()
        await close_connection(nc)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement once; 0 when replay and verify both met the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events to seed")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asyncgate-bench-replay-") as directory:
        server = start_server(Path(directory))
        try:
            met = uvloop.run(measure(server.url, arguments.events))
        finally:
            server.stop()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
