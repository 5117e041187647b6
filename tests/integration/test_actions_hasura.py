"""Every handler answer treated as Hasura treats it, through a real uvicorn edge calling a real
HTTP handler: one handler route per case of Hasura's own action tests
(server/tests-py/queries/actions/sync/<case>.yaml), expecting the message and extensions those
tests expect (without Hasura's admin-only ``internal``, where asyncgate puts its own detail)."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.common.nats_server import free_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.stack import eventually, graphql, running, serving, serving_edge

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

ACTIONS_GRAPHQL = """
type UserId { id: Int! }
type OutObject { id: ID! name: String }
type Nested { id: Int! child: OutObject }

type Mutation {
  expecting_object_response_got_null: UserId!
  expecting_array_response_got_null: [UserId]!
  expecting_object_response: UserId
  expecting_array_response: [UserId]
  expecting_object_response_got_scalar: UserId
  expecting_scalar_response_got_object: String!
  mirror_action_no_field: OutObject
  mirror_action_not_null: OutObject
  get_null_field_expecting_non_nullable_field_array: [String!]!
  get_string_scalar_array_action_output_type_expecting_number_array: [Int]!
  server_error_response: OutObject
  not_json_response: OutObject
  unreachable_handler: OutObject
  handler_timeout: OutObject
  null_response: UserId
  omitted_field_response_for_nullable_field: OutObject
  mirror_action_unexpected_field: OutObject
  expecting_object_response_with_nested_null: Nested
  set_cookies: OutObject
  async_refused: OutObject
  async_server_error: OutObject
}

type Query {
  extensions_code_both_codes: UserId
  extensions_code_nothing: UserId
  extensions_code_only_empty_extensions: UserId
  extensions_code_only_extensions_code: UserId
  extensions_code_toplevel_empty_extensions: UserId
  extensions_code_toplevel_no_extensions: UserId
  client_error_response: UserId
}
"""

HASURA = {"path": "$", "code": "unexpected"}
GOT_NULL = "got null for the action webhook response"
HTTP_EXCEPTION = "http exception when calling webhook"
INTENTIONAL = "intentionally generated error"

# case: (status, body the handler answers, Hasura's message, Hasura's extensions)
FAILURES: dict[str, tuple[int, Any, str, dict[str, Any]]] = {
    "expecting_object_response_got_null": (200, None, GOT_NULL, HASURA),
    "expecting_array_response_got_null": (200, None, GOT_NULL, HASURA),
    "expecting_object_response": (
        200,
        [{"id": 1}, {"id": 2}],
        "got array for the action webhook response, expecting UserId",
        HASURA,
    ),
    "expecting_array_response": (
        200,
        {"id": 1},
        "expecting array for the action webhook response",
        HASURA,
    ),
    "expecting_object_response_got_scalar": (
        200,
        "some-string",
        "got scalar String for the action webhook response, expecting UserId",
        HASURA,
    ),
    "expecting_scalar_response_got_object": (
        200,
        {"id": 1},
        "got object for the action webhook response, expecting String",
        HASURA,
    ),
    "mirror_action_no_field": (
        200,
        {"name": "Alice"},
        'field "id" expected in webhook response, but not found',
        HASURA,
    ),
    "mirror_action_not_null": (
        200,
        {"name": "Alice", "id": None},
        'expecting not null value for field "id"',
        HASURA,
    ),
    "get_null_field_expecting_non_nullable_field_array": (
        200,
        ["foo", "bar", None],
        GOT_NULL,
        HASURA,
    ),
    "get_string_scalar_array_action_output_type_expecting_number_array": (
        200,
        ["foo", "bar", None],
        "got scalar String for the action webhook response, expecting Int",
        HASURA,
    ),
    "server_error_response": (
        500,
        {"message": "something went wrong", "extensions": {"foo1": "baz1"}},
        "internal error",
        HASURA,
    ),
    "not_json_response": (200, b"{not json", "not a valid json response from webhook", HASURA),
    "unreachable_handler": (0, None, HTTP_EXCEPTION, HASURA),
    "handler_timeout": (200, {"id": "late"}, HTTP_EXCEPTION, HASURA),
}

# case: (the 4xx body, the error Hasura answers): the handler's extensions win as a whole.
REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "extensions_code_both_codes": (
        {
            "message": INTENTIONAL,
            "code": "toplevel-error",
            "extensions": {"foo": "bar", "code": "action-error"},
        },
        {"message": INTENTIONAL, "extensions": {"foo": "bar", "code": "action-error"}},
    ),
    "extensions_code_nothing": (
        {"message": INTENTIONAL},
        {"message": INTENTIONAL, "extensions": {"path": "$", "code": "unexpected"}},
    ),
    "extensions_code_only_empty_extensions": (
        {"message": INTENTIONAL, "extensions": {"foo": "bar"}},
        {"message": INTENTIONAL, "extensions": {"foo": "bar"}},
    ),
    "extensions_code_only_extensions_code": (
        {"message": INTENTIONAL, "extensions": {"foo": "bar", "code": "action-error"}},
        {"message": INTENTIONAL, "extensions": {"foo": "bar", "code": "action-error"}},
    ),
    "extensions_code_toplevel_empty_extensions": (
        {"message": INTENTIONAL, "code": "toplevel-error", "extensions": {"foo": "bar"}},
        {"message": INTENTIONAL, "extensions": {"foo": "bar"}},
    ),
    "extensions_code_toplevel_no_extensions": (
        {"message": INTENTIONAL, "code": "toplevel-error"},
        {"message": INTENTIONAL, "extensions": {"path": "$", "code": "toplevel-error"}},
    ),
    "client_error_response": (
        {"message": "something went wrong", "extensions": {"foo1": "baz1"}},
        {"message": "something went wrong", "extensions": {"foo1": "baz1"}},
    ),
}

# case: (what the handler answers, the data Hasura answers)
SUCCESSES: dict[str, tuple[Any, Any]] = {
    "null_response": (None, None),
    "omitted_field_response_for_nullable_field": ({"id": "x"}, {"id": "x", "name": None}),
    "mirror_action_unexpected_field": (
        {"id": "some-id", "name": "Alice", "age": 25},
        {"id": "some-id", "name": "Alice"},
    ),
    "expecting_object_response_with_nested_null": (
        {"id": 1, "child": None},
        {"id": 1, "child": None},
    ),
}

SELECTIONS = {"UserId": "{ id }", "OutObject": "{ id name }", "Nested": "{ id child { id } }"}
ASYNC_ACTIONS = ("async_refused", "async_server_error")
HANDLER_TIMEOUT_S = 0.3
COOKIES = ("session=abc; Path=/; HttpOnly", "theme=dark")


def selection(case: str) -> str:
    """The selection set the case's output type needs."""
    line = next(line for line in ACTIONS_GRAPHQL.splitlines() if line.strip().startswith(case))
    output = line.split(":", 1)[1].strip(" []!")
    return SELECTIONS.get(output, "")


