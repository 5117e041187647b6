"""asyncDelete end to end: a real uvicorn edge, executor, projector and nats-server."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts.events import OperationFailed
from contracts.names import PROJECTOR_DURABLE, REQUESTS_STREAM, view_key
from services.common.event_log import EventLog
from services.common.listing import Listing
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.projector.replay import rebuild, verify
from tests.integration.test_cancel import (
    OWNER,
    STRANGER,
    Caller,
    events_of,
    executor_caught_up,
    wait,
)
from tests.stack import eventually, projector_backlog, running, serving_edge, stored_views
from tests.targets import CANCELLED_MARKS

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "delete-test-secret-long-enough-for-hs256"
DELETE = "mutation($id: String!) { asyncDelete(id: $id) { operationId cancelled } }"
RESULT = "query($id: String!) { asyncResult(id: $id) { status } }"
LIST = "{ asyncRequests(first: 100) { operationId } }"


@pytest.fixture
def delete_settings(settings: Settings) -> Settings:
    """JWT principals, and the test target with its cancellable wait."""
    return settings.replace(jwt_secret=SECRET, target_schema="tests.targets:schema")


@pytest.fixture
async def edge(delete_settings: Settings) -> AsyncIterator[Caller]:
    """The edge and the projector; each test decides when an executor runs."""
    async with (
        running(create_projector(delete_settings)),
        serving_edge(delete_settings) as client,
    ):
        yield Caller(client=client, settings=delete_settings)


async def delete(edge: Caller, operation_id: str, who: tuple[str, str] = OWNER) -> Any:
    """asyncDelete as ``who``."""
    return (await edge.call(who, DELETE, {"id": operation_id}))["asyncDelete"]


async def result(edge: Caller, operation_id: str) -> Any:
    """asyncResult as the owner (null when there is none)."""
    return (await edge.call(OWNER, RESULT, {"id": operation_id}))["asyncResult"]


async def listed(edge: Caller) -> list[str]:
    """The ids asyncRequests lists for the owner."""
    return [op["operationId"] for op in (await edge.call(OWNER, LIST, {}))["asyncRequests"]]


async def test_a_deleted_operation_is_gone_for_every_reader_and_every_replay(
    edge: Caller, delete_settings: Settings, js: JetStreamContext, nc: NatsClient
) -> None:
    async with running(create_executor(delete_settings)):
        kept = await edge.submit(wait(0, "kept"))
        gone = await edge.submit(wait(0, "gone"))
        await edge.reaches(kept, "SUCCESS")
        await edge.reaches(gone, "SUCCESS")
    # Its request and its ending, and its started event when the attempt took longer than the
    # executor waits before storing one (services/executor/handlers.py).
    kept_events = await events_of(js, kept)

    answer = await delete(edge, gone)

    assert answer == {"operationId": gone, "cancelled": False}
    assert await result(edge, gone) is None
    assert await listed(edge) == [kept]
    assert await events_of(js, gone) == []
    assert len(kept_events) >= 2
    assert await events_of(js, kept) == kept_events  # untouched
    # A replay does not bring it back, and agrees with the bucket.
    verified = await verify(js)
    assert verified.differences == []
    assert {view.operation_id for view in verified.replay.views.values()} == {kept}
    listing = Listing.over(nc)
    try:
        rebuilt = await rebuild(nc, listing)
    finally:
        await listing.reads.close()
    assert (rebuilt.written, rebuilt.indexed) == (0, 0)
    assert await result(edge, gone) is None
    assert await listed(edge) == [kept]
    assert (await result(edge, kept))["status"] == "SUCCESS"


async def test_a_running_operation_is_cancelled_then_deleted(
    edge: Caller, delete_settings: Settings, js: JetStreamContext
) -> None:
    async with running(create_executor(delete_settings)):
        operation_id = await edge.submit(wait(30, "deleted-running"))
        await edge.reaches(operation_id, "RUNNING")

        answer = await delete(edge, operation_id)
        await executor_caught_up(js)

    assert answer == {"operationId": operation_id, "cancelled": True}
    assert "deleted-running" in CANCELLED_MARKS
    assert await result(edge, operation_id) is None
    assert await events_of(js, operation_id) == []
    assert await listed(edge) == []
    assert await stored_views(js) == {}


async def test_a_late_ending_after_the_delete_brings_nothing_back(
    edge: Caller, js: JetStreamContext, event_log: EventLog
) -> None:
    operation_id = await edge.submit(wait(0.01, "late"))
    [requested] = await events_of(js, operation_id)
    assert (await delete(edge, operation_id))["cancelled"] is True

    # An executor's ending stored after the purge (the edge waits for the ending, so only a
    # lost executor's much later one could come; stored here by hand).
    late = OperationFailed(
        operation_id=operation_id,
        tenant=requested.tenant,
        principal=requested.principal,
        trace_id=requested.trace_id,
        code="OPERATION_FAILED",
        error="late",
    )
    await event_log.append(late, msg_id=f"{operation_id}.late")

    async def folded() -> bool | None:
        return True if (await projector_backlog(js)).idle else None

    await eventually(folded, what="the projector folding every event")
    key = view_key(requested.tenant, requested.principal, operation_id)
    assert key not in await stored_views(js)
    assert await result(edge, operation_id) is None
    assert key not in (await verify(js)).replay.views


async def test_someone_elses_operation_answers_as_a_missing_one_and_stays(
    edge: Caller, js: JetStreamContext
) -> None:
    operation_id = await edge.submit(wait(0.01, "not-bobs-to-delete"))

    theirs = await delete(edge, operation_id, who=STRANGER)
    missing = await delete(edge, "0b3f8f2e-6d0a-4c1e-9a55-3b6d2f1c9e77", who=STRANGER)

    assert theirs is None
    assert missing is None
    assert (await result(edge, operation_id))["status"] == "QUEUED"
    assert len(await events_of(js, operation_id)) == 1
    assert await listed(edge) == [operation_id]


async def test_deleting_twice_is_harmless(
    edge: Caller, delete_settings: Settings, js: JetStreamContext
) -> None:
    queued = await edge.submit(wait(0.01, "deleted-twice"))

    first = await delete(edge, queued)
    second = await delete(edge, queued)
    # An executor coming later finds nothing to run.
    async with running(create_executor(delete_settings)):
        await executor_caught_up(js)

    assert first == {"operationId": queued, "cancelled": True}
    assert second is None
    assert await result(edge, queued) is None
    assert await events_of(js, queued) == []
    assert "deleted-twice" not in CANCELLED_MARKS


async def test_a_request_the_projector_holds_back_does_not_bring_a_deleted_operation_back(
    delete_settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    # The projector holds the request (waiting for its next event) and is behind by a burst of
    # other operations' events, so the delete's CANCELLED ending reaches it well after the
    # delete began: its view, folded from the held request, must not be written after the purge.
    holding = delete_settings.replace(projector_queued_view_delay_s=60.0, projector_concurrency=1)
    async with running(create_projector(holding)), serving_edge(holding) as client:
        edge = Caller(client=client, settings=holding)
        operation_id = await edge.submit(wait(0.01, "held"))
        [requested] = await events_of(js, operation_id)

        async def held() -> bool | None:
            info = await js.consumer_info(REQUESTS_STREAM, PROJECTOR_DURABLE)
            return True if info.num_pending == 0 and info.num_ack_pending == 1 else None

        await eventually(held, what="the projector holding the request")
        others = [
            OperationFailed(
                operation_id=f"other-{n}",
                tenant="t",
                principal="p",
                trace_id="x",
                code="X",
                error="x",
            )
            for n in range(300)
        ]
        await asyncio.gather(*(event_log.append(e, msg_id=e.operation_id) for e in others))
        assert (await delete(edge, operation_id))["cancelled"] is True

        async def folded() -> bool | None:
            return True if (await projector_backlog(js)).idle else None

        await eventually(folded, what="the projector folding every event")
        assert await result(edge, operation_id) is None
    # Stopped, the projector writes whatever it still holds: nothing of this operation.
    assert view_key(requested.tenant, requested.principal, operation_id) not in (
        await stored_views(js)
    )
