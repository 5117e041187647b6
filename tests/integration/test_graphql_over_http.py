"""GraphQL over HTTP as the spec's clients expect: the response media type follows Accept, a
request that never ran is a 400 in application/graphql-response+json, a body in another media
type is a 415, and graphql-http's server audit finds nothing to warn about. Through a real
uvicorn edge and a real nats-server."""

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import edge_in_background
from tests.support.node_tools import SCRIPTS, node_modules, node_or_skip

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture(scope="module")
def edge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an edge that lives for this module."""
    with edge_in_background(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture
def client(edge_url: str) -> Iterator[httpx.Client]:
    """A synchronous HTTP client of the module's edge."""
    with httpx.Client(base_url=edge_url, timeout=10) as http:
        yield http


def post(client: httpx.Client, accept: str | None, body: dict[str, Any]) -> httpx.Response:
    """POST a GraphQL request as JSON, with ``accept`` as the Accept header (None: none)."""
    headers = {"content-type": "application/json"}
    request = client.build_request("POST", "/graphql", content=json.dumps(body), headers=headers)
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    return client.send(request)


def codes(response: httpx.Response) -> list[str]:
    """The error codes of a GraphQL response."""
    return [error["extensions"]["code"] for error in response.json()["errors"]]


def media_type(response: httpx.Response) -> str:
    """The response's media type, without parameters."""
    return response.headers["content-type"].split(";")[0]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
    ],
)
def test_the_answer_comes_in_the_media_type_the_client_accepts(
    client: httpx.Client, accept: str | None, expected: str
) -> None:
    response = post(client, accept, {"query": "{ __typename }"})

    assert response.status_code == 200
    assert media_type(response) == expected
    assert response.json()["data"] == {"__typename": "Query"}


REQUESTS_THAT_NEVER_RAN = [
    ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
    (
        {"query": "query($id: String!) { asyncResult(id: $id) { status } }", "variables": {}},
        "BAD_USER_INPUT",
    ),
]


@pytest.mark.parametrize(("body", "code"), REQUESTS_THAT_NEVER_RAN)
def test_a_request_that_never_ran_is_a_400_without_data_in_graphql_response_json(
    client: httpx.Client, body: dict[str, Any], code: str
) -> None:
    response = post(client, GRAPHQL_RESPONSE, body)

    assert response.status_code == 400
    assert media_type(response) == GRAPHQL_RESPONSE
    assert "data" not in response.json()
    assert codes(response) == [code]


@pytest.mark.parametrize(("body", "code"), REQUESTS_THAT_NEVER_RAN)
def test_a_request_that_never_ran_stays_a_200_in_application_json(
    client: httpx.Client, body: dict[str, Any], code: str
) -> None:
    response = post(client, "application/json", body)

    assert response.status_code == 200
    assert media_type(response) == "application/json"
    assert response.json()["data"] is None
    assert codes(response) == [code]


def test_a_field_error_is_a_200_with_data_in_either_media_type(client: httpx.Client) -> None:
    body = {"query": '{ asyncResult(id: "not an id") { status } }'}

    for accept in (GRAPHQL_RESPONSE, "application/json"):
        response = post(client, accept, body)
        assert response.status_code == 200, accept
        assert response.json()["data"] == {"asyncResult": None}
        assert codes(response) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/graphql",
        GRAPHQL_RESPONSE,
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        None,
    ],
)
def test_a_body_in_another_media_type_is_a_415(
    client: httpx.Client, content_type: str | None
) -> None:
    request = client.build_request("POST", "/graphql", content=b'{"query": "{ __typename }"}')
    if content_type is not None:
        request.headers["content-type"] = content_type
    request.headers["accept"] = f"{GRAPHQL_RESPONSE}, application/json"
    response = client.send(request)

    assert response.status_code == 415
    assert response.headers["accept"] == "application/json"
    assert media_type(response) == GRAPHQL_RESPONSE
    assert codes(response) == ["UNSUPPORTED_MEDIA_TYPE"]


def test_json_with_a_charset_is_json(client: httpx.Client) -> None:
    response = client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )

    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


def test_the_graphql_over_http_audit_has_no_errors_and_no_warnings(edge_url: str) -> None:
    node = node_or_skip()
    modules = node_modules()
    audit = subprocess.run(
        [node, SCRIPTS / "graphql_http_audit.cjs", f"{edge_url}/graphql"],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results = json.loads(audit.stdout)

    not_ok = [
        f"{r['id']} {r['status']}: {r['name']} ({r.get('reason')})"
        for r in results
        if r["status"] != "ok"
    ]
    assert len(results) >= 60, "the audit ran fewer checks than graphql-http 1.23 has"
    assert not_ok == []
