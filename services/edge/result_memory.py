"""How many bytes of stored results the edge holds in memory for ``data`` at once, across all
requests and WebSockets.

``asyncResult.data`` reads a stored result whole (up to ASYNCGATE_MAX_READ_BYTES per HTTP
request), and the answer holds it until it is sent, more than once over while it is encoded.
With no bound across requests, a few clients reading large results at once could take the edge
past its memory, and every client with it. So the edge holds at most
ASYNCGATE_MAX_READING_BYTES of them at once (a single result larger than that is read when it
is the only one): a read waits for room, up to ``WAIT_S``, and is then refused with
RESULT_READS_BUSY, naming ``dataUrl``, which streams any result without holding it. An HTTP
request gives its bytes back once its response is sent; a WebSocket's field once it is answered.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Final

# How long a read waits for room before it is refused.
WAIT_S: Final = 10.0


class ResultMemory:
    """The edge's one budget of bytes of results held for ``data``.

    Giving back is synchronous, so that it happens whatever ends a request (a client gone
    mid-answer cancels the request's task, and a cancelled task's cleanup may not wait).
    """

    def __init__(self, capacity: int, *, wait_s: float = WAIT_S) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.held = 0
        self._waiting: list[asyncio.Future[None]] = []

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.capacity

    async def take(self, size: int) -> bool:
        """Hold ``size`` more bytes, waiting for room; False if none came within ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while not self._fits(size):
            room = loop.create_future()
            self._waiting.append(room)
            try:
                async with asyncio.timeout_at(deadline):
                    await room
            except TimeoutError:
                return False
            finally:
                if room in self._waiting:
                    self._waiting.remove(room)
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Stop holding ``size`` bytes taken earlier; every waiting read looks again."""
        self.held -= size
        waiting, self._waiting = self._waiting, []
        for room in waiting:
            if not room.done():
                room.set_result(None)


@dataclass
class ReadBudget:
    """What one HTTP request (or one WebSocket field) may still read whole (``left``), and the
    bytes it holds of the edge's ``memory`` meanwhile."""

    left: int
    memory: ResultMemory | None = None
    held: int = field(default=0)

    async def hold(self, size: int) -> bool:
        """Count ``size`` bytes against this request and the edge; False if the edge had no
        room for them in time (nothing is counted then)."""
        if self.memory is not None and not await self.memory.take(size):
            return False
        self.left -= size
        self.held += size
        return True

    def release(self) -> None:
        """Give back what this request holds (its answer has been sent)."""
        held, self.held = self.held, 0
        if self.memory is not None and held:
            self.memory.give_back(held)
