"""At least once, honestly: an action whose executor is killed mid-call reaches its handler
again with the same Idempotency-Key, and an operation whose every attempt is lost still ends."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.events import OperationStarted
from services.common.nats_server import free_port
from tests.faults.conftest import FAST_RECOVERY, inspector
from tests.stack import eventually, graphql, serving, stored_events
from tests.support.audit import audit, submit_many
from tests.support.nats_servers import NatsServer
from tests.support.processes import ServiceStack

pytestmark = [pytest.mark.faults, pytest.mark.nats, pytest.mark.e2e]

ACTIONS_GRAPHQL = """
type Mutation {
  charge(input: charge_input!): charge_output
}

input charge_input {
  amount: Int!
}

type charge_output {
  charge_id: String!
}
"""


class PaymentHandler:
    """A real action handler that records every call's idempotency headers; the first call
    hangs (its executor is about to die), later ones answer at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str | None]] = []
        self.first_call = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, request: Request) -> Response:
        self.calls.append(
            (request.headers.get("idempotency-key"), request.headers.get("asyncgate-attempt"))
        )
        if len(self.calls) == 1:
            self.first_call.set()
            await self.release.wait()  # its caller is killed meanwhile
        return JSONResponse({"charge_id": f"ch-{request.headers.get('idempotency-key')}"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/charge", self.charge, methods=["POST"])])


async def test_an_action_whose_executor_dies_mid_call_is_called_again_with_the_same_key(
    server: NatsServer, tmp_path: Path
) -> None:
    handler = PaymentHandler()
    async with serving(handler.app(), free_port()) as handler_url:
        (tmp_path / "actions.graphql").write_text(ACTIONS_GRAPHQL, encoding="utf-8")
        actions = tmp_path / "actions.yaml"
        actions.write_text(
            "actions:\n  - name: charge\n    definition:\n      kind: asynchronous\n"
            f"      handler: {handler_url}/charge\n      timeout: 90\n",
            encoding="utf-8",
        )
        env = FAST_RECOVERY | {"ASYNCGATE_ACTIONS_FILE": str(actions)}
        async with (
            ServiceStack(server.url, tmp_path / "services", env) as stack,
            httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client,
        ):
            queued = await graphql(client, "mutation { charge(input: {amount: 5}) }")
            action_id = queued["data"]["charge"]
            await asyncio.wait_for(handler.first_call.wait(), 15)
            stack.executor.kill()
            stack.executor.start()

            async def answered() -> dict[str, Any] | None:
                read = await graphql(
                    client,
                    "query($id: uuid!) { charge(id: $id) { output { charge_id } errors } }",
                    {"id": action_id},
                )
                found: dict[str, Any] = read["data"]["charge"]
                return found if found["output"] or found["errors"] else None

            result = await eventually(answered, timeout_s=30, what="the action's output")
            handler.release.set()

    assert handler.calls == [(action_id, "1"), (action_id, "2")]
    assert result == {"output": {"charge_id": f"ch-{action_id}"}, "errors": None}


async def test_an_operation_whose_every_attempt_is_lost_ends_as_attempts_exhausted(
    server: NatsServer, tmp_path: Path
) -> None:
    env = FAST_RECOVERY | {"ASYNCGATE_EXECUTOR_MAX_ATTEMPTS": "2"}
    async with ServiceStack(server.url, tmp_path / "services", env) as stack:
        look = await inspector([server.url])
        seen = await submit_many(stack.base_url, "{ slowReport(seconds: 60) }", count=1, clients=1)
        for attempt in (1, 2):

            async def started(attempt: int = attempt) -> bool | None:
                events = [event for _, event in await stored_events(look.js)]
                attempts = {e.attempt for e in events if isinstance(e, OperationStarted)}
                return True if attempt in attempts else None

            await eventually(started, what=f"attempt {attempt} running")
            stack.executor.kill()
            stack.executor.start()
        report = await audit(look.js, seen.accepted, timeout_s=30)
        await look.nc.close()

    assert report.problems() == []
    assert report.error_codes == {
        "ATTEMPTS_EXHAUSTED: no attempt finished: the executors running it were lost 2 times": 1
    }
    assert report.attempts == {2: 1}
