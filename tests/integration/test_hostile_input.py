"""Hostile input, as an attacker sends it: deep JSON, lone surrogates, invalid UTF-8, huge headers,
giant or deeply nested token claims, and WebSocket frames that are no protocol message. Every
answer is a coded 4xx, a GraphQL error with a code or a protocol close code, never a 5xx or a
Python message, and the edge keeps serving. Through a real uvicorn edge (authentication on, the
demo actions configured) and a real nats-server."""

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from examples.actions import ACTIONS_FILE
from tests.stack import PYTHON_DETAILS, edge_in_background, environment

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "hostile-input-test-secret-of-32-bytes-or-more"
DEEP = "[" * 5000 + "]" * 5000
SUBMIT = "mutation($q: String!) { asyncQuery(query: $q) { status } }"
PLACE_ORDER = "mutation($i: place_order_input!) { place_order(input: $i) }"


def token(claims: dict[str, Any]) -> str:
    """A valid HS256 token for ``claims`` (plus an expiry)."""
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


def signed_raw(payload: str) -> str:
    """A validly signed token whose payload is ``payload`` as it is (json.dumps cannot write
    what an attacker writes by hand)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(payload.encode())
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


AUTHORIZED = {"Authorization": "Bearer " + token({"sub": "mallory", "tenant": "t1"})}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An edge with authentication on and the demo actions; yields its base URL."""
    with (
        environment(ASYNCGATE_DEMO_HANDLER_URL="http://127.0.0.1:9"),  # never called here
        edge_in_background(
            tmp_path_factory.mktemp("nats"),
            jwt_secret=SECRET,
            actions_file=ACTIONS_FILE,
            max_active_per_user=0,
            min_start_interval_s=0,
        ) as url,
    ):
        yield url


@pytest.fixture
def client(edge: str) -> Iterator[httpx.Client]:
    """An HTTP client of the edge; after the test, the edge must still answer a normal request."""
    with httpx.Client(base_url=edge, timeout=10) as http:
        yield http
        alive = http.post("/graphql", json={"query": "{ __typename }"}, headers=AUTHORIZED)
        assert alive.json() == {
            "data": {"__typename": "Query"},
            "extensions": alive.json()["extensions"],
        }


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """A coded refusal with ``status``, carrying nothing of Python's."""
    assert response.status_code == status, response.text
    assert not [word for word in PYTHON_DETAILS if word in response.text], response.text
    codes = [error["extensions"]["code"] for error in response.json()["errors"]]
    assert codes == [code], response.text


BODIES = {
    "a body nested 1,000 deep": "[" * 1000 + "]" * 1000,
    "variables nested 5,000 deep": json.dumps({"query": SUBMIT})[:-1]
    + ', "variables": {"q": "{ __typename }", "deep": '
    + DEEP
    + "}}",
    "a lone surrogate in operationName": '{"query": "{ __typename }", "operationName": "\\ud800"}',
    "a lone surrogate in the query": '{"query": "{ __typename } # \\ud800"}',
    "a lone surrogate in an inner query": json.dumps({"query": SUBMIT})[:-1]
    + ', "variables": {"q": "{ __typename } # \\udc00"}}',
    "a lone surrogate in an action input": json.dumps({"query": PLACE_ORDER})[:-1]
    + ', "variables": {"i": {"product_id": "\\ud800", "quantity": 1}}}',
    "a number out of range": '{"query": "{ __typename }", "variables": {"n": 1e400}}',
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_unreadable_json_is_a_coded_bad_request(client: httpx.Client, body: str) -> None:
    response = client.post(
        "/graphql",
        content=body.encode(),
        headers={**AUTHORIZED, "content-type": "application/json"},
    )

    assert_refused(response, 400, "BAD_REQUEST")


def test_invalid_utf8_anywhere_in_the_body_is_a_coded_bad_request(client: httpx.Client) -> None:
    body = b'{"query": "{ __typename }", "operationName": "\xed\xa0\x80"}'

    response = client.post(
        "/graphql", content=body, headers={**AUTHORIZED, "content-type": "application/json"}
    )

    assert_refused(response, 400, "BAD_REQUEST")


def test_a_surrogate_escape_inside_a_graphql_string_is_a_parse_error(client: httpx.Client) -> None:
    inner = 'mutation { asyncQuery(query: "{ __typename } # \\ud800") { status } }'

    response = client.post("/graphql", json={"query": inner}, headers=AUTHORIZED)

    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


def test_huge_headers_are_refused_before_anything_reads_them(client: httpx.Client) -> None:
    response = client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={**AUTHORIZED, "x-padding": "a" * 100_000},
    )

    assert_refused(response, 431, "HEADERS_TOO_LARGE")


