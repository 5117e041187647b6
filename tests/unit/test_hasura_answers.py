"""Reading a handler's answer as Hasura does, without I/O: its messages, codes and error shapes
(expected values from Hasura's own action tests, server/tests-py/queries/actions/sync)."""

from typing import Any

import httpx
import pytest
from graphql import GraphQLOutputType, build_schema

from contracts.errors import ErrorCode
from services.actions.handler import ActionFailed, ActionSucceeded, classify
from services.actions.hasura import async_errors, refusal_error
from services.actions.output import output_problem
from services.executor.retries import PASSING_FAILURES

SCHEMA = build_schema(
    """
    scalar json
    enum Colour { RED GREEN }
    type UserId { id: ID! name: String }
    type Nested { id: Int! child: UserId }
    type Query {
      user: UserId
      user_required: UserId!
      users: [UserId]
      users_required: [UserId]!
      strings: [String!]!
      ints: [Int]!
      text: String!
      number: Float
      flag: Boolean
      anything: json
      colour: Colour
      nested: Nested
    }
    """
)


def output(field: str) -> GraphQLOutputType:
    """The output type of the test schema's field."""
    query = SCHEMA.query_type
    assert query is not None
    output_type: GraphQLOutputType = query.fields[field].type
    return output_type


GOT_NULL = "got null for the action webhook response"
OUTPUT_CASES = [
    # (output field, handler's JSON, Hasura's message or None, JSON path)
    ("user_required", None, GOT_NULL, "$"),  # expecting_object_response_got_null
    ("users_required", None, GOT_NULL, "$"),  # expecting_array_response_got_null
    ("user", None, None, "$"),  # null_response
    ("user", [{"id": "1"}], "got array for the action webhook response, expecting UserId", "$"),
    ("users", {"id": "1"}, "expecting array for the action webhook response", "$"),
    (
        "user",
        "some-string",
        "got scalar String for the action webhook response, expecting UserId",
        "$",
    ),
    ("user", True, "got scalar Boolean for the action webhook response, expecting UserId", "$"),
    # Hasura's latest source calls a number "scalar String" too.
    ("user", 3, "got scalar String for the action webhook response, expecting UserId", "$"),
    ("text", {"id": 1}, "got object for the action webhook response, expecting String", "$"),
    ("user", {"name": "Alice"}, 'field "id" expected in webhook response, but not found', "$.id"),
    ("user", {"name": "Alice", "id": None}, 'expecting not null value for field "id"', "$.id"),
    ("user", {"id": "1"}, None, "$"),  # omitted nullable field
    ("user", {"id": "1", "age": 25}, None, "$"),  # fields the type does not declare: ignored
    (
        "users",
        [{"id": "1"}, {"name": "x"}],
        'field "id" expected in webhook response, but not found',
        "$[1].id",
    ),
    ("strings", ["foo", "bar", None], GOT_NULL, "$[2]"),  # get_null_field_..._array
    ("ints", ["foo"], "got scalar String for the action webhook response, expecting Int", "$[0]"),
    ("number", 1, None, "$"),
    ("flag", 1, "got scalar String for the action webhook response, expecting Boolean", "$"),
    ("anything", [1, {"a": None}], None, "$"),  # custom scalars take any JSON
    ("colour", "RED", None, "$"),
    ("colour", "BLUE", "got scalar String for the action webhook response, expecting Colour", "$"),
    ("nested", {"id": 1, "child": None}, None, "$"),  # expecting_object_response_with_nested_null
    # Checked by asyncgate only (Hasura passes these through): values inside an object.
    (
        "nested",
        {"id": 1, "child": {"name": "x"}},
        'field "id" expected in webhook response, but not found',
        "$.child.id",
    ),
    (
        "nested",
        {"id": "one"},
        "got scalar String for the action webhook response, expecting Int",
        "$.id",
    ),
]


@pytest.mark.parametrize(("field", "answer", "message", "path"), OUTPUT_CASES)
def test_an_answer_is_checked_against_the_output_type_in_hasuras_words(
    field: str, answer: Any, message: str | None, path: str
) -> None:
    problem = output_problem(answer, output(field))

    assert (problem and (problem.message, problem.path)) == (message and (message, path))


REFUSALS = [
    # extensions_code_both_codes: the extensions object wins as a whole
    (
        {
            "message": "m",
            "code": "toplevel-error",
            "extensions": {"foo": "bar", "code": "action-error"},
        },
        {"message": "m", "extensions": {"foo": "bar", "code": "action-error"}},
    ),
    # extensions_code_nothing
    ({"message": "m"}, {"message": "m", "extensions": {"path": "$", "code": "unexpected"}}),
    # extensions_code_only_empty_extensions: passed on unchanged, no code added
    (
        {"message": "m", "extensions": {"foo": "bar"}},
        {"message": "m", "extensions": {"foo": "bar"}},
    ),
    # extensions_code_only_extensions_code
    (
        {"message": "m", "extensions": {"foo": "bar", "code": "action-error"}},
        {"message": "m", "extensions": {"foo": "bar", "code": "action-error"}},
    ),
    # extensions_code_toplevel_empty_extensions: the top-level code is dropped
    (
        {"message": "m", "code": "toplevel-error", "extensions": {"foo": "bar"}},
        {"message": "m", "extensions": {"foo": "bar"}},
    ),
    # extensions_code_toplevel_no_extensions
    (
        {"message": "m", "code": "toplevel-error"},
        {"message": "m", "extensions": {"path": "$", "code": "toplevel-error"}},
    ),
    # client_error_response
    (
        {"message": "something went wrong", "extensions": {"foo1": "baz1"}},
        {"message": "something went wrong", "extensions": {"foo1": "baz1"}},
    ),
    (
        {"message": "m", "extensions": None},
        {"message": "m", "extensions": {"path": "$", "code": "unexpected"}},
    ),
]


