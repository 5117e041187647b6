"""A target schema for tests: fields that fail in the ways real resolvers do."""

import asyncio

import strawberry

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


schema = strawberry.Schema(query=Query)
