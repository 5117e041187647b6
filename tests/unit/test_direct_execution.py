"""Running an operation through graphql-core directly gives what strawberry's own path gives."""

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from services.common.direct_execution import execute_directly
from services.common.documents import DocumentCache
from services.common.target import direct_execution_cache, document_caches, execute


@strawberry.type
class Account:
    number: int
    name: str

    @strawberry.field
    def balance(self) -> float:
        raise ValueError("the ledger is closed")


@strawberry.type
class Query:
    @strawberry.field
    def account(self, number: int) -> Account:
        return Account(number=number, name=f"account {number}")

    @strawberry.field
    def missing(self) -> Account:
        return None  # type: ignore[return-value]  # a non-null field resolving to null

    @strawberry.field
    def who(self, info: strawberry.Info) -> str:
        return str(info.context["user"])


@strawberry.type
class Mutation:
    @strawberry.mutation
    def rename(self, number: int, name: str) -> Account:
        return Account(number=number, name=name)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1


def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    """The same types twice: with asyncgate's document cache only (run directly) and bare
    (strawberry's own path)."""
    cached = strawberry.Schema(
        Query, mutation=Mutation, subscription=Subscription, extensions=document_caches()
    )
    bare = strawberry.Schema(Query, mutation=Mutation, subscription=Subscription)
    return cached, bare


CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("{ account(number: 7) { number name } }", {}, None),
    ("query A($n: Int!) { account(number: $n) { name } }", {"n": 3}, None),
    ("query A($n: Int!) { account(number: $n) { name } }", {"n": "three"}, None),
    ("query A($n: Int!) { account(number: $n) { name } }", {}, None),
    ("{ account(number: 1) { name balance } }", {}, None),
    ("{ missing { name } }", {}, None),
    ("{ who }", {}, None),
    ("{ nosuchfield }", {}, None),
    ("{ account(number: 1) { ", {}, None),
    ('mutation { rename(number: 2, name: "cash") { number name } }', {}, None),
    ("query A { who } query B { account(number: 4) { name } }", {}, "B"),
]


@pytest.mark.parametrize(("query", "variables", "operation_name"), CASES)
async def test_both_paths_answer_alike(
    query: str, variables: dict[str, Any], operation_name: str | None
) -> None:
    cached, bare = schemas()
    context = {"user": "ada"}

    direct = await execute_directly(
        cached,
        DocumentCache(),
        query=query,
        variables=variables,
        operation_name=operation_name,
        context=context,
    )
    strawberrys = await bare.execute(
        query, variable_values=variables, operation_name=operation_name, context_value=context
    )

    assert direct is not None
    assert direct.data == strawberrys.data
    assert [error.formatted for error in direct.errors or []] == [
        error.formatted for error in strawberrys.errors or []
    ]


@pytest.mark.parametrize(
    ("query", "operation_name"),
    [("subscription { ticks }", None), ("query A { who } query B { who }", None)],
)
async def test_what_strawberry_refuses_is_left_to_strawberry(
    query: str, operation_name: str | None
) -> None:
    cached, _ = schemas()

    direct = await execute_directly(
        cached,
        DocumentCache(),
        query=query,
        variables={},
        operation_name=operation_name,
        context=None,
    )

    assert direct is None


class Audit(SchemaExtension):
    """A user's extension: it must still see every operation."""

    seen: ClassVar[list[str]] = []

    def on_execute(self) -> Any:
        Audit.seen.append(self.execution_context.query or "")
        yield


async def test_a_schema_with_its_own_extension_keeps_strawberrys_path() -> None:
    cached, _ = schemas()
    audited = strawberry.Schema(Query, extensions=[Audit, *document_caches()])

    response = await execute(
        audited,
        query="{ who }",
        variables={},
        operation_name=None,
        context={"user": "ada"},  # type: ignore[arg-type]  # the test schema reads a dict
    )

    assert direct_execution_cache(cached) is not None
    assert direct_execution_cache(audited) is None
    assert response == {"data": {"who": "ada"}}
    assert Audit.seen == ["{ who }"]