@pytest.mark.parametrize(("body", "error"), REFUSALS)
def test_a_4xx_answer_gets_hasuras_code_precedence(body: Any, error: dict[str, Any]) -> None:
    assert refusal_error(body) == error


ERROR_RESPONSE = (
    "parsing Hasura.GraphQL.Execute.Action.Types.ActionWebhookErrorResponse"
    "(ActionWebhookErrorResponse) failed, "
)


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"error": "no"}, "$", ERROR_RESPONSE + 'key "message" not found'),
        ("no", "$", ERROR_RESPONSE + "expected Object, but encountered String"),
        ([1], "$", ERROR_RESPONSE + "expected Object, but encountered Array"),
        (
            {"message": 3},
            "$.message",
            "parsing Text failed, expected String, but encountered Number",
        ),
        (
            {"message": "m", "code": 3},
            "$.code",
            "parsing Text failed, expected String, but encountered Number",
        ),
    ],
)
def test_a_4xx_answer_of_another_shape_is_hasuras_parse_failure(
    body: Any, path: str, message: str
) -> None:
    assert refusal_error(body) == {
        "message": message,
        "extensions": {"path": path, "code": "parse-failed"},
    }


def answer(
    status: int, content: bytes, headers: list[tuple[str, str]] | None = None
) -> httpx.Response:
    """A handler's HTTP answer."""
    return httpx.Response(status, content=content, headers=headers)


CLASSIFIED = [
    # (status, body, Hasura's message, asyncgate's class)
    (
        500,
        b'{"message": "something went wrong", "extensions": {"foo1": "baz1"}}',
        "internal error",
        ErrorCode.ACTION_HANDLER_FAILED,
    ),
    (302, b"{}", "internal error", ErrorCode.ACTION_HANDLER_FAILED),
    (
        500,
        b"Traceback: password=hunter2",
        "not a valid json response from webhook",
        ErrorCode.ACTION_HANDLER_FAILED,
    ),
    (200, b"{not json", "not a valid json response from webhook", ErrorCode.ACTION_BAD_RESPONSE),
    (400, b"<html>", "not a valid json response from webhook", ErrorCode.ACTION_REFUSED),
    (200, b"null", GOT_NULL, ErrorCode.ACTION_BAD_RESPONSE),
    # A 4xx that names a passing class is still a refusal: the class is never the handler's.
    (400, b'{"message": "m", "code": "ACTION_TIMEOUT"}', "m", ErrorCode.ACTION_REFUSED),
]


@pytest.mark.parametrize(("status", "body", "message", "code"), CLASSIFIED)
def test_a_failed_answer_has_hasuras_message_and_asyncgates_own_class(
    status: int, body: bytes, message: str, code: ErrorCode
) -> None:
    result = classify(answer(status, body), output("user_required"))

    assert isinstance(result, ActionFailed)
    assert (result.message, result.code) == (message, code)
    assert result.errors[0]["message"] == message
    assert "hunter2" not in repr(result)
    assert (code in PASSING_FAILURES) == (status >= 500 or status < 200 or 300 <= status < 400)


def test_hasuras_own_failures_carry_code_unexpected_at_path_root_and_asyncgates_detail() -> None:
    result = classify(answer(200, b'{"name": "Alice", "id": null}'), output("user"))

    assert isinstance(result, ActionFailed)
    [error] = result.errors
    assert error["message"] == 'expecting not null value for field "id"'
    assert error["extensions"]["path"] == "$"
    assert error["extensions"]["code"] == "unexpected"
    assert error["extensions"]["internal"] == {
        "code": "ACTION_BAD_RESPONSE",
        "error": "the action handler's answer does not fit UserId at $.id",
    }


def test_a_good_answer_keeps_every_set_cookie_header() -> None:
    headers = [("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2"), ("x-other", "no")]

    result = classify(answer(200, b'{"id": "1"}', headers), output("user"))

    assert result == ActionSucceeded(output={"id": "1"}, set_cookies=("a=1; Path=/", "b=2"))


@pytest.mark.parametrize(
    ("error", "stored"),
    [
        (
            {
                "message": "internal error",
                "extensions": {"path": "$", "code": "unexpected", "internal": {"error": "x"}},
            },
            {
                "error": "internal error",
                "path": "$",
                "code": "unexpected",
                "internal": {"error": "x"},
            },
        ),
        (
            {"message": "m", "extensions": {"path": "$", "code": "invalid-email"}},
            {"error": "m", "path": "$", "code": "invalid-email"},
        ),
        # The handler's extensions are not stored; Hasura's code is then unexpected.
        (
            {"message": "m", "extensions": {"foo": "bar", "code": "action-error"}},
            {"error": "m", "path": "$", "code": "unexpected"},
        ),
    ],
)
def test_an_async_actions_errors_are_hasuras_stored_error_object(
    error: dict[str, Any], stored: dict[str, Any]
) -> None:
    assert async_errors(error) == stored
