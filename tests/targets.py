"""A target schema for tests: fields that fail in the ways real resolvers do."""

import strawberry


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


schema = strawberry.Schema(query=Query)
