"""A subscriber's mailbox: the newest state wins, a slow reader skips states, never goes back."""

import asyncio

from contracts.view import OperationView, TaskStatus
from services.edge.watch import LatestView


def view(status: TaskStatus, sequence: int) -> OperationView:
    """A view of operation ``op`` at ``sequence``."""
    return OperationView(
        operation_id="op", tenant="t", principal="u", status=status, last_sequence=sequence
    )


async def test_a_slow_reader_gets_only_the_newest_state() -> None:
    mailbox = LatestView()
    for sequence, status in enumerate(
        [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCESS], 1
    ):
        mailbox.offer(view(status, sequence), revision=sequence)

    latest = await asyncio.wait_for(mailbox.next(), 1)

    assert latest == view(TaskStatus.SUCCESS, 3)


async def test_an_older_revision_never_replaces_a_newer_one() -> None:
    mailbox = LatestView()
    mailbox.offer(view(TaskStatus.SUCCESS, 3), revision=3)
    await mailbox.next()

    mailbox.offer(view(TaskStatus.RUNNING, 2), revision=2)

    waiting = asyncio.create_task(mailbox.next())
    await asyncio.sleep(0.05)
    assert not waiting.done(), "a stale state must not wake the reader"
    waiting.cancel()


async def test_a_removed_key_is_reported_as_none() -> None:
    mailbox = LatestView()
    mailbox.offer(None, revision=7)

    assert await asyncio.wait_for(mailbox.next(), 1) is None
