"""Hasura-style actions against real HTTP handlers, a real uvicorn edge, executor, projector and
nats-server: the seed's requests, an object output, and every way a handler can fail."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from contracts.events import OperationCompleted, OperationRequested
from examples.actions import ACTIONS_FILE
from examples.actions.handler import app as demo_handler
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.seed_requests import HASURA_SEED_ID, HASURA_SEED_MUTATION, HASURA_SEED_SUBSCRIPTION
from tests.stack import eventually, graphql, running, serving, serving_edge, stored_events
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

ACTIONS_GRAPHQL = """
type Mutation {
  order_ok(input: order_input!): order_output
  order_refused(input: order_input!): order_output
  order_crash(input: order_input!): order_output
  order_slow(input: order_input!): order_output
  order_stuck(input: order_input!): order_output
  order_garbage(input: order_input!): order_output
  order_wrong_shape(input: order_input!): order_output
  order_unreachable(input: order_input!): order_output
  order_now(input: order_input!): order_output
}

type Query {
  order_quote(product_id: String!): Float
}

input order_input {
  product_id: String!
  quantity: Int!
}

type order_output {
  order_id: String!
  total: Float!
}
"""

ASYNC_ACTIONS = (
    "ok",
    "refused",
    "crash",
    "slow",
    "stuck",
    "garbage",
    "wrong_shape",
    "unreachable",
)
# Long enough that only a cancel ends the call.
STUCK_TIMEOUT_S = 30


def actions_yaml(handler_url: str, unreachable_url: str) -> str:
    """actions.yaml for the test's handlers."""
    lines = ["actions:"]
    for name in ASYNC_ACTIONS:
        url = unreachable_url if name == "unreachable" else f"{handler_url}/{name}"
        lines += [
            f"  - name: order_{name}",
            "    definition:",
            "      kind: asynchronous",
            f"      handler: {url}",
            f"      timeout: {STUCK_TIMEOUT_S if name == 'stuck' else 0.5}",
            "      headers:",
            "        - name: x-handler-key",
            "          value_from_env: TEST_HANDLER_KEY",
        ]
    for name, kind in (("order_now", "synchronous"), ("order_quote", None)):
        lines += [f"  - name: {name}", "    definition:", f"      handler: {handler_url}/{name}"]
        lines += [f"      kind: {kind}"] if kind else []
    return "\n".join(lines) + "\n"


class Handler:
    """A real HTTP action handler with one route per behaviour, recording what it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def answer(self, request: Request) -> Response:  # noqa: PLR0911 (one answer a route)
        name = request.path_params["name"]
        self.calls.append((name, await request.json(), dict(request.headers)))
        match name:
            case "ok" | "order_now":
                return JSONResponse({"order_id": "o-1", "total": 12.5})
            case "order_quote":
                return JSONResponse(9.75)
            case "refused":
                return JSONResponse({"message": "out of stock", "code": "out-of-stock"}, 400)
            case "crash":
                return PlainTextResponse(
                    "Traceback (most recent call last): db password=hunter2", 500
                )
            case "slow":
                await asyncio.sleep(5)
                return JSONResponse({"order_id": "late", "total": 1})
            case "stuck":
                # Answers only once the caller has hung up, and records that it did.
                for _ in range(STUCK_TIMEOUT_S * 20):
                    if await request.is_disconnected():
                        self.calls.append(("stuck-abandoned", {}, {}))
                        break
                    await asyncio.sleep(0.05)
                return JSONResponse({"order_id": "never-read", "total": 1})
            case "garbage":
                return PlainTextResponse("{not json", 200)
            case _:
                return JSONResponse({"order_id": "o-2"})

    def app(self) -> Starlette:
        """The handler as an ASGI app."""
        return Starlette(routes=[Route("/{name}", self.answer, methods=["POST"])])


@pytest.fixture
async def handler() -> AsyncIterator[tuple[Handler, str]]:
    """The test handler behind a real uvicorn server."""
    recorder = Handler()
    async with serving(recorder.app(), free_port()) as url:
        yield recorder, url


@pytest.fixture
async def stack(
    settings: Settings,
    tmp_path: Path,
    handler: tuple[Handler, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole stack with the test's actions."""
    monkeypatch.setenv("TEST_HANDLER_KEY", "k-123")
    (tmp_path / "actions.graphql").write_text(ACTIONS_GRAPHQL)
    (tmp_path / "actions.yaml").write_text(
        actions_yaml(handler[1], f"http://127.0.0.1:{free_port()}/nobody-listens")
    )
    settings = settings.replace(actions_file=tmp_path / "actions.yaml")
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


