"""Which media type the edge answers in, what it reads, and what counts as a request error."""

import pytest

from services.edge.media_types import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    is_json_request,
    is_request_error,
    response_media_type,
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("text/html", JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};charset=utf-8", GRAPHQL_RESPONSE_JSON),
        ("Application/GraphQL-Response+JSON", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=bad, application/json", JSON),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE_JSON),
    ],
)
def test_the_response_media_type_follows_accept(accept: str | None, expected: str) -> None:
    assert response_media_type(accept) == expected


@pytest.mark.parametrize(
    ("content_type", "readable"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("APPLICATION/JSON", True),
        (None, False),
        ("", False),
        ("application/jsonx", False),
        (GRAPHQL_RESPONSE_JSON, False),
        ("application/graphql", False),
        ("multipart/form-data; boundary=x", False),
        ("text/plain; x=application/json", False),
    ],
)
def test_only_json_bodies_are_read(content_type: str | None, readable: bool) -> None:
    assert is_json_request(content_type) is readable


@pytest.mark.parametrize(
    ("body", "request_error"),
    [
        ({"data": None, "errors": [{"message": "Syntax Error"}]}, True),
        ({"errors": [{"message": "Cannot query field"}]}, True),
        ({"data": None, "errors": [{"message": "boom", "path": ["asyncResult"]}]}, False),
        ({"data": {"a": None}, "errors": [{"message": "boom"}]}, False),
        ({"data": {"a": 1}}, False),
        ({"data": None, "errors": []}, False),
    ],
)
def test_a_request_error_has_no_data_and_no_field_error(
    body: dict[str, object], request_error: bool
) -> None:
    assert is_request_error(body) is request_error