def actions_yaml(handler_url: str, unreachable_url: str) -> str:
    """actions.yaml: every case its own action and handler route."""
    lines = ["actions:"]
    cases = [*FAILURES, *REFUSALS, *SUCCESSES, "set_cookies", *ASYNC_ACTIONS]
    for case in cases:
        url = unreachable_url if case == "unreachable_handler" else f"{handler_url}/{case}"
        timeout = HANDLER_TIMEOUT_S if case == "handler_timeout" else 5
        lines += [f"  - name: {case}", "    definition:", f"      handler: {url}"]
        lines += [f"      timeout: {timeout}"]
        if case in ASYNC_ACTIONS:
            lines += ["      kind: asynchronous"]
    return "\n".join(lines) + "\n"


async def answer(request: Request) -> Response:
    """The handler: each route answers its case."""
    case = request.path_params["case"]
    headers = {"set-cookie": "abcd"}  # as Hasura's test handler does on every answer
    status, body = 200, None
    if case in FAILURES:
        status, body, _, _ = FAILURES[case]
    elif case in REFUSALS:
        status, body = 400, REFUSALS[case][0]
    elif case in SUCCESSES:
        body = SUCCESSES[case][0]
    elif case == "set_cookies":
        body = {"id": "1", "name": "Alice"}
    elif case == "async_refused":
        status, body = 422, {"message": "out of stock", "code": "out-of-stock"}
    elif case == "async_server_error":
        status, body = 503, {"message": "try later"}
    if case == "handler_timeout":
        await asyncio.sleep(HANDLER_TIMEOUT_S * 4)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = Response(content, status, media_type="application/json", headers=headers)
    if case == "set_cookies":
        del response.headers["set-cookie"]
        for cookie in COOKIES:
            response.headers.append("set-cookie", cookie)
    return response


