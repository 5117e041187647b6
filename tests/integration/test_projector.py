"""The projector against a real nats-server: an order-free fold, safe replicas, replayable views."""

import asyncio
import random
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.events import (
    ActionInvocation,
    Correlation,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    encode_event,
)
from contracts.lifecycle import fold
from contracts.names import (
    EVENT_STREAMS,
    PROJECTOR_DURABLE,
    VIEW_BUCKET,
    operation_subjects,
    view_key,
)
from contracts.view import OperationView, TaskStatus
from services.common.active_operations import EndedOperations
from services.common.event_log import EventLog
from services.common.metrics import ProjectorMetrics
from services.common.reply_inbox import ReplyInbox
from services.common.settings import Settings
from services.common.tracing import Tracing
from services.projector.app import create_app as create_projector
from services.projector.handlers import Projection
from services.projector.replay import rebuild_views, replay_views
from services.projector.view_writer import ViewWriter, request_lookup
from tests.stack import (
    dead_letters,
    eventually,
    projector_backlog,
    running,
    stored_events,
    stored_views,
)

pytestmark = pytest.mark.nats

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lifecycle(operation_id: str, *, fails: bool = False) -> list[OperationEvent]:
    """One operation's events: requested, two attempts, then its terminal event."""
    envelope: Correlation = {
        "operation_id": operation_id,
        "tenant": "t1",
        "principal": "u1",
        "trace_id": "trace",
    }
    terminal: OperationEvent = (
        OperationFailed(**envelope, code="X", error="broke", occurred_at=T0 + timedelta(seconds=3))
        if fails
        else OperationCompleted(
            **envelope,
            response={"data": {"n": operation_id}},
            occurred_at=T0 + timedelta(seconds=3),
        )
    )
    return [
        OperationRequested(**envelope, query="{ n }", occurred_at=T0),
        OperationStarted(**envelope, attempt=1, worker="a", occurred_at=T0 + timedelta(seconds=1)),
        OperationStarted(**envelope, attempt=2, worker="b", occurred_at=T0 + timedelta(seconds=2)),
        terminal,
    ]


async def publish_all(log: EventLog, events: list[OperationEvent]) -> None:
    """Store events in the given order, each as its own message."""
    for event in events:
        await log.append(event, msg_id=event.event_id)


def keyed(views: dict[str, OperationView]) -> dict[str, OperationView]:
    """Views from ``fold`` re-keyed like the bucket."""
    return {view_key(v.tenant, v.principal, v.operation_id): v for v in views.values()}


async def fold_one(writer: ViewWriter, event: OperationEvent, sequence: int) -> OperationView:
    """Fold one delivered event with the projector's writer; the view it stored."""
    view = await writer.apply(
        view_key(event.tenant, event.principal, event.operation_id), [(sequence, event)]
    )
    assert view is not None
    return view


