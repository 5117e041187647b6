"""The seed's example requests, sent as written to a real edge over HTTP, with a real executor,
projector and nats-server behind it."""

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.projector.replay import stream_size
from tests.conftest import NatsServer
from tests.seed_requests import (
    ASYNC_QUERY,
    ASYNC_QUERY_WITH_ARGS,
    ASYNC_QUERY_WITH_ARGS_VARIABLES,
    ASYNC_REQUESTS,
    FETCH_RESULTS,
    INNER_QUERY,
    SEED_RESULT_DATA,
)
from tests.stack import (
    eventually,
    graphql,
    running,
    serving_edge,
    stored_views,
)

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Edge, executor and projector, all running against the test's nats-server."""
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


async def fetch(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    """The seed's fetch_results request for one operation id."""
    response = await graphql(client, FETCH_RESULTS, {"oid": operation_id})
    assert "errors" not in response, response
    result: dict[str, Any] = response["data"]["asyncResult"]
    return result


async def finished(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    """Poll asyncResult until the operation has its final state."""

    async def terminal() -> dict[str, Any] | None:
        result = await fetch(client, operation_id)
        return result if result["status"] in ("SUCCESS", "ERROR") else None

    return await eventually(terminal, what=f"operation {operation_id} finishing")


async def submit(
    client: httpx.AsyncClient, request: str, variables: dict[str, Any] | None = None
) -> str:
    """Send an asyncQuery request; check it was queued; return the operation id."""
    response = await graphql(client, request, variables)
    assert "errors" not in response, response
    queued = response["data"]["asyncQuery"]
    assert queued["status"] == "QUEUED"
    assert str(uuid.UUID(queued["operationId"])) == queued["operationId"]
    return str(queued["operationId"])


async def test_seed_async_query_runs_to_the_synchronous_result(stack: httpx.AsyncClient) -> None:
    operation_id = await submit(stack, ASYNC_QUERY)

    result = await finished(stack, operation_id)

    synchronous = await graphql(stack, INNER_QUERY)
    assert result["status"] == "SUCCESS"
    assert result["error"] is None
    synchronous.pop("extensions")
    assert json.loads(result["data"]) == synchronous
    assert result["data"] == SEED_RESULT_DATA
    assert TIMESTAMP.fullmatch(result["createdAt"])
    assert TIMESTAMP.fullmatch(result["completedAt"])
    assert result["createdAt"] <= result["completedAt"]
    assert await fetch(stack, operation_id) == result, "a result can be read again"


async def test_seed_async_query_with_args_uses_them_as_variables(stack: httpx.AsyncClient) -> None:
    operation_id = await submit(stack, ASYNC_QUERY_WITH_ARGS, ASYNC_QUERY_WITH_ARGS_VARIABLES)

    result = await finished(stack, operation_id)

    assert result["status"] == "SUCCESS"
    assert result["data"] == SEED_RESULT_DATA


async def test_seed_async_requests_lists_own_operations_newest_first(
    stack: httpx.AsyncClient,
) -> None:
    first = await submit(stack, ASYNC_QUERY)
    second = await submit(stack, ASYNC_QUERY_WITH_ARGS, ASYNC_QUERY_WITH_ARGS_VARIABLES)
    await finished(stack, first)
    await finished(stack, second)

    async def both_listed() -> list[dict[str, Any]] | None:
        response = await graphql(stack, ASYNC_REQUESTS)
        listed: list[dict[str, Any]] = response["data"]["asyncRequests"]
        return listed if len(listed) == 2 else None

    listed = await eventually(both_listed, what="both operations listed")
    assert [item["operationId"] for item in listed] == [second, first]
    assert {item["status"] for item in listed} == {"SUCCESS"}

    page = await graphql(
        stack,
        "query($after: String) { asyncRequests(status: SUCCESS, first: 1, after: $after)"
        " { operationId } }",
        {"after": second},
    )
    assert "errors" not in page, page
    assert page["data"]["asyncRequests"] == [{"operationId": first}]
    queued = await graphql(stack, "{ asyncRequests(status: QUEUED) { operationId } }")
    assert queued["data"]["asyncRequests"] == []


async def test_async_result_reads_your_writes_before_the_view_has_it(settings: Settings) -> None:
    # No projector and no executor: only the stream knows the operation.
    async with serving_edge(settings) as client:
        operation_id = await submit(client, ASYNC_QUERY)

        result = await fetch(client, operation_id)

    assert result["operationId"] == operation_id
    assert result["status"] == "QUEUED"
    assert result["data"] == "null"
    assert result["error"] is None
    assert result["completedAt"] is None
    assert TIMESTAMP.fullmatch(result["createdAt"])


EVERY_FIELD = """query($id: String!) { asyncResult(id: $id) {
  operationId status error errorCode data createdAt startedAt completedAt attempts } }"""


async def test_a_finished_operation_reads_finished_while_the_projector_is_down(
    settings: Settings, js: JetStreamContext
) -> None:
    # No projector: the view never moves past what the stream said first.
    async with running(create_executor(settings)), serving_edge(settings) as client:
        operation_id = await submit(client, ASYNC_QUERY)

        async def read() -> dict[str, Any]:
            response = await graphql(client, EVERY_FIELD, {"id": operation_id})
            found: dict[str, Any] = response["data"]["asyncResult"]
            return found

        async def succeeded() -> dict[str, Any] | None:
            found = await read()
            return found if found["status"] == "SUCCESS" else None

        before_projection = await eventually(succeeded, what="SUCCESS read from the stream")
        assert await stored_views(js) == {}

        async with running(create_projector(settings)):
            await eventually(
                lambda: _final_view_count(js, 1), what="the projector storing the view"
            )
            after_projection = await read()

    # Reported final once, never changed afterwards: every field, attempts and startedAt too.
    assert after_projection == before_projection
    assert before_projection["attempts"] == 1
    assert TIMESTAMP.fullmatch(before_projection["startedAt"])
    assert before_projection["data"] == SEED_RESULT_DATA


async def _final_view_count(js: JetStreamContext, count: int) -> bool | None:
    views = await stored_views(js)
    return True if sum(view.status.is_terminal for view in views.values()) >= count else None


async def test_failed_operation_ends_in_error_with_its_message(stack: httpx.AsyncClient) -> None:
    operation_id = await submit(
        stack,
        'mutation { asyncQuery(query: "{ useCompany(no: 0) { no } }") { operationId status } }',
    )

    result = await finished(stack, operation_id)

    assert result["status"] == "ERROR"
    assert "no company has number 0" in result["error"]
    assert json.loads(result["data"])["data"] is None
    code = await graphql(
        stack, "query($id: String!) { asyncResult(id: $id) { errorCode } }", {"id": operation_id}
    )
    assert code["data"]["asyncResult"]["errorCode"] == "NOT_FOUND"


async def test_a_mutation_runs_in_the_background(stack: httpx.AsyncClient) -> None:
    inner = (
        "mutation { useCompany(no: 42) { generalLedgerAccount_create("
        'values: [{accountNo: 9990, name: "Bakgrunn"}]) { affectedRows } } }'
    )
    operation_id = await submit(
        stack,
        "mutation($q: String!) { asyncQuery(query: $q) { operationId status } }",
        {"q": inner},
    )

    result = await finished(stack, operation_id)

    assert result["status"] == "SUCCESS"
    assert json.loads(result["data"]) == {
        "data": {"useCompany": {"generalLedgerAccount_create": {"affectedRows": 1}}}
    }


async def test_unknown_ids_read_null_and_malformed_ids_are_refused(
    stack: httpx.AsyncClient,
) -> None:
    unknown = await graphql(stack, FETCH_RESULTS, {"oid": str(uuid.uuid4())})
    assert unknown == {"data": {"asyncResult": None}, "extensions": unknown["extensions"]}

    malformed = await graphql(stack, FETCH_RESULTS, {"oid": "ops.events.>"})
    assert malformed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


INVALID_SUBMISSIONS = [
    ("query { useCompany(no: 1) {", None, "GRAPHQL_PARSE_FAILED"),
    ("query { useCompany(no: 1) { nonsense } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("query q($cid: Int!) { useCompany(no: $cid) { no } }", {}, "BAD_USER_INPUT"),
    ("query q($cid: Int!) { useCompany(no: $cid) { no } }", {"cid": "x"}, "BAD_USER_INPUT"),
    ("query { useCompany(no: 1) { no } }", {"extra": 1}, "BAD_USER_INPUT"),
    ("query { useCompany(no: 1) { no } }", [1, 2], "BAD_USER_INPUT"),
    (
        'mutation { asyncQuery(query: "{ slowReport(seconds: 1) }") { status } }',
        None,
        "NESTED_ASYNC_QUERY",
    ),
    ('query { asyncResult(id: "x") { status } }', None, "NESTED_ASYNC_QUERY"),
]


@pytest.mark.parametrize(("inner", "args", "code"), INVALID_SUBMISSIONS)
async def test_invalid_inner_documents_are_refused_and_nothing_is_queued(
    stack: httpx.AsyncClient, js: JetStreamContext, inner: str, args: object, code: str
) -> None:
    response = await graphql(
        stack,
        "mutation($q: String!, $a: Dictionary) { asyncQuery(query: $q, args: $a) { status } }",
        {"q": inner, "a": args},
    )

    assert response["data"] is None
    assert [error["extensions"]["code"] for error in response["errors"]] == [code]
    assert "Traceback" not in json.dumps(response)
    assert await stream_size(js) == 0


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"query": '{ asyncResult(id: "x") '}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ nonsense }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "query($s: Int!) { slowReport(seconds: $s) }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "query($s: Float!) { slowReport(seconds: $s) }", "variables": {"s": "x"}},
            "BAD_USER_INPUT",
        ),
        ({"query": "query($s: Float!) { slowReport(seconds: $s) }"}, "BAD_USER_INPUT"),
        (
            {"query": "{ useCompany(no: 1) { generalLedgerAccount(first: -1) { totalCount } } }"},
            "BAD_USER_INPUT",
        ),
        (
            {"query": "{ " + " ".join(f"a{i}: whoami" for i in range(31)) + " }"},
            "QUERY_TOO_COMPLEX",
        ),
        ({"query": "{" + " whoami" * 2100 + " }"}, "QUERY_TOO_COMPLEX"),
        ({"query": "{ whoami } #" + "x" * 40_000}, "QUERY_TOO_LARGE"),
        ({"query": "{ whoami }", "variables": {"pad": "x" * 70_000}}, "VARIABLES_TOO_LARGE"),
    ],
)
async def test_bad_outer_requests_get_coded_errors(
    stack: httpx.AsyncClient, request_body: dict[str, Any], code: str
) -> None:
    response = await stack.post("/graphql", json=request_body)

    assert response.status_code == 200
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == [code]


