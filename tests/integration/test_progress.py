"""Progress end to end: resolvers report through ``info.context.progress``, the executor
publishes throttled OperationProgressed events (the last report riding on the ending), the
projector folds them, asyncResult and its subscription show them. Real uvicorn edge, executor,
projector and nats-server."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.events import OperationCompleted, OperationProgressed, OperationStarted
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.executor.progress import FIRST_PUBLISH_AFTER_S, PUBLISH_EVERY_S
from services.projector.app import create_app as create_projector
from tests.stack import eventually, graphql, running, serving_edge, stored_events
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

FOLLOW = """subscription follow($id: String!) {
  asyncResult(id: $id) { status data progress { done total message } }
}"""
RESULT = "query($id: String!) { asyncResult(id: $id) { status progress { done total message } } }"


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Edge, executor and projector running the test target schema."""
    settings = settings.replace(target_schema="tests.targets:schema")
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


async def submit(client: httpx.AsyncClient, inner: str) -> str:
    """Queue ``inner``; return the operation id."""
    response = await graphql(
        client, "mutation($q: String!) { asyncQuery(query: $q) { operationId } }", {"q": inner}
    )
    return str(response["data"]["asyncQuery"]["operationId"])


async def test_a_subscriber_sees_progress_rise_step_by_step_before_the_final_state(
    stack: httpx.AsyncClient,
) -> None:
    operation_id = await submit(stack, "{ inSteps(steps: 6, pause: 0.4) }")
    url = str(stack.base_url).replace("http://", "ws://") + "/graphql"

    async with graphql_websocket(url) as ws:
        sid = await ws.start(FOLLOW, {"id": operation_id})
        messages = (await asyncio.wait_for(ws.collect({sid}), 30))[sid]
    received: list[dict[str, Any]] = [m["payload"]["data"]["asyncResult"] for m in messages]

    running_progress = [
        state["progress"]["done"]
        for state in received
        if state["status"] == "RUNNING" and state["progress"] is not None
    ]
    every_done = [state["progress"]["done"] for state in received if state["progress"]]
    assert len(set(running_progress)) >= 3, received
    assert every_done == sorted(every_done), "progress never goes backwards"
    final = received[-1]
    assert final["status"] == "SUCCESS"
    assert final["data"] == '{"data":{"inSteps":6}}'
    assert final["progress"] == {"done": 6, "total": 6, "message": "step 6"}
    assert all(state["status"] != "SUCCESS" for state in received[:-1])


async def test_a_thousand_quick_reports_become_a_handful_of_events_ending_with_the_last(
    stack: httpx.AsyncClient, js: JetStreamContext
) -> None:
    operation_id = await submit(stack, "{ reportingOften(times: 1000) }")

    async def finished() -> dict[str, Any] | None:
        state = (await graphql(stack, RESULT, {"id": operation_id}))["data"]["asyncResult"]
        return state if state["status"] == "SUCCESS" else None

    state = await eventually(finished, what="the operation's success")
    events = [
        (sequence, event)
        for sequence, event in await stored_events(js)
        if event.operation_id == operation_id
    ]
    reports = [(s, e) for s, e in events if isinstance(e, OperationProgressed)]
    [(ending_sequence, ending)] = [(s, e) for s, e in events if isinstance(e, OperationCompleted)]

    assert state["progress"] == {"done": 1000, "total": 1000, "message": None}
    assert len(reports) <= 5, [e.done for _, e in reports]
    # The last report is stored once: on the ending, or as the last event before it.
    last = ending.progress if ending.progress is not None else reports[-1][1]
    assert (last.done, last.report) == (1000, 1000)
    assert all(e.report < 1000 for _, e in reports) or ending.progress is None
    assert all(s < ending_sequence for s, _ in reports), "no progress stored after the ending"


async def test_an_operation_quicker_than_the_throttle_stores_its_last_report_on_its_ending(
    stack: httpx.AsyncClient, js: JetStreamContext
) -> None:
    operation_ids = [await submit(stack, "{ reportingOften(times: 10) }") for _ in range(5)]

    async def finished() -> bool | None:
        for operation_id in operation_ids:
            state = (await graphql(stack, RESULT, {"id": operation_id}))["data"]["asyncResult"]
            if state["status"] != "SUCCESS":
                return None
        return True

    await eventually(finished, what="the operations' success")
    events = [e for _, e in await stored_events(js)]
    endings = [e for e in events if isinstance(e, OperationCompleted)]
    # No progress event at all, though the first report came at once: each ending carries its
    # operation's last report, and asyncResult shows it.
    assert [e for e in events if isinstance(e, OperationProgressed)] == []
    assert sorted(e.operation_id for e in endings) == sorted(operation_ids)
    assert {(e.progress.done, e.progress.report) for e in endings if e.progress} == {(10, 10)}
    assert all(e.progress is not None for e in endings)
    state = (await graphql(stack, RESULT, {"id": operation_ids[0]}))["data"]["asyncResult"]
    assert state["progress"] == {"done": 10, "total": 10, "message": None}


async def test_progress_is_published_at_most_a_few_times_a_second(
    stack: httpx.AsyncClient, js: JetStreamContext
) -> None:
    # 60 reports over about 3 s: none published in the first FIRST_PUBLISH_AFTER_S, then
    # throttled, about one event per PUBLISH_EVERY_S.
    operation_id = await submit(stack, "{ inSteps(steps: 60, pause: 0.05) }")

    async def finished() -> bool | None:
        state = (await graphql(stack, RESULT, {"id": operation_id}))["data"]["asyncResult"]
        return True if state["status"] == "SUCCESS" else None

    await eventually(finished, what="the operation's success")
    events = [e for _, e in await stored_events(js) if e.operation_id == operation_id]
    reports = [e for e in events if isinstance(e, OperationProgressed)]
    [ending] = [e for e in events if isinstance(e, OperationCompleted)]
    [started] = [e for e in events if isinstance(e, OperationStarted)]
    elapsed_s = (reports[-1].occurred_at - reports[0].occurred_at).total_seconds()
    # (A little slack: the two times come from two clocks' readings of the same machine.)
    quiet_s = (reports[0].occurred_at - started.occurred_at).total_seconds()

    assert quiet_s >= FIRST_PUBLISH_AFTER_S - 0.05, quiet_s
    assert len(reports) <= elapsed_s / PUBLISH_EVERY_S + 2, len(reports)
    assert len(reports) >= 3
    assert [e.report for e in reports] == sorted(e.report for e in reports)
    last = ending.progress if ending.progress is not None else reports[-1]
    assert last.done == 60


async def test_the_edge_running_a_reporting_field_synchronously_discards_the_reports(
    stack: httpx.AsyncClient,
) -> None:
    response = await graphql(stack, "{ inSteps(steps: 3, pause: 0) }")

    assert response["data"] == {"inSteps": 3}
    assert "errors" not in response