@pytest.fixture
async def with_actions(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings with one action per case, their handler behind a real uvicorn server."""
    handler = Starlette(routes=[Route("/{case}", answer, methods=["POST"])])
    async with serving(handler, free_port()) as url:
        (tmp_path / "actions.graphql").write_text(ACTIONS_GRAPHQL)
        unreachable = f"http://127.0.0.1:{free_port()}/nobody-listens"
        (tmp_path / "actions.yaml").write_text(actions_yaml(url, unreachable))
        yield settings.replace(actions_file=tmp_path / "actions.yaml")


@pytest.fixture
async def edge(with_actions: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The edge serving the cases' actions."""
    async with serving_edge(with_actions) as client:
        yield client


async def call(client: httpx.AsyncClient, case: str, kind: str = "mutation") -> dict[str, Any]:
    """Run the case's synchronous action."""
    return await graphql(client, f"{kind} {{ {case} {selection(case)} }}")


@pytest.mark.parametrize("case", list(FAILURES))
async def test_a_failed_answer_gets_hasuras_message_and_extensions(
    edge: httpx.AsyncClient, case: str
) -> None:
    _, _, message, extensions = FAILURES[case]

    response = await call(edge, case)

    [error] = response["errors"]
    assert error["message"] == message
    shown = {key: value for key, value in error["extensions"].items() if key != "internal"}
    assert shown == extensions
    # asyncgate's own detail, never the handler's body or the request.
    assert error["extensions"]["internal"]["code"].startswith("ACTION_")
    assert "something went wrong" not in json.dumps(response)


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_4xx_answer_gets_hasuras_code_precedence(
    edge: httpx.AsyncClient, case: str
) -> None:
    response = await call(edge, case, "query")

    [error] = response["errors"]
    expected = REFUSALS[case][1]
    assert (error["message"], error["extensions"]) == (expected["message"], expected["extensions"])


@pytest.mark.parametrize("case", list(SUCCESSES))
async def test_answers_hasura_accepts_are_the_output(edge: httpx.AsyncClient, case: str) -> None:
    response = await call(edge, case)

    assert "errors" not in response
    assert response["data"] == {case: SUCCESSES[case][1]}


async def test_a_synchronous_actions_set_cookie_headers_reach_the_client(
    edge: httpx.AsyncClient,
) -> None:
    response = await edge.post("/graphql", json={"query": "mutation { set_cookies { id } }"})

    assert response.json()["data"] == {"set_cookies": {"id": "1"}}
    assert response.headers.get_list("set-cookie") == list(COOKIES)


async def test_a_failed_answer_sets_no_cookie(edge: httpx.AsyncClient) -> None:
    response = await edge.post(
        "/graphql", json={"query": "mutation { mirror_action_no_field { id } }"}
    )

    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_failed_action_field_is_null_beside_its_error_with_status_200(
    edge: httpx.AsyncClient, accept: str
) -> None:
    nullable = await edge.post(
        "/graphql",
        json={"query": "mutation { mirror_action_no_field { id } }"},
        headers={"accept": accept},
    )
    non_null = await edge.post(
        "/graphql",
        json={"query": "mutation { expecting_object_response_got_null { id } }"},
        headers={"accept": accept},
    )

    assert nullable.status_code == non_null.status_code == 200
    assert nullable.json()["data"] == {"mirror_action_no_field": None}
    assert non_null.json()["data"] is None
    assert [e["path"] for e in nullable.json()["errors"]] == [["mirror_action_no_field"]]


async def test_an_async_actions_errors_are_hasuras_error_object(
    with_actions: Settings, edge: httpx.AsyncClient
) -> None:
    async with running(create_projector(with_actions)), running(create_executor(with_actions)):
        ids = {}
        for case in ASYNC_ACTIONS:
            queued = await graphql(edge, f"mutation {{ {case} }}")
            ids[case] = queued["data"][case]

        async def ended(case: str) -> dict[str, Any] | None:
            query = f'{{ {case}(id: "{ids[case]}") {{ output {{ id }} errors }} }}'
            state: dict[str, Any] = (await graphql(edge, query))["data"][case]
            return state if state["errors"] is not None else None

        refused = await eventually(lambda: ended("async_refused"), what="the refusal")
        failed = await eventually(lambda: ended("async_server_error"), what="the 503")
        codes = {}
        for case in ASYNC_ACTIONS:
            asked = f'{{ asyncResult(id: "{ids[case]}") {{ errorCode }} }}'
            codes[case] = (await graphql(edge, asked))["data"]["asyncResult"]["errorCode"]

    assert refused == {
        "output": None,
        "errors": {"error": "out of stock", "path": "$", "code": "out-of-stock"},
    }
    assert failed["errors"]["error"] == "internal error"
    assert (failed["errors"]["path"], failed["errors"]["code"]) == ("$", "unexpected")
    # asyncResult's errorCode is asyncgate's class of the failure, whatever the handler wrote.
    assert codes == {
        "async_refused": "ACTION_REFUSED",
        "async_server_error": "ACTION_HANDLER_FAILED",
    }