async def test_duplicate_redelivered_and_out_of_order_events_leave_the_same_view(
    js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    events = lifecycle("op-1")
    await publish_all(event_log, events)
    stored = await stored_events(js)
    in_order = keyed(fold(stored))

    # Apply them the wrong way round, each one twice (a redelivery), into the real bucket, by
    # two writers in turn, as two projector replicas would (each remembering what it wrote).
    shuffled = list(reversed(stored)) + random.Random(7).sample(stored, len(stored))
    replicas = [ViewWriter(kv, ReplyInbox(event_log.nc)), ViewWriter(kv, ReplyInbox(event_log.nc))]
    for n, (sequence, event) in enumerate(shuffled):
        await fold_one(replicas[n % 2], event, sequence)

    assert await stored_views(js) == in_order
    [view] = in_order.values()
    assert view.status is TaskStatus.SUCCESS
    assert view.attempts == 2
    assert view.started_at == T0 + timedelta(seconds=1)
    assert view.last_sequence == stored[-1][0]


async def test_a_late_started_event_never_moves_a_finished_operation_back(
    js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    requested, started, _, completed = lifecycle("op-2")
    await publish_all(event_log, [requested, completed, started])
    writer = ViewWriter(kv, event_log.inbox)
    for sequence, event in await stored_events(js):
        await fold_one(writer, event, sequence)

    [view] = (await stored_views(js)).values()
    assert view.status is TaskStatus.SUCCESS
    assert view.started_at == started.occurred_at


async def test_two_projector_replicas_build_the_same_views_as_one_fold(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    settings = settings.replace(projector_concurrency=8)
    events = [e for n in range(40) for e in lifecycle(f"op-{n}", fails=n % 5 == 0)]
    await publish_all(event_log, events)
    expected = keyed(fold(await stored_events(js)))

    async with running(create_projector(settings)), running(create_projector(settings)):

        async def projected() -> dict[str, OperationView] | None:
            views = await stored_views(js)
            return views if views == expected else None

        await eventually(projected, what="both replicas projecting every event")

    statuses = {view.status for view in expected.values()}
    assert statuses == {TaskStatus.SUCCESS, TaskStatus.ERROR}


async def test_replaying_the_stream_rebuilds_identical_views(
    settings: Settings, nc: NatsClient, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    events = [e for n in range(25) for e in lifecycle(f"op-{n}", fails=n % 3 == 0)]
    await publish_all(event_log, events)
    replayed = await replay_views(js)
    async with running(create_projector(settings)):
        # The projector folds out of order: a view can be final before its starts are folded in,
        # so "every operation final" is not yet "every event folded".
        async def caught_up() -> dict[str, OperationView] | None:
            views = await stored_views(js)
            return views if views == replayed else None

        projected = await eventually(caught_up, what="the projector folding every event")

    assert len(projected) == 25
    assert {view.status for view in projected.values()} == {TaskStatus.SUCCESS, TaskStatus.ERROR}
    for key in projected:
        await kv.purge(key)
    assert await rebuild_views(nc) == 25
    assert await stored_views(js) == projected


async def _when_complete(js: JetStreamContext, count: int) -> dict[str, OperationView] | None:
    views = await stored_views(js)
    finished = [v for v in views.values() if v.status.is_terminal]
    return views if len(finished) == count else None


async def test_an_unreadable_event_is_set_aside_once_and_the_rest_is_projected(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    await js.publish("ops.events.t1.op-x.started", b'{"type": "started", "garbage": true}')
    await js.publish("ops.events.t1.op-y.completed", b"\xff not json")
    await publish_all(event_log, lifecycle("op-ok"))

    async with running(create_projector(settings)):
        await eventually(lambda: _when_complete(js, 1), what="the readable operation projected")
        letters = await eventually(
            lambda: _at_least(dead_letters(js), 2), what="both unreadable events set aside"
        )
        consumer = await projector_backlog(js)

    # Set aside concurrently, so in either order.
    reasons = {
        headers["Asyncgate-Original-Subject"]: headers["Asyncgate-Reason"] for _, headers in letters
    }
    assert set(reasons) == {"ops.events.t1.op-x.started", "ops.events.t1.op-y.completed"}
    assert "missing required field" in reasons["ops.events.t1.op-x.started"]
    assert "malformed" in reasons["ops.events.t1.op-y.completed"]
    assert consumer.ack_pending == 0
    assert consumer.redelivered == 0


async def _at_least(
    letters: Awaitable[list[tuple[str, dict[str, str]]]], count: int
) -> list[tuple[str, dict[str, str]]] | None:
    found = await letters
    return found if len(found) >= count else None


async def test_a_view_is_never_stored_without_its_request(
    js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    envelope: Correlation = {
        "operation_id": "act-1",
        "tenant": "t1",
        "principal": "u1",
        "trace_id": "t",
    }
    requested = OperationRequested(
        **envelope,
        query="mutation { place_order(input: {}) }",
        action=ActionInvocation(name="place_order", input={}),
        occurred_at=T0,
    )
    started = OperationStarted(
        **envelope, attempt=1, worker="w", occurred_at=T0 + timedelta(seconds=1)
    )
    await publish_all(event_log, [requested, started])
    [_, (started_sequence, _)] = await stored_events(js)

    # A replica folds the start before anyone has folded the request.
    writer = ViewWriter(kv, event_log.inbox, request_lookup(event_log))
    view = await fold_one(writer, started, started_sequence)

    assert view.action == "place_order"
    assert view.created_at == T0
    assert view.status is TaskStatus.RUNNING
    assert (await stored_views(js))["t1.u1.act-1"] == view


async def test_unusable_or_misplaced_events_are_set_aside_once_and_never_folded(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    requested, started, _, completed = lifecycle("op-real")
    await publish_all(event_log, [requested, started])
    envelope: Correlation = {
        "operation_id": "op-real",
        "tenant": "t1",
        "principal": "bad key*",
        "trace_id": "t",
    }
    bad_key = OperationRequested(**envelope, query="{ n }")
    await js.publish("ops.events.t1.op-real.requested", encode_event(bad_key))
    # A completion for op-real stored on another operation's request subject: a forgery.
    await js.publish("ops.events.t1.op-other.requested", encode_event(completed))

    async with running(create_projector(settings)):
        letters = await eventually(
            lambda: _at_least(dead_letters(js), 2), what="both events set aside"
        )
        await asyncio.sleep(1)  # time enough for any redelivery to show
        consumer = await projector_backlog(js)
        views = await stored_views(js)

    assert len(await dead_letters(js)) == 2
    reasons = sorted(headers["Asyncgate-Reason"] for _, headers in letters)
    assert "not usable as a view key" in reasons[1]
    assert "a completed event stored on a requested subject" in reasons[0]
    assert views["t1.u1.op-real"].status is TaskStatus.RUNNING
    assert consumer.redelivered == 0
    assert consumer.ack_pending == 0


async def purge_operation(js: JetStreamContext, operation_id: str) -> None:
    """What asyncDelete does to an operation's events: purge them from both streams."""
    for stream in EVENT_STREAMS:
        await js.purge_stream(stream, subject=operation_subjects("t1", operation_id))


async def view_writes(js: JetStreamContext) -> int:
    """How many view revisions (and markers) have ever been stored."""
    return (await js.stream_info(f"KV_{VIEW_BUCKET}")).state.last_seq


async def request_held(js: JetStreamContext) -> bool | None:
    """True once the projector holds a delivered event unacknowledged."""
    backlog = await projector_backlog(js)
    return True if backlog.ack_pending == 1 and backlog.pending == 0 else None


async def test_a_quick_operation_gets_one_view_write_and_a_lone_request_its_queued_view(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    requested, _, _, completed = lifecycle("op-quick")
    [lone] = lifecycle("op-lone")[:1]
    held = settings.replace(projector_queued_view_delay_s=2.0)
    async with running(create_projector(held)):
        await publish_all(event_log, [requested])
        await eventually(lambda: request_held(js), what="the request being held")
        # Its ending (a quick attempt stores no start) arrives apart from it, in another fetch.
        await publish_all(event_log, [completed])

        async def finished() -> OperationView | None:
            views = await stored_views(js)
            return next(iter(views.values())) if views else None

        view = await eventually(finished, what="the operation's view")
        assert view.status is TaskStatus.SUCCESS
        assert view.created_at == requested.occurred_at
        assert await view_writes(js) == 1, "the request's QUEUED view was never written"

        await publish_all(event_log, [lone])

        async def queued() -> OperationView | None:
            return (await stored_views(js)).get(view_key("t1", "u1", "op-lone"))

        assert (await eventually(queued, what="the lone request's view")).status is (
            TaskStatus.QUEUED
        )
    assert await view_writes(js) == 2


async def test_a_stopping_projector_writes_the_views_of_the_requests_it_holds(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    # Neither the delay nor the ack wait would end within the test's patience.
    slow = settings.replace(projector_queued_view_delay_s=120.0, projector_ack_wait_s=120.0)
    [requested] = lifecycle("op-handed-back")[:1]
    async with running(create_projector(slow)):
        await publish_all(event_log, [requested])
        await eventually(lambda: request_held(js), what="the request being held")
    [view] = (await stored_views(js)).values()
    assert view.status is TaskStatus.QUEUED
    backlog = await projector_backlog(js)
    assert backlog.ack_pending == 0, "acknowledged once written, not left to its ack wait"


async def test_a_held_request_whose_operation_was_deleted_meanwhile_gets_no_view(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    [requested] = lifecycle("op-deleted")[:1]
    kept = lifecycle("op-kept")[0]
    async with running(create_projector(settings.replace(projector_queued_view_delay_s=0.5))):
        await publish_all(event_log, [requested])
        await eventually(lambda: request_held(js), what="the request being held")
        # asyncDelete purges the operation's events (services/edge/delete.py).
        await purge_operation(js, "op-deleted")
        await publish_all(event_log, [kept])

        async def kept_folded() -> OperationView | None:
            return (await stored_views(js)).get(view_key("t1", "u1", "op-kept"))

        await eventually(kept_folded, what="the other request's QUEUED view")
        backlog = await projector_backlog(js)
    assert list(await stored_views(js)) == [view_key("t1", "u1", "op-kept")]
    assert backlog.ack_pending == 0, "the deleted operation's request was acknowledged"


async def fetched_late(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog, operation_id: str
) -> tuple[Projection, list[Msg]]:
    """An operation requested and completed, its two events fetched by the projector's consumer
    (neither folded nor acknowledged), and the projector's handler as its app wires it but
    calling a fold late after 0.1 s (1 s as it runs), once that much has passed."""
    requested, *_, completed = lifecycle(operation_id)
    await publish_all(event_log, [requested, completed])
    fetched = []
    for stream in EVENT_STREAMS:  # the request from one, the ending from the other
        consumer = await js.pull_subscribe_bind(durable=PROJECTOR_DURABLE, stream=stream)
        fetched += await consumer.fetch(1, timeout=5)
    ended = EndedOperations(settings)
    await ended.open(js)
    projection = Projection(
        js,
        ViewWriter(kv, event_log.inbox, request_lookup(event_log)),
        ended,
        max_deliver=settings.projector_max_deliver,
        tracing=Tracing(),
        metrics=ProjectorMetrics(PROJECTOR_DURABLE, "projector", EVENT_STREAMS),
        late_fold_s=0.1,
    )
    await asyncio.sleep(0.2)
    return projection, fetched


async def test_a_late_fold_of_an_operation_deleted_meanwhile_brings_no_view_back(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    projection, fetched = await fetched_late(settings, js, kv, event_log, "op-gone")
    # The projector lagged past asyncDelete's wait: the delete purged the events and the view
    # (services/edge/delete.py) before this fold writes.
    await purge_operation(js, "op-gone")
    await js.purge_stream(
        f"KV_{VIEW_BUCKET}", subject=f"$KV.{VIEW_BUCKET}.{view_key('t1', 'u1', 'op-gone')}"
    )

    await projection.fold_batch(fetched)

    assert await stored_views(js) == {}
    backlog = await projector_backlog(js)
    assert backlog.ack_pending == 0, "the deleted operation's events were acknowledged"


async def test_a_late_fold_of_an_operation_still_stored_writes_its_view(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    projection, fetched = await fetched_late(settings, js, kv, event_log, "op-kept")

    await projection.fold_batch(fetched)

    view = (await stored_views(js))[view_key("t1", "u1", "op-kept")]
    assert view.status is TaskStatus.SUCCESS
    backlog = await projector_backlog(js)
    assert backlog.ack_pending == 0


async def test_a_repair_that_read_an_operation_before_it_was_deleted_brings_no_view_back(
    js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    requested, *_, completed = lifecycle("op-repaired")
    await publish_all(event_log, [requested, completed])
    read_by_the_repair = await stored_events(js)
    # asyncDelete, between the start-up repair's read of the stream and its write.
    await purge_operation(js, "op-repaired")

    writer = ViewWriter(kv, event_log.inbox, request_lookup(event_log))
    written = await writer.repair(view_key("t1", "u1", "op-repaired"), read_by_the_repair)

    assert not written
    assert await stored_views(js) == {}
