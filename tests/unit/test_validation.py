"""Checking an inner document before it is queued, against the example ledger schema."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from graphql import GraphQLError, OperationType

from examples.ledger.schema import schema
from services.common.documents import DocumentCache
from services.common.timestamps import iso_timestamp
from services.edge.formats import operation_id_argument
from services.edge.shape_limits import ShapeLimits
from services.edge.validation import ValidatedOperation, validate_inner

LEDGER = schema._schema
LIMITS = ShapeLimits(
    max_query_bytes=2000, max_variables_bytes=200, max_depth=6, max_aliases=3, max_tokens=300
)


async def check(
    query: str,
    args: dict[str, Any] | None = None,
    name: str | None = None,
    limits: ShapeLimits = LIMITS,
) -> ValidatedOperation:
    """Check an inner document as the edge does, with a cache of its own."""
    return await validate_inner(
        LEDGER, query=query, args=args, operation_name=name, limits=limits, cache=DocumentCache()
    )


async def code_of(query: str, args: dict[str, Any] | None = None, name: str | None = None) -> str:
    """The code the validator refuses a document with."""
    with pytest.raises(GraphQLError) as refused:
        await check(query, args, name)
    assert refused.value.extensions is not None
    return str(refused.value.extensions["code"])


async def test_a_valid_query_with_its_variables_passes() -> None:
    checked = await check("query read($cid: Int!) { useCompany(no: $cid) { no } }", {"cid": 7})

    assert checked.variables == {"cid": 7}
    assert checked.operation_type is OperationType.QUERY


async def test_a_mutation_passes() -> None:
    checked = await check(
        'mutation { useCompany(no: 1) { generalLedgerAccount_create(values: [{accountNo: 1, name: "a"}]) { affectedRows } } }',  # noqa: E501
    )

    assert checked.operation_type is OperationType.MUTATION


@pytest.mark.parametrize(
    ("query", "args", "name", "code"),
    [
        ("{ useCompany(no: 1) {", None, None, "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", None, None, "GRAPHQL_VALIDATION_FAILED"),
        ("query q($n: Int!) { useCompany(no: $n) { no } }", None, None, "BAD_USER_INPUT"),
        ("query q($n: Int!) { useCompany(no: $n) { no } }", {"n": 1.5}, None, "BAD_USER_INPUT"),
        ("{ useCompany(no: 1) { no } }", {"surplus": 1}, None, "BAD_USER_INPUT"),
        (
            "query a { slowReport(seconds: 0) } query b { slowReport(seconds: 0) }",
            None,
            None,
            "OPERATION_RESOLUTION_FAILURE",
        ),
        ("query a { slowReport(seconds: 0) }", None, "b", "OPERATION_RESOLUTION_FAILURE"),
        ('mutation { asyncQuery(query: "{a}") { status } }', None, None, "NESTED_ASYNC_QUERY"),
        (
            "{ ...F } fragment F on Query { asyncRequests { status } }",
            None,
            None,
            "NESTED_ASYNC_QUERY",
        ),
    ],
)
async def test_bad_documents_are_refused_with_a_code(
    query: str, args: dict[str, Any] | None, name: str | None, code: str
) -> None:
    assert await code_of(query, args, name) == code


async def test_a_named_operation_among_several_is_chosen() -> None:
    checked = await check(
        "query a { slowReport(seconds: 0) } mutation b { useCompany(no: 1) { no } }", name="b"
    )

    assert checked.operation_type is OperationType.MUTATION


async def test_a_cached_document_answers_each_operation_name_and_stays_refused() -> None:
    # What is read off a cached document is kept with it: per operation name, and a refusal
    # (a nested async field) holds for every later request with the same text.
    cache = DocumentCache()
    several = "query a { slowReport(seconds: 0) } mutation b { useCompany(no: 1) { no } }"
    nested = 'mutation { asyncQuery(query: "{ __typename }") { operationId } }'

    async def checked(query: str, name: str | None) -> ValidatedOperation:
        return await validate_inner(
            LEDGER, query=query, args=None, operation_name=name, limits=LIMITS, cache=cache
        )

    kinds = [(await checked(several, name)).operation_type for name in ("a", "b", "a")]
    refusals = []
    for _ in range(2):
        with pytest.raises(GraphQLError) as refused:
            await checked(nested, None)
        refusals.append((refused.value.extensions or {}).get("code"))

    assert kinds == [OperationType.QUERY, OperationType.MUTATION, OperationType.QUERY]
    assert refusals == ["NESTED_ASYNC_QUERY", "NESTED_ASYNC_QUERY"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x",
        "ops.events.>",
        "23B1C256-7AFF-4B95-95BD-68220D9F93F2",
        "00000000-0000-1000-8000-000000000000",
        "{23b1c256-7aff-4b95-95bd-68220d9f93f2}",
    ],
)
def test_only_canonical_operation_ids_are_accepted(value: str) -> None:
    with pytest.raises(GraphQLError):
        operation_id_argument(value)


def test_a_canonical_operation_id_is_accepted() -> None:
    value = "23b1c256-7aff-4b95-95bd-68220d9f93f2"

    assert operation_id_argument(value) == value


DEEP = "{ useCompany(no: 1) { generalLedgerAccount { items { name } } } }"


@pytest.mark.parametrize(
    ("query", "args", "code"),
    [
        ("{ whoami } #" + "x" * 2000, None, "QUERY_TOO_LARGE"),
        (
            "query($n: Int!) { useCompany(no: $n) { no } }",
            {"n": 1, "pad": "x" * 300},
            "VARIABLES_TOO_LARGE",
        ),
        ("{ a: whoami b: whoami c: whoami d: whoami }", None, "QUERY_TOO_COMPLEX"),
    ],
)
async def test_inner_documents_get_the_size_and_shape_limits(
    query: str, args: dict[str, Any] | None, code: str
) -> None:
    assert await code_of(query, args) == code


async def test_depth_and_tokens_are_limited_too() -> None:
    shallow = ShapeLimits(
        max_query_bytes=10_000, max_variables_bytes=200, max_depth=2, max_aliases=3, max_tokens=25
    )

    with pytest.raises(GraphQLError) as deep:
        await check(DEEP, limits=shallow)
    with pytest.raises(GraphQLError) as long:
        await check("{" + " whoami" * 30 + " }", limits=shallow)

    for refused in (deep, long):
        assert refused.value.extensions is not None
        assert refused.value.extensions["code"] == "QUERY_TOO_COMPLEX"


def test_timestamps_are_utc_to_the_second_with_a_z() -> None:
    assert iso_timestamp(datetime(2022, 9, 23, 12, 34, 7, 999_999, tzinfo=UTC)) == (
        "2022-09-23T12:34:07Z"
    )
    two_hours_east = timezone(timedelta(hours=2))
    assert iso_timestamp(datetime(2022, 9, 23, 14, 34, 7, tzinfo=two_hours_east)) == (
        "2022-09-23T12:34:07Z"
    )
    assert iso_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"
    assert iso_timestamp(None) is None
