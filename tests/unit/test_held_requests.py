"""Holding fresh requests for their operation's next event: what is held, for how long, and
what a stopping projector does with it (no NATS: the write is a recording function)."""

import asyncio
from typing import Any, cast

from contracts.events import OperationRequested
from services.projector.held_requests import Delivered, HeldRequests


def delivered(operation_id: str) -> list[Delivered]:
    """One delivered request (its message is never touched by the holder)."""
    request = OperationRequested(
        operation_id=operation_id, tenant="t", principal="u", trace_id="x", query="{ n }"
    )
    return [(cast(Any, None), 1, request)]


class Writes:
    """Records each write: key and how many events."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int]] = []

    async def __call__(self, key: str, events: list[Delivered]) -> None:
        self.done.append((key, len(events)))


async def test_a_request_nobody_takes_is_written_after_the_delay() -> None:
    writes = Writes()
    held = HeldRequests(0.05, 10, writes)
    assert held.hold("a", delivered("a"))
    await asyncio.sleep(0.01)
    assert writes.done == []
    await asyncio.sleep(0.1)
    assert writes.done == [("a", 1)]
    assert len(held) == 0


async def test_a_taken_request_is_never_written_by_the_holder() -> None:
    writes = Writes()
    held = HeldRequests(0.05, 10, writes)
    held.hold("a", delivered("a"))
    assert len(held.take("a")) == 1
    assert held.take("a") == []
    await asyncio.sleep(0.1)
    assert writes.done == []


async def test_nothing_is_held_when_off_full_or_already_held() -> None:
    writes = Writes()
    assert not HeldRequests(0.0, 10, writes).hold("a", delivered("a"))
    full = HeldRequests(60.0, 2, writes)
    assert full.hold("a", delivered("a"))
    assert not full.hold("a", delivered("a")), "a second request of a held operation"
    assert full.hold("b", delivered("b"))
    assert not full.hold("c", delivered("c"))
    assert len(full) == 2
    await full.write_now()


async def test_stopping_writes_everything_held_and_holds_nothing_more() -> None:
    writes = Writes()
    held = HeldRequests(60.0, 10, writes)
    held.hold("a", delivered("a"))
    held.hold("b", delivered("b"))
    await held.write_now()
    assert sorted(writes.done) == [("a", 1), ("b", 1)]
    assert not held.hold("c", delivered("c"))