@pytest.mark.parametrize(
    "bearer",
    [
        # Just under the header limit (a larger token is refused as HEADERS_TOO_LARGE).
        token({"sub": "mallory", "https://hasura.io/jwt/claims": "[" * 20_000}),
        signed_raw('{"sub": "mallory", "exp": 9999999999, "deep": ' + DEEP + "}"),
        signed_raw('{"sub": "\\ud800", "exp": 9999999999}'),
    ],
    ids=["a giant stringified claims namespace", "claims nested 5,000 deep", "a surrogate sub"],
)
def test_hostile_tokens_never_break_the_edge(client: httpx.Client, bearer: str) -> None:
    response = client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {bearer}"},
    )

    assert response.status_code in (200, 401), response.text
    assert not [word for word in PYTHON_DETAILS if word in response.text], response.text
    if response.status_code == 401:
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def ws_url(edge: str) -> str:
    """The edge's WebSocket endpoint."""
    return edge.replace("http://", "ws://") + "/graphql"


@contextlib.contextmanager
def opened(edge: str, protocol: str) -> Iterator[ClientConnection]:
    """A connection past its connection_init handshake."""
    with connect(ws_url(edge), subprotocols=[protocol]) as ws:  # type: ignore[list-item]  # websockets' NewType
        ws.send(json.dumps({"type": "connection_init", "payload": AUTHORIZED}))
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
        yield ws


def close_code(ws: ClientConnection) -> int | None:
    """How the server closed the connection (None: it dropped it without a close frame)."""
    try:
        while True:
            ws.recv(timeout=5)
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code


FRAMES = {
    "an array": "[]",
    "null": "null",
    "a 5,000-deep array": DEEP,
    "an object without a type": "{}",
    "a lone surrogate": '{"type": "connection_init", "payload": {"x": "\\ud800"}}',
}
TRANSPORT_FRAMES = FRAMES | {
    "subscribe without a payload": '{"type": "subscribe", "id": "1", "payload": null}',
    "subscribe without an id": '{"type": "subscribe", "payload": {"query": "{ __typename }"}}',
}
LEGACY_FRAMES = FRAMES | {
    "start without anything": '{"type": "start"}',
    "start with variables that are not an object": (
        '{"type": "start", "id": "1", "payload": {"query": "{ a }", "variables": [1]}}'
    ),
}
CASES = [("graphql-transport-ws", name, frame) for name, frame in TRANSPORT_FRAMES.items()] + [
    ("graphql-ws", name, frame) for name, frame in LEGACY_FRAMES.items()
]


@pytest.mark.parametrize(
    ("protocol", "frame"), [(p, f) for p, _, f in CASES], ids=[f"{p}: {n}" for p, n, _ in CASES]
)
def test_a_frame_that_is_no_protocol_message_closes_the_socket_with_4400(
    edge: str, client: httpx.Client, protocol: str, frame: str
) -> None:
    with opened(edge, protocol) as ws:
        ws.send(frame)

        assert close_code(ws) == 4400


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_a_second_connection_init_closes_the_socket_with_4429(
    edge: str, client: httpx.Client, protocol: str
) -> None:
    intruder = {"Authorization": "Bearer " + token({"sub": "victim", "tenant": "t1"})}
    with opened(edge, protocol) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": intruder}))

        assert close_code(ws) == 4429


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("{ __typename }", "__typename"),
        ('mutation { asyncQuery(query: "{ __typename }") { status } }', "asyncQuery"),
    ],
    ids=["a query", "a mutation"],
)
def test_queries_and_mutations_over_legacy_graphql_ws_are_answered(
    edge: str, client: httpx.Client, document: str, field: str
) -> None:
    with opened(edge, "graphql-ws") as ws:
        ws.send(json.dumps({"type": "start", "id": "1", "payload": {"query": document}}))
        data = json.loads(ws.recv(timeout=5))
        complete = json.loads(ws.recv(timeout=5))

    assert data["type"] == "data"
    assert field in data["payload"]["data"]
    assert "errors" not in data["payload"]
    assert complete == {"type": "complete", "id": "1"}


def test_a_websocket_handshake_with_huge_headers_is_refused(edge: str) -> None:
    # Several lines of 6 KB: one line over 8 KB is dropped earlier, by the WebSocket parser.
    padding = {f"x-padding-{n}": "a" * 6_000 for n in range(8)}

    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(edge),
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]  # websockets' NewType
            additional_headers=padding,
        )

    assert refused.value.response.status_code == 403
