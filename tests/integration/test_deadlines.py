"""Time limits a client sets on asyncQuery: a start deadline (startWithin, or the server's
ASYNCGATE_START_WITHIN_S) and a run timeout (timeout, capped by ASYNCGATE_OPERATION_TIMEOUT_S)."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.events import OperationRequested, OperationStarted
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.stack import eventually, graphql, running, serving_edge, stored_events

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBMIT = """mutation($q: String!, $within: Int, $timeout: Int) {
  asyncQuery(query: $q, startWithin: $within, timeout: $timeout) { operationId }
}"""
RESULT = "query($id: String!) { asyncResult(id: $id) { status errorCode error } }"
QUICK = "{ slowReport(seconds: 0) }"


async def submit(
    client: httpx.AsyncClient,
    query: str = QUICK,
    *,
    within: int | None = None,
    run_for: int | None = None,
) -> dict[str, Any]:
    """asyncQuery with startWithin ``within`` and timeout ``run_for``; the whole answer."""
    return await graphql(client, SUBMIT, {"q": query, "within": within, "timeout": run_for})


def operation_of(body: dict[str, Any]) -> str:
    """The operation id a submit answered."""
    assert "errors" not in body, body
    return str(body["data"]["asyncQuery"]["operationId"])


async def final_state(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    """The operation's state once it is SUCCESS or ERROR."""

    async def ended() -> dict[str, Any] | None:
        state: dict[str, Any] = (await graphql(client, RESULT, {"id": operation_id}))["data"][
            "asyncResult"
        ]
        return state if state["status"] in {"SUCCESS", "ERROR"} else None

    return await eventually(ended, what=f"{operation_id} ending")


async def started_ids(js: JetStreamContext) -> set[str]:
    """The operations with a started event in the stream."""
    return {e.operation_id for _, e in await stored_events(js) if isinstance(e, OperationStarted)}


@pytest.mark.parametrize("server_default_s", [0, 1])
async def test_an_operation_not_started_in_time_expires_and_never_runs(
    settings: Settings, js: JetStreamContext, server_default_s: int
) -> None:
    settings = settings.replace(start_within_s=server_default_s)
    async with running(create_projector(settings)), serving_edge(settings) as client:
        # No executor runs while these wait.
        late = operation_of(await submit(client, within=1))
        unset = operation_of(await submit(client))
        roomy = operation_of(await submit(client, within=600))
        await asyncio.sleep(1.5)
        async with running(create_executor(settings)):
            states = {op: await final_state(client, op) for op in (late, unset, roomy)}

    assert states[late]["status"] == "ERROR"
    assert states[late]["errorCode"] == "EXPIRED"
    assert states[roomy]["status"] == "SUCCESS"
    # Without startWithin, the server's default decides (off: runs whenever it is taken).
    assert states[unset]["status"] == ("ERROR" if server_default_s else "SUCCESS")
    never_started = {late, unset} if server_default_s else {late}
    assert not never_started & await started_ids(js)
    requests = {
        e.operation_id: e for _, e in await stored_events(js) if isinstance(e, OperationRequested)
    }
    assert requests[roomy].start_by is not None
    assert (requests[unset].start_by is None) == (server_default_s == 0)


async def test_a_timeout_ends_a_run_early_and_the_servers_limit_caps_it(
    settings: Settings,
) -> None:
    slow = "{ slowReport(seconds: 20) }"
    async with (
        running(create_projector(settings)),
        serving_edge(settings) as client,
    ):
        async with running(create_executor(settings)):
            began = time.monotonic()
            own = await final_state(client, operation_of(await submit(client, slow, run_for=1)))
            own_s = time.monotonic() - began
        capped_settings = settings.replace(operation_timeout_s=1)
        async with running(create_executor(capped_settings)):
            began = time.monotonic()
            capped = await final_state(
                client, operation_of(await submit(client, slow, run_for=600))
            )
            capped_s = time.monotonic() - began

    assert (own["status"], own["errorCode"]) == ("ERROR", "TIMEOUT")
    assert "within 1 s" in own["error"]
    assert (capped["status"], capped["errorCode"]) == ("ERROR", "TIMEOUT")
    assert own_s < 10, own_s
    assert capped_s < 10, capped_s


async def test_a_limit_of_zero_or_less_is_refused_and_nothing_is_queued(
    settings: Settings, js: JetStreamContext
) -> None:
    async with serving_edge(settings) as client:
        answers = [
            await submit(client, within=0),
            await submit(client, within=-5),
            await submit(client, run_for=0),
            await submit(client, run_for=-1),
        ]
    codes = [body["errors"][0]["extensions"]["code"] for body in answers]
    assert codes == ["BAD_USER_INPUT"] * 4
    assert await stored_events(js) == []
