"""Requests whose QUEUED view waits a moment for the operation's next event.

Most operations start and end within milliseconds of being queued, so the view written for the
request alone (QUEUED) is overwritten almost at once and read by nobody: readers that find no
view, or one that is not final, read the operation from the stream anyway. Holding a fresh
request for a moment lets the next event of its operation fold into the same write: one stored
view revision per quick operation instead of two. A request whose operation shows nothing else
within the delay gets its QUEUED view then, as before.

A held request is not acknowledged until its view is stored, so a projector that dies holding
it leaves it to be redelivered (to another replica, or to itself after a restart); one that is
stopped writes what it holds first.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg

from contracts.events import OperationEvent

# A delivered event: its message, its stream sequence, the event.
Delivered = tuple[Msg, int, OperationEvent]


class HeldRequests:
    """Holds each operation's fresh requests for ``delay_s``; ``write`` folds them then.

    At most ``capacity`` operations are held at once (a held event is an unacknowledged one,
    and a consumer stops delivering at its limit of those); past it, nothing more is held.
    """

    def __init__(
        self,
        delay_s: float,
        capacity: int,
        write: Callable[[str, list[Delivered]], Coroutine[Any, Any, None]],
    ) -> None:
        self._delay_s = delay_s
        self._capacity = capacity
        self._write = write
        self._held: dict[str, tuple[list[Delivered], asyncio.TimerHandle]] = {}
        self._writing: set[asyncio.Task[None]] = set()

    def hold(self, key: str, delivered: list[Delivered]) -> bool:
        """Hold ``delivered`` (the operation's requests) unless holding is off or full."""
        if self._delay_s <= 0 or len(self._held) >= self._capacity or key in self._held:
            return False
        timer = asyncio.get_running_loop().call_later(self._delay_s, self._write_held, key)
        self._held[key] = (delivered, timer)
        return True

    def take(self, key: str) -> list[Delivered]:
        """What is held for ``key`` (nothing once written): the caller folds it in now."""
        held = self._held.pop(key, None)
        if held is None:
            return []
        delivered, timer = held
        timer.cancel()
        return delivered

    def __len__(self) -> int:
        return len(self._held)

    def _write_held(self, key: str) -> None:
        delivered = self.take(key)
        if delivered:
            task = asyncio.create_task(self._write(key, delivered))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def write_now(self) -> None:
        """Stopping: hold nothing more and write what is held now, so that no held event waits
        out its ack wait to be folded by another projector."""
        self._delay_s = 0.0
        held = [(key, self.take(key)) for key in list(self._held)]
        await asyncio.gather(
            *(self._write(key, delivered) for key, delivered in held),
            *self._writing,
            return_exceptions=True,
        )
