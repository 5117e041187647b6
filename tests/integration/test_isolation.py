"""Nobody reads, lists or follows an operation that is not theirs; with authentication on,
through a real uvicorn edge, executor, projector, nats-server and demo action handler."""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from examples.actions import ACTIONS_FILE
from examples.actions.handler import app as demo_handler
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.edge.auth import issue_token
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.seed_requests import HASURA_SEED_MUTATION
from tests.stack import eventually, running, serving, serving_edge
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "isolation-test-secret-long-enough-for-hs256"
OWNER = ("acme", "alice@example.com")
PROBES = [
    ("acme", "bob"),  # same tenant, other user
    ("globex", "alice@example.com"),  # same user id, other tenant
    ("acme", "alice@example.com.*"),  # ids that would widen a subject or key filter raw
    ("acme", ">"),
    ("acme", "*"),
    ("acme.*", "alice@example.com"),
    ("*", "*"),
]


@dataclasses.dataclass
class Stack:
    """The running stack and a way to call it as anyone."""

    client: httpx.AsyncClient
    settings: Settings

    def token(self, tenant: str, user: str) -> str:
        """A valid token for ``user`` in ``tenant``."""
        return issue_token(self.settings, tenant=tenant, user=user, ttl_s=600)

    async def call(
        self, who: tuple[str, str], query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One GraphQL request as ``who``."""
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.token(*who)}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def follow(self, who: tuple[str, str], query: str) -> list[dict[str, Any]]:
        """Every message of one subscription as ``who``, until it completes."""
        url = str(self.client.base_url).replace("http://", "ws://") + "/graphql"
        init = {"Authorization": f"Bearer {self.token(*who)}"}
        async with graphql_websocket(url, init_payload=init) as ws:
            sid = await ws.start(query)
            return (await asyncio.wait_for(ws.collect({sid}), 20))[sid]


@pytest.fixture
async def stack(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """The whole stack with JWT authentication and the demo action."""
    demo_port = free_port()
    monkeypatch.setenv("ASYNCGATE_DEMO_HANDLER_URL", f"http://127.0.0.1:{demo_port}")
    settings = settings.replace(jwt_secret=SECRET, actions_file=ACTIONS_FILE)
    async with (
        serving(demo_handler, demo_port),
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield Stack(client=client, settings=settings)


async def owners_operations(stack: Stack) -> tuple[str, str]:
    """The owner's finished asyncQuery and action; returns their ids."""
    submitted = await stack.call(
        OWNER, 'mutation { asyncQuery(query: "{ whoami }") { operationId } }'
    )
    operation_id = submitted["data"]["asyncQuery"]["operationId"]
    queued = await stack.call(
        OWNER, HASURA_SEED_MUTATION, {"order_input": {"product_id": "p", "quantity": 1}}
    )
    action_id = queued["data"]["place_order"]

    async def both_done() -> bool | None:
        listed = await stack.call(OWNER, "{ asyncRequests { status } }")
        statuses = [item["status"] for item in listed["data"]["asyncRequests"]]
        return True if statuses == ["SUCCESS", "SUCCESS"] else None

    await eventually(both_done, what="the owner's operations finishing")
    return operation_id, action_id


async def test_the_owner_sees_their_operations_run_as_themselves(stack: Stack) -> None:
    operation_id, action_id = await owners_operations(stack)

    result = await stack.call(
        OWNER, "query($id: String!) { asyncResult(id: $id) { data } }", {"id": operation_id}
    )
    action = await stack.call(OWNER, f'{{ place_order(id: "{action_id}") {{ output }} }}')

    assert json.loads(result["data"]["asyncResult"]["data"]) == {
        "data": {"whoami": "alice@example.com"}
    }
    assert action["data"]["place_order"]["output"]["placed_by"] == "alice@example.com"


@pytest.mark.parametrize("prober", PROBES)
async def test_anyone_else_finds_nothing(stack: Stack, prober: tuple[str, str]) -> None:
    operation_id, action_id = await owners_operations(stack)

    read = await stack.call(
        prober, "query($id: String!) { asyncResult(id: $id) { status } }", {"id": operation_id}
    )
    listed = await stack.call(prober, "{ asyncRequests { operationId } }")
    action = await stack.call(prober, f'{{ place_order(id: "{action_id}") {{ output errors }} }}')
    followed = await stack.follow(
        prober, f'subscription {{ asyncResult(id: "{operation_id}") {{ status data }} }}'
    )
    followed_action = await stack.follow(
        prober, f'subscription {{ place_order(id: "{action_id}") {{ output }} }}'
    )

    assert read == {"data": {"asyncResult": None}, "extensions": read["extensions"]}
    assert listed["data"] == {"asyncRequests": []}
    assert action["data"] == {"place_order": None}
    assert [m["payload"]["data"] for m in followed] == [{"asyncResult": None}]
    assert [m["payload"]["data"] for m in followed_action] == [{"place_order": None}]


async def test_unidentified_callers_are_refused_but_graphiql_still_loads(stack: Stack) -> None:
    anonymous = await stack.client.post("/graphql", json={"query": "{ asyncRequests { status } }"})
    forged = await stack.client.post(
        "/graphql",
        json={"query": "{ whoami }"},
        headers={"Authorization": "Bearer " + stack.token("acme", "x")[:-4] + "AAAA"},
    )
    page = await stack.client.get("/graphql", headers={"accept": "text/html"})

    for refused in (anonymous, forged):
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert page.status_code == 200


async def test_a_websocket_without_valid_credentials_is_closed(stack: Stack) -> None:
    url = str(stack.client.base_url).replace("http://", "ws://") + "/graphql"

    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with graphql_websocket(url, init_payload={"Authorization": "Bearer nope"}):
            pass

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
