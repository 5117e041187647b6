"""Whatever a client sends, the edge answers with a coded error: never a 5xx, a stack trace or
an internal detail. Through a real uvicorn edge and a real nats-server."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stack import edge_in_background

pytestmark = [pytest.mark.nats, pytest.mark.e2e]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A synchronous client of an edge that lives for this module (hypothesis runs many cases)."""
    with (
        edge_in_background(tmp_path_factory.mktemp("nats")) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        yield http


def assert_coded(response: httpx.Response) -> dict[str, Any]:
    """The response is JSON, not a 5xx, and every error in it has a code and no internals."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    for error in body.get("errors", []):
        assert isinstance(error["extensions"]["code"], str)
    return body


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{bad", "application/json", 400, "BAD_REQUEST"),
        (b"query={x}", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"[1, 2]", "application/json", 400, "BAD_REQUEST"),
        (b'{"query": 5}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }", "variables": [1]}', "application/json", 400, "BAD_REQUEST"),
        (
            b'{"query": "{ __typename }", "operationName": "x"}',
            "application/json",
            400,
            "OPERATION_RESOLUTION_FAILURE",
        ),
        (b"\xff\xfe\x00", "application/json", 400, "BAD_REQUEST"),
    ],
)
def test_malformed_requests_get_a_coded_json_error(
    client: httpx.Client, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.post("/graphql", content=content, headers={"content-type": content_type})

    assert response.status_code == status
    assert [e["extensions"]["code"] for e in assert_coded(response)["errors"]] == [code]


def test_wrong_methods_and_paths_get_coded_json_errors(client: httpx.Client) -> None:
    wrong_method = client.put("/graphql", content=b"{}")
    wrong_path = client.get("/nothing-here")

    assert wrong_method.status_code == 405
    assert assert_coded(wrong_method)["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert wrong_path.status_code == 404
    assert assert_coded(wrong_path)["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_an_oversized_body_is_refused_before_parsing(client: httpx.Client) -> None:
    padding = "x" * (300 * 1024)
    declared = client.post("/graphql", json={"query": "{ __typename }", "extensions": padding})

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "{ __typename }", "padding": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    streamed = client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert assert_coded(response)["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
GRAPHQL_PIECES = [*'{}()[]:$!@.,"# \n', "query", "mutation", "asyncQuery", "asyncResult", "id", "1"]
SUBMIT = "mutation($q: String!, $a: Dictionary) { asyncQuery(query: $q, args: $a) { status } }"
graphqlish = st.lists(st.sampled_from(GRAPHQL_PIECES), max_size=30).map("".join)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"query": graphqlish},
        optional={"variables": json_values, "operationName": json_values},
    ).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"query": st.just(SUBMIT)},
        optional={
            "variables": st.fixed_dictionaries({"q": graphqlish}, optional={"a": json_values})
        },
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/graphql", ""]),
    accept=st.sampled_from(["*/*", "application/json", "application/graphql-response+json"]),
)
def test_generated_garbage_never_breaks_the_edge(
    client: httpx.Client, body: bytes, content_type: str, accept: str
) -> None:
    response = client.post(
        "/graphql", content=body, headers={"content-type": content_type, "accept": accept}
    )

    assert_coded(response)
