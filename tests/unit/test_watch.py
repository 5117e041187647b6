"""A subscriber's mailbox: the newest state wins, a slow reader skips states, never goes back."""

import asyncio

from contracts.view import OperationView, TaskStatus
from services.edge.watch import LatestView


def view(status: TaskStatus, sequence: int, attempts: int = 0) -> OperationView:
    """A view of operation ``op`` whose last folded event is at ``sequence``."""
    return OperationView(
        operation_id="op",
        tenant="t",
        principal="u",
        status=status,
        last_sequence=sequence,
        attempts=attempts,
    )


async def still_waiting(mailbox: LatestView) -> bool:
    """True if the reader is not woken (nothing newer arrived)."""
    waiting = asyncio.create_task(mailbox.next())
    await asyncio.sleep(0.05)
    woken = waiting.done()
    waiting.cancel()
    return not woken


async def test_a_slow_reader_gets_only_the_newest_state() -> None:
    mailbox = LatestView()
    for sequence, status in enumerate(
        [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCESS], 1
    ):
        mailbox.offer(view(status, sequence))

    latest = await asyncio.wait_for(mailbox.next(), 1)

    assert latest == view(TaskStatus.SUCCESS, 3)


async def test_an_older_state_never_replaces_a_newer_one() -> None:
    mailbox = LatestView()
    mailbox.offer(view(TaskStatus.SUCCESS, 3))
    await mailbox.next()

    mailbox.offer(view(TaskStatus.RUNNING, 2))

    assert await still_waiting(mailbox), "a stale state must not wake the reader"


async def test_a_final_state_replaces_an_unfinished_one_with_the_same_last_event() -> None:
    # An incomplete fold seen on the way can carry the same last event as the stored final view.
    mailbox = LatestView()
    mailbox.offer(view(TaskStatus.RUNNING, 5))
    await mailbox.next()

    mailbox.offer(view(TaskStatus.SUCCESS, 5, attempts=1))

    assert await asyncio.wait_for(mailbox.next(), 1) == view(TaskStatus.SUCCESS, 5, attempts=1)


async def test_a_removed_key_is_reported_as_none_and_stays_removed() -> None:
    mailbox = LatestView()
    mailbox.offer(view(TaskStatus.RUNNING, 2))
    mailbox.offer(None)

    assert await asyncio.wait_for(mailbox.next(), 1) is None
    mailbox.offer(view(TaskStatus.SUCCESS, 3))
    assert await still_waiting(mailbox)
