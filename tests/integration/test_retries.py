"""Retries by error class against a real HTTP action handler, a real uvicorn edge, executor,
projector and nats-server: a passing failure is tried again after a back-off, a refusal never."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.events import OperationAttemptFailed, OperationStarted
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.integration.test_actions import queue, result
from tests.integration.test_deadlines import final_state, operation_of, submit
from tests.stack import graphql, running, serving, serving_edge, stored_events

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

ATTEMPTS = 3
BACKOFF_S = 0.1

ACTIONS_GRAPHQL = """
type Mutation {
  order_flaky(input: order_input!): order_output
  order_refused(input: order_input!): order_output
  order_down(input: order_input!): order_output
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


def actions_yaml(handler_url: str) -> str:
    """Every action retried up to ATTEMPTS times, BACKOFF_S apart at first."""
    lines = ["actions:"]
    for name in ("flaky", "refused", "down"):
        lines += [
            f"  - name: order_{name}",
            "    definition:",
            "      kind: asynchronous",
            f"      handler: {handler_url}/{name}",
            f"      retry: {{attempts: {ATTEMPTS}, backoff: {BACKOFF_S}}}",
        ]
    return "\n".join(lines) + "\n"


class FlakyHandler:
    """Answers 503 twice then 200 (flaky), 400 (refused), or 503 always (down); counts calls
    and the attempt header of each."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.attempt_headers: list[tuple[str, str]] = []

    async def answer(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.calls[name] += 1
        self.attempt_headers.append((name, request.headers.get("asyncgate-attempt", "")))
        if name == "refused":
            return JSONResponse({"message": "out of stock", "code": "OUT_OF_STOCK"}, 400)
        if name == "down" or self.calls[name] <= 2:
            return JSONResponse({"message": "try later"}, 503)
        return JSONResponse({"order_id": "o-3", "total": 3.0})

    def app(self) -> Starlette:
        """The handler as an ASGI app."""
        return Starlette(routes=[Route("/{name}", self.answer, methods=["POST"])])


@pytest.fixture
async def handler() -> AsyncIterator[tuple[FlakyHandler, str]]:
    """The flaky handler behind a real uvicorn server."""
    recorder = FlakyHandler()
    async with serving(recorder.app(), free_port()) as url:
        yield recorder, url


@pytest.fixture
async def stack(
    settings: Settings, tmp_path: Path, handler: tuple[FlakyHandler, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole stack with the retried actions."""
    (tmp_path / "actions.graphql").write_text(ACTIONS_GRAPHQL)
    (tmp_path / "actions.yaml").write_text(actions_yaml(handler[1]))
    settings = settings.replace(actions_file=tmp_path / "actions.yaml")
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


async def operation(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    """What asyncResult says of the operation."""
    response = await graphql(
        client, f'{{ asyncResult(id: "{operation_id}") {{ status attempts errorCode }} }}'
    )
    state: dict[str, Any] = response["data"]["asyncResult"]
    return state


async def events_of(js: JetStreamContext, operation_id: str) -> list[str]:
    """The types of the operation's stored events, in order."""
    return [type(e).__name__ for _, e in await stored_events(js) if e.operation_id == operation_id]


async def test_a_handler_answering_503_twice_succeeds_on_the_third_attempt(
    stack: httpx.AsyncClient, handler: tuple[FlakyHandler, str], js: JetStreamContext
) -> None:
    action_id = await queue(stack, "order_flaky")

    state = await result(stack, "order_flaky", action_id, "output { order_id } errors")

    assert state == {"output": {"order_id": "o-3"}, "errors": None}
    assert handler[0].calls["flaky"] == ATTEMPTS
    assert [a for n, a in handler[0].attempt_headers if n == "flaky"] == ["1", "2", "3"]
    assert await operation(stack, action_id) == {
        "status": "SUCCESS",
        "attempts": ATTEMPTS,
        "errorCode": None,
    }
    started = OperationStarted.__name__
    failed = OperationAttemptFailed.__name__
    assert await events_of(js, action_id) == [
        "OperationRequested",
        *[started, failed] * 2,
        started,
        "OperationCompleted",
    ]


async def test_a_handler_refusing_with_400_is_called_once_and_ends_with_its_error(
    stack: httpx.AsyncClient, handler: tuple[FlakyHandler, str], js: JetStreamContext
) -> None:
    action_id = await queue(stack, "order_refused")

    state = await result(stack, "order_refused", action_id, "output { order_id } errors")
    await asyncio.sleep(BACKOFF_S * 4)  # long enough for a retry that must not come

    # The handler's code is in Hasura's errors; errorCode is asyncgate's class of the failure.
    assert (state["errors"]["code"], state["errors"]["error"]) == ("OUT_OF_STOCK", "out of stock")
    assert handler[0].calls["refused"] == 1
    assert await operation(stack, action_id) == {
        "status": "ERROR",
        "attempts": 1,
        "errorCode": "ACTION_REFUSED",
    }
    assert "OperationAttemptFailed" not in await events_of(js, action_id)


async def test_a_handler_answering_503_forever_ends_after_the_configured_attempts(
    stack: httpx.AsyncClient, handler: tuple[FlakyHandler, str]
) -> None:
    action_id = await queue(stack, "order_down")

    state = await result(stack, "order_down", action_id, "output { order_id } errors")
    await asyncio.sleep(BACKOFF_S * 8)  # long enough for a retry that must not come

    assert (state["errors"]["error"], state["errors"]["code"]) == ("internal error", "unexpected")
    assert handler[0].calls["down"] == ATTEMPTS
    assert await operation(stack, action_id) == {
        "status": "ERROR",
        "attempts": ATTEMPTS,
        "errorCode": "ACTION_HANDLER_FAILED",
    }


async def test_an_async_query_timing_out_is_retried_by_the_server_default(
    settings: Settings, js: JetStreamContext
) -> None:
    retried = settings.replace(retry_attempts=2, retry_backoff_s=BACKOFF_S)
    async with (
        running(create_projector(retried)),
        running(create_executor(retried)),
        serving_edge(retried) as client,
    ):
        body = await submit(client, "{ slowReport(seconds: 20) }", run_for=1)
        state = await final_state(client, operation_of(body))
        operation_id = operation_of(body)
        assert await operation(client, operation_id) == {
            "status": "ERROR",
            "attempts": 2,
            "errorCode": "TIMEOUT",
        }
        # A GraphQL error is final however many attempts are allowed.
        broken = operation_of(await submit(client, "{ slowReport(seconds: -1) }"))
        await final_state(client, broken)
        assert (await operation(client, broken))["attempts"] == 1

    assert state["errorCode"] == "TIMEOUT"
    assert (await events_of(js, operation_id)).count("OperationAttemptFailed") == 1
