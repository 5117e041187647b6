"""How a resolver of the target schema reports progress: ``info.context.progress.report(...)``.

Every context asyncgate gives the target schema (``OperationContext``) has a ``progress``
reporter. Run in the background, the executor's reporter turns reports into throttled
OperationProgressed events (services/executor/progress.py); run synchronously by the edge
nobody can watch, so the reporter only checks the values and discards them. Resolvers therefore
call it unconditionally::

    @strawberry.field
    async def rebuild(self, info: strawberry.Info[OperationContext, None]) -> str:
        for step in range(10):
            await do_step(step)
            info.context.progress.report(done=step + 1, total=10, message=f"step {step + 1}")
"""

from typing import Final

# Longer messages are cut to this many characters: progress is for a line on a screen, and
# every report may become an event.
MAX_MESSAGE_CHARS: Final = 200


class ProgressReporter:
    """Takes a resolver's progress reports; this one checks and discards them."""

    def report(self, *, done: int, total: int, message: str | None = None) -> None:
        """Report that ``done`` of ``total`` steps are finished (``message`` for people).

        Cheap and non-blocking: call it as often as it is true. Raises ValueError for values
        no client could show (negative, or ``done`` past ``total``).
        """
        self._accept(*checked_progress(done, total, message))

    def _accept(self, done: int, total: int, message: str | None) -> None:
        """What a reporter does with checked values (here: nothing)."""


def checked_progress(done: int, total: int, message: str | None) -> tuple[int, int, str | None]:
    """The values of one report, checked; the message cut to MAX_MESSAGE_CHARS."""
    if isinstance(done, bool) or isinstance(total, bool):
        raise ValueError("progress done and total must be integers, not booleans")
    if not 0 <= done <= total:
        raise ValueError(f"progress must have 0 <= done <= total, got done={done} total={total}")
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return done, total, message
