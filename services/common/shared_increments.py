"""Numbers taken from a counter by many callers at once, with one increment for all of them.

Each increment of a JetStream counter is a stored message (an fsync where the server syncs every
write). When several submits of one principal want an ordinal at the same moment, the ones that
arrive while an increment is under way wait for the next one, which adds as many as they are
and hands each its own number of the range, in the order they asked. Alone, a caller pays one
increment as before; under load, a handful of submits share one.
"""

import asyncio
from collections.abc import Awaitable, Callable


class SharedIncrements:
    """Hands out numbers from counters named by subject; ``increment(subject, by)`` adds ``by``
    and returns the counter's new value."""

    def __init__(self, increment: Callable[[str, int], Awaitable[int]]) -> None:
        self._increment = increment
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def take(self, subject: str) -> int:
        """The next number of the counter at ``subject``: unique, above every number handed out
        before this call. A caller that gives up leaves its number unused (a gap)."""
        taken: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subject, []).append(taken)
        if subject not in self._running:
            # A task of its own, so that one caller giving up never stops the others' increment.
            self._running[subject] = asyncio.create_task(self._hand_out(subject))
        return await taken

    async def _hand_out(self, subject: str) -> None:
        try:
            while waiting := [one for one in self._waiting.pop(subject, []) if not one.done()]:
                try:
                    last = await self._increment(subject, len(waiting))
                except Exception as error:  # each caller gets it, and decides whether to retry
                    for one in waiting:
                        if not one.done():
                            one.set_exception(error)
                    continue
                first = last - len(waiting) + 1
                for number, one in enumerate(waiting, start=first):
                    if not one.done():
                        one.set_result(number)
        finally:
            del self._running[subject]
