"""A target schema for tests: fields that fail in the ways real resolvers do."""

import asyncio

import strawberry

from services.common.identity import OperationContext

# The marks of every waitCancellable that saw its task cancelled, in this process (tests run
# the executor in-process, so they can read it).
CANCELLED_MARKS: list[str] = []


@strawberry.type
class Query:
    """Fields that fail, expectedly and not."""

    @strawberry.field
    def fine(self) -> int:
        """Always 1."""
        return 1

    @strawberry.field
    def broken(self) -> int | None:
        """Fails the way a bug does, with details no client should see."""
        raise RuntimeError("connection to db-7.internal:5432 refused for user admin")

    @strawberry.field
    def refused(self) -> int:
        """Fails with no data at all: a non-null field that raises."""
        raise ValueError("refused")

    @strawberry.field
    async def wait_cancellable(self, seconds: float, mark: str) -> str:
        """Waits ``seconds``; records ``mark`` if it is cancelled meanwhile."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            CANCELLED_MARKS.append(mark)
            raise
        return mark

    @strawberry.field
    async def in_steps(
        self, info: strawberry.Info[OperationContext, None], steps: int, pause: float
    ) -> int:
        """Reports progress after each of ``steps`` steps of ``pause`` seconds; returns steps."""
        for step in range(1, steps + 1):
            await asyncio.sleep(pause)
            info.context.progress.report(done=step, total=steps, message=f"step {step}")
        return steps

    @strawberry.field
    def reporting_often(self, info: strawberry.Info[OperationContext, None], times: int) -> int:
        """Reports progress ``times`` times in one go (no pause); returns times."""
        for done in range(1, times + 1):
            info.context.progress.report(done=done, total=times)
        return times


schema = strawberry.Schema(query=Query)
