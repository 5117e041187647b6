"""Numbers taken from a counter by many callers at once, with one increment for all of them.

Each increment of a JetStream counter is a stored message (an fsync where the server syncs every
write). When several submits of one principal want an ordinal at the same moment, the ones that
arrive while an increment is under way wait for the next one, which adds as many as they are
(at most ``at_most``) and hands each its own number of the range, in the order they asked.
Alone, a caller pays one increment as before; under load, a handful of submits share one, and
what each brought (an operation id) is handed to all of them with the range, so that they can
share what follows too (one listing entry for the range).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


@dataclass(eq=False)
class Share(Generic[Item]):
    """The numbers one increment handed out, from ``first``, and what each taker brought, in
    number order; ``follow_up`` is for the takers to do one thing once for all of them."""

    first: int
    items: list[Item]
    follow_up: asyncio.Future[Any] | None = field(default=None)


class SharedIncrements(Generic[Item]):
    """Hands out numbers from counters named by subject; ``increment(subject, by)`` adds ``by``
    and returns the counter's new value."""

    def __init__(self, increment: Callable[[str, int], Awaitable[int]], *, at_most: int) -> None:
        self._increment = increment
        self._at_most = at_most
        self._waiting: dict[str, list[tuple[Item, asyncio.Future[tuple[int, Share[Item]]]]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def take(self, subject: str, item: Item) -> tuple[int, Share[Item]]:
        """The next number of the counter at ``subject`` (unique, above every number handed out
        before this call) and the share it came in. A caller that gives up leaves its number
        unused (a gap)."""
        taken: asyncio.Future[tuple[int, Share[Item]]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subject, []).append((item, taken))
        if subject not in self._running:
            # A task of its own, so that one caller giving up never stops the others' increment.
            self._running[subject] = asyncio.create_task(self._hand_out(subject))
        return await taken

    async def _hand_out(self, subject: str) -> None:
        try:
            while waiting := [one for one in self._waiting.pop(subject, []) if not one[1].done()]:
                if len(waiting) > self._at_most:
                    # The rest go first in the next increment, before those arriving meanwhile.
                    self._waiting[subject] = waiting[self._at_most :]
                    waiting = waiting[: self._at_most]
                try:
                    last = await self._increment(subject, len(waiting))
                except Exception as error:  # each caller gets it, and decides whether to retry
                    for _, taken in waiting:
                        if not taken.done():
                            taken.set_exception(error)
                    continue
                share = Share(last - len(waiting) + 1, [item for item, _ in waiting])
                for number, (_, taken) in enumerate(waiting, start=share.first):
                    if not taken.done():
                        taken.set_result((number, share))
        finally:
            del self._running[subject]