async def test_health_readiness_and_graphiql(stack: httpx.AsyncClient) -> None:
    assert (await stack.get("/healthz")).status_code == 200
    ready = await stack.get("/readyz")
    assert ready.json() == {"status": "ready"}
    page = await stack.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


async def test_without_nats_the_edge_answers_service_unavailable(
    settings: Settings, nats_server: NatsServer
) -> None:
    async with serving_edge(settings) as client:
        nats_server.stop()

        submitted = await graphql(client, ASYNC_QUERY)
        read = await graphql(client, FETCH_RESULTS, {"oid": str(uuid.uuid4())})
        listed = await graphql(client, ASYNC_REQUESTS)
        ready = await client.get("/readyz")

    for response in (submitted, read, listed):
        assert [e["extensions"]["code"] for e in response["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert ready.status_code == 503


async def test_unexpected_errors_are_masked_alike_synchronously_and_in_the_background(
    settings: Settings,
) -> None:
    settings = settings.replace(target_schema="tests.targets:schema")
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        synchronous = await graphql(client, "{ fine broken }")
        queued = await graphql(
            client, 'mutation { asyncQuery(query: "{ fine broken }") { operationId } }'
        )
        result = await finished(client, queued["data"]["asyncQuery"]["operationId"])

    background = json.loads(result["data"])
    for response in (synchronous, background):
        assert response["data"] == {"fine": 1, "broken": None}
        [error] = response["errors"]
        assert error["message"] == "Unexpected error."
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert result["status"] == "SUCCESS"
    assert "db-7" not in json.dumps(synchronous) + result["data"]
