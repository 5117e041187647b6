"""asyncCancel end to end: a real uvicorn edge, executor, projector and nats-server."""

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext

from contracts.events import (
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationStarted,
)
from contracts.names import EXECUTOR_DURABLE, REQUESTS_STREAM, STREAM, event_subject
from services.common.event_log import EventLog
from services.common.settings import Settings
from services.edge.auth import issue_token
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.stack import eventually, running, serving_edge, stored_events
from tests.targets import CANCELLED_MARKS

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "cancel-test-secret-long-enough-for-hs256"
OWNER = ("acme", "alice")
STRANGER = ("acme", "bob")
SUBMIT = "mutation($q: String!) { asyncQuery(query: $q) { operationId status } }"
CANCEL = """mutation($id: String!) {
  asyncCancel(id: $id) { outcome operation { operationId status errorCode data } }
}"""
RESULT = "query($id: String!) { asyncResult(id: $id) { status errorCode data attempts } }"


@dataclasses.dataclass
class Caller:
    """Calls the edge as one principal."""

    client: Any
    settings: Settings

    async def call(
        self, who: tuple[str, str], query: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        """One GraphQL request as ``who``; its data (no errors allowed)."""
        token = issue_token(self.settings, tenant=who[0], user=who[1], ttl_s=600)
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def submit(self, query: str) -> str:
        """Queue ``query`` as the owner; its operation id."""
        data = await self.call(OWNER, SUBMIT, {"q": query})
        operation_id: str = data["asyncQuery"]["operationId"]
        return operation_id

    async def cancel(self, operation_id: str, who: tuple[str, str] = OWNER) -> Any:
        """asyncCancel as ``who``."""
        return (await self.call(who, CANCEL, {"id": operation_id}))["asyncCancel"]

    async def result(self, operation_id: str) -> Any:
        """asyncResult as the owner."""
        return (await self.call(OWNER, RESULT, {"id": operation_id}))["asyncResult"]

    async def reaches(self, operation_id: str, status: str, timeout_s: float = 15.0) -> Any:
        """The owner's result once it has ``status``."""

        async def probe() -> Any:
            result = await self.result(operation_id)
            return result if result["status"] == status else None

        return await eventually(probe, timeout_s=timeout_s, what=f"{operation_id} {status}")


@pytest.fixture
def cancel_settings(settings: Settings) -> Settings:
    """JWT principals, and the test target with its cancellable wait."""
    return settings.replace(jwt_secret=SECRET, target_schema="tests.targets:schema")


@pytest.fixture
async def edge(cancel_settings: Settings) -> AsyncIterator[Caller]:
    """The edge and the projector; each test decides when an executor runs."""
    async with (
        running(create_projector(cancel_settings)),
        serving_edge(cancel_settings) as client,
    ):
        yield Caller(client=client, settings=cancel_settings)


async def events_of(js: JetStreamContext, operation_id: str) -> list[OperationEvent]:
    """Every stored event of one operation."""
    return [event for _, event in await stored_events(js) if event.operation_id == operation_id]


def count(events: list[OperationEvent], kind: type[OperationEvent]) -> int:
    """How many of ``events`` are of ``kind``."""
    return sum(isinstance(event, kind) for event in events)


async def executor_caught_up(js: JetStreamContext) -> None:
    """Wait until the executor has taken and answered every request."""

    async def idle() -> bool | None:
        info = await js.consumer_info(REQUESTS_STREAM, EXECUTOR_DURABLE)
        return True if info.num_pending == 0 and info.num_ack_pending == 0 else None

    await eventually(idle, what="the executor answering every request")


def wait(seconds: float, mark: str) -> str:
    """A document for the test target's cancellable wait."""
    return f'{{ waitCancellable(seconds: {seconds}, mark: "{mark}") }}'


async def test_a_queued_operation_ends_cancelled_at_once_and_never_runs(
    edge: Caller, cancel_settings: Settings, js: JetStreamContext
) -> None:
    operation_id = await edge.submit(wait(0.01, "queued"))

    answer = await edge.cancel(operation_id)

    assert answer["outcome"] == "CANCELLED"
    assert answer["operation"]["status"] == "ERROR"
    assert answer["operation"]["errorCode"] == "CANCELLED"
    # Executors that come back later see it ended and never start it.
    async with running(create_executor(cancel_settings)):
        await executor_caught_up(js)
    events = await events_of(js, operation_id)
    assert count(events, OperationStarted) == 0
    assert count(events, OperationCompleted) == 0
    assert [e.code for e in events if isinstance(e, OperationFailed)] == ["CANCELLED"]
    assert "queued" not in CANCELLED_MARKS
    assert (await edge.result(operation_id))["errorCode"] == "CANCELLED"
    # The edge stored that ending, and its CloudEvents source says so.
    tenant = events[0].tenant
    ending = await js.get_last_msg(STREAM, event_subject(tenant, operation_id, "failed"))
    assert (ending.headers or {}).get("ce-source") == "asyncgate/edge"


async def test_a_cancel_request_alone_ends_the_operation_when_an_executor_takes_it(
    edge: Caller, cancel_settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    # The edge stored the cancel request but not the ending (it died in between).
    operation_id = await edge.submit(wait(0.01, "asked"))
    [requested] = await events_of(js, operation_id)
    await event_log.append(
        OperationCancelRequested(
            operation_id=operation_id,
            tenant=requested.tenant,
            principal=requested.principal,
            trace_id=requested.trace_id,
        ),
        msg_id=f"{operation_id}.cancel_requested",
    )

    async with running(create_executor(cancel_settings)):
        result = await edge.reaches(operation_id, "ERROR")

    assert result["errorCode"] == "CANCELLED"
    assert result["attempts"] == 0
    assert count(await events_of(js, operation_id), OperationStarted) == 0


async def test_a_running_operation_is_cancelled_in_its_executor_within_a_second(
    edge: Caller, cancel_settings: Settings, js: JetStreamContext
) -> None:
    async with running(create_executor(cancel_settings)):
        operation_id = await edge.submit(wait(30, "running"))
        await edge.reaches(operation_id, "RUNNING")

        asked = time.monotonic()
        answer = await edge.cancel(operation_id)
        result = await edge.reaches(operation_id, "ERROR", timeout_s=5)
        took = time.monotonic() - asked

    assert answer["outcome"] in ("CANCELLING", "CANCELLED")
    assert result["errorCode"] == "CANCELLED"
    assert took < 1.0, f"cancelling took {took:.2f} s"
    # The resolver itself saw the cancellation, and nothing completed.
    assert "running" in CANCELLED_MARKS
    events = await events_of(js, operation_id)
    assert count(events, OperationCompleted) == 0
    assert count(events, OperationStarted) == 1


async def test_a_final_operation_is_left_as_it_was(
    edge: Caller, cancel_settings: Settings, js: JetStreamContext
) -> None:
    async with running(create_executor(cancel_settings)):
        operation_id = await edge.submit(wait(0, "done"))
        before = await edge.reaches(operation_id, "SUCCESS")

    answer = await edge.cancel(operation_id)

    assert answer["outcome"] == "ALREADY_FINAL"
    assert answer["operation"]["status"] == "SUCCESS"
    assert json.loads(answer["operation"]["data"]) == {"data": {"waitCancellable": "done"}}
    assert await edge.result(operation_id) == before
    assert count(await events_of(js, operation_id), OperationCancelRequested) == 0


async def test_someone_elses_operation_answers_as_a_missing_one(
    edge: Caller, js: JetStreamContext
) -> None:
    operation_id = await edge.submit(wait(0.01, "not-bobs"))

    theirs = await edge.cancel(operation_id, who=STRANGER)
    missing = await edge.cancel("0b3f8f2e-6d0a-4c1e-9a55-3b6d2f1c9e77", who=STRANGER)

    assert theirs is None
    assert missing is None
    assert (await edge.result(operation_id))["status"] == "QUEUED"
    assert [type(e) for e in await events_of(js, operation_id)] != []
    assert count(await events_of(js, operation_id), OperationCancelRequested) == 0


async def test_cancelling_twice_is_harmless(
    edge: Caller, cancel_settings: Settings, js: JetStreamContext
) -> None:
    queued = await edge.submit(wait(0.01, "twice-queued"))
    first, second = await edge.cancel(queued), await edge.cancel(queued)
    async with running(create_executor(cancel_settings)):
        running_id = await edge.submit(wait(30, "twice-running"))
        await edge.reaches(running_id, "RUNNING")
        await edge.cancel(running_id)
        again = await edge.cancel(running_id)
        await edge.reaches(running_id, "ERROR", timeout_s=5)
        await executor_caught_up(js)

    assert first["outcome"] == second["outcome"] == "CANCELLED"
    assert again["outcome"] in ("CANCELLING", "CANCELLED")
    for operation_id in (queued, running_id):
        events = await events_of(js, operation_id)
        assert count(events, OperationCancelRequested) == 1
        assert [e.code for e in events if isinstance(e, OperationFailed)] == ["CANCELLED"]
    assert (await edge.result(running_id))["errorCode"] == "CANCELLED"