async def queue(client: httpx.AsyncClient, action: str) -> str:
    """Call an async action; return its action id."""
    response = await graphql(
        client,
        f"mutation($i: order_input!) {{ {action}(input: $i) }}",
        {"i": {"product_id": "p-1", "quantity": 2}},
    )
    assert "errors" not in response, response
    action_id = str(response["data"][action])
    assert str(uuid.UUID(action_id)) == action_id
    return action_id


async def result(client: httpx.AsyncClient, action: str, action_id: str, selection: str) -> Any:
    """Query the action until it has output or errors."""

    async def done() -> dict[str, Any] | None:
        response = await graphql(client, f'{{ {action}(id: "{action_id}") {{ {selection} }} }}')
        state: dict[str, Any] = response["data"][action]
        return state if state["output"] is not None or state["errors"] is not None else None

    return await eventually(done, what=f"{action} finishing")


async def test_seed_mutation_and_subscription_return_the_id_then_push_the_output(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_port = free_port()
    monkeypatch.setenv("ASYNCGATE_DEMO_HANDLER_URL", f"http://127.0.0.1:{demo_port}")
    settings = settings.replace(actions_file=ACTIONS_FILE)
    async with (
        serving(demo_handler, demo_port),
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        queued = await graphql(
            client, HASURA_SEED_MUTATION, {"order_input": {"product_id": "p-7", "quantity": 3}}
        )
        action_id = queued["data"]["place_order"]
        url = str(client.base_url).replace("http://", "ws://") + "/graphql"
        async with graphql_websocket(url) as ws:
            seed_subscription = HASURA_SEED_SUBSCRIPTION.replace(HASURA_SEED_ID, action_id)
            sid = await ws.start(seed_subscription)
            messages = (await asyncio.wait_for(ws.collect({sid}), 20))[sid]
        query = await graphql(
            client, f'{{ place_order(id: "{action_id}") {{ id created_at output errors }} }}'
        )

    pushed = [message["payload"]["data"]["place_order"] for message in messages]
    assert pushed[0]["output"] is None
    final = pushed[-1]
    assert final["errors"] is None
    assert final["output"]["product_id"] == "p-7"
    assert final["output"]["quantity"] == 3
    assert final["output"]["status"] == "placed"
    answered = query["data"]["place_order"]
    assert answered["id"] == action_id
    assert answered["output"] == final["output"]
    assert answered["errors"] is None
    assert answered["created_at"].endswith("Z")


async def test_an_object_output_arrives_and_the_handler_gets_hasuras_payload(
    stack: httpx.AsyncClient, handler: tuple[Handler, str], js: JetStreamContext
) -> None:
    action_id = await queue(stack, "order_ok")

    state = await result(
        stack, "order_ok", action_id, "id created_at output { order_id total } errors"
    )

    assert state["output"] == {"order_id": "o-1", "total": 12.5}
    assert state["errors"] is None
    [(_, payload, headers)] = handler[0].calls
    assert payload["action"] == {"name": "order_ok"}
    assert payload["input"] == {"input": {"product_id": "p-1", "quantity": 2}}
    assert payload["session_variables"]["x-hasura-user-id"] == "anonymous"
    assert "order_ok" in payload["request_query"]
    assert headers["x-handler-key"] == "k-123"
    # So that a handler can recognise a repeated call of the same action (at least once).
    assert headers["idempotency-key"] == action_id
    assert headers["asyncgate-attempt"] == "1"
    listed = await graphql(stack, "{ asyncRequests { operationId status } }")
    assert listed["data"]["asyncRequests"] == [{"operationId": action_id, "status": "SUCCESS"}]
    # The terminal event names the action that ran, for services consuming the events.
    [completed] = [e for _, e in await stored_events(js) if isinstance(e, OperationCompleted)]
    assert completed.action == "order_ok"


# (action, Hasura's message and code in the action's errors, asyncgate's errorCode)
FAILURES = [
    ("order_refused", "out of stock", "out-of-stock", "ACTION_REFUSED"),
    (
        "order_crash",
        "not a valid json response from webhook",
        "unexpected",
        "ACTION_HANDLER_FAILED",
    ),
    ("order_slow", "http exception when calling webhook", "unexpected", "ACTION_TIMEOUT"),
    (
        "order_garbage",
        "not a valid json response from webhook",
        "unexpected",
        "ACTION_BAD_RESPONSE",
    ),
    (
        "order_wrong_shape",
        'field "total" expected in webhook response, but not found',
        "unexpected",
        "ACTION_BAD_RESPONSE",
    ),
    (
        "order_unreachable",
        "http exception when calling webhook",
        "unexpected",
        "ACTION_UNREACHABLE",
    ),
]


@pytest.mark.parametrize(("action", "expected"), FAILURES)
async def test_each_handler_failure_ends_in_its_own_clear_error_and_is_not_retried(
    stack: httpx.AsyncClient, handler: tuple[Handler, str], action: str, expected: tuple[str, ...]
) -> None:
    message, code, error_code = expected
    action_id = await queue(stack, action)

    state = await result(stack, action, action_id, "output { order_id } errors")
    await asyncio.sleep(0.3)
    read = await graphql(stack, f'{{ asyncResult(id: "{action_id}") {{ errorCode }} }}')

    # Hasura's async action errors: one stored error object, not a list.
    assert (state["errors"]["error"], state["errors"]["code"]) == (message, code)
    assert state["errors"]["path"] == "$"
    assert read["data"]["asyncResult"]["errorCode"] == error_code
    assert state["output"] is None
    assert "hunter2" not in json.dumps(state)
    assert "Traceback" not in json.dumps(state)
    calls = [name for name, _, _ in handler[0].calls]
    assert calls == ([] if action == "order_unreachable" else [action.removeprefix("order_")])


async def test_synchronous_actions_answer_inside_the_request(
    stack: httpx.AsyncClient, handler: tuple[Handler, str]
) -> None:
    mutation = await graphql(
        stack,
        'mutation { order_now(input: {product_id: "p", quantity: 1}) { order_id total } }',
    )
    query = await graphql(stack, '{ order_quote(product_id: "p") }')

    assert mutation["data"] == {"order_now": {"order_id": "o-1", "total": 12.5}}
    assert query["data"] == {"order_quote": 9.75}
    assert [name for name, _, _ in handler[0].calls] == ["order_now", "order_quote"]


async def test_another_actions_id_or_an_unknown_one_reads_null(stack: httpx.AsyncClient) -> None:
    action_id = await queue(stack, "order_ok")
    await result(stack, "order_ok", action_id, "output { order_id } errors")

    other = await graphql(stack, f'{{ order_refused(id: "{action_id}") {{ id }} }}')
    unknown = await graphql(stack, f'{{ order_ok(id: "{uuid.uuid4()}") {{ id }} }}')

    assert other["data"] == {"order_refused": None}
    assert unknown["data"] == {"order_ok": None}


async def test_cancelling_a_running_action_abandons_its_http_call(
    stack: httpx.AsyncClient, handler: tuple[Handler, str], js: JetStreamContext
) -> None:
    action_id = await queue(stack, "order_stuck")

    async def called() -> bool | None:
        return True if [name for name, _, _ in handler[0].calls] == ["stuck"] else None

    await eventually(called, what="the handler being called")
    cancelled = await graphql(stack, f'mutation {{ asyncCancel(id: "{action_id}") {{ outcome }} }}')
    state = await result(stack, "order_stuck", action_id, "output { order_id } errors")

    assert cancelled["data"]["asyncCancel"]["outcome"] in ("CANCELLING", "CANCELLED")
    assert state["output"] is None
    assert state["errors"]["code"] == "CANCELLED"

    async def hung_up() -> bool | None:
        return True if ("stuck-abandoned", {}, {}) in handler[0].calls else None

    await eventually(hung_up, timeout_s=5, what="the handler seeing the caller hang up")
    assert not [e for _, e in await stored_events(js) if isinstance(e, OperationCompleted)]


async def test_an_idempotency_key_queues_an_action_once(
    stack: httpx.AsyncClient, js: JetStreamContext
) -> None:
    mutation = "mutation($i: order_input!, $k: String) { order_ok(input: $i, idempotencyKey: $k) }"
    one = {"product_id": "p-1", "quantity": 2}

    async def send(inputs: dict[str, Any], key: str | None, header: str | None) -> dict[str, Any]:
        response = await stack.post(
            "/graphql",
            json={"query": mutation, "variables": {"i": inputs, "k": key}},
            headers={"Idempotency-Key": header} if header else {},
        )
        body: dict[str, Any] = response.json()
        return body

    first = await send(one, "order-1", None)
    by_header = await send(one, None, "order-1")
    other_input = await send({**one, "quantity": 3}, "order-1", None)

    assert by_header["data"]["order_ok"] == first["data"]["order_ok"]
    assert other_input["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    requests = [
        e for _, e in await stored_events(js) if e.operation_id == first["data"]["order_ok"]
    ]
    assert sum(isinstance(e, OperationRequested) for e in requests) == 1
