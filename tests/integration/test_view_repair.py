"""The view bucket written with NATS's async persistence, and the projector putting back the
views a crash lost (services/projector/view_repair.py)."""

import asyncio

import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import PersistMode
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET, view_key
from contracts.view import OperationView, TaskStatus
from services.common.event_log import EventLog
from services.common.settings import Settings
from services.projector.app import create_app as create_projector
from services.projector.replay import replay_views
from services.projector.view_repair import repair_recent_views
from services.projector.view_writer import ViewWriter, request_lookup
from services.provision import provision
from tests.conftest import NatsServer
from tests.integration.test_projector import lifecycle, publish_all
from tests.stack import eventually, projector_backlog, running, stored_views

pytestmark = pytest.mark.nats

BUCKET_STREAM = f"KV_{VIEW_BUCKET}"


def key(operation_id: str) -> str:
    return view_key("t1", "u1", operation_id)


async def lose_view(js: JetStreamContext, operation_id: str) -> None:
    """What a crash does to an acknowledged view write that was not on disk yet: the key's
    message is gone, with no marker left (a purge of the bucket's stream, not of the key)."""
    await js.purge_stream(BUCKET_STREAM, subject=f"$KV.{VIEW_BUCKET}.{key(operation_id)}")


async def folded(js: JetStreamContext, count: int) -> dict[str, OperationView] | None:
    """The stored views once there are ``count`` of them, all final (None meanwhile, and while
    the server is away)."""
    try:
        views = await stored_views(js)
    except (nats.errors.Error, TimeoutError):
        return None
    done = len(views) == count and all(view.status.is_terminal for view in views.values())
    return views if done else None


async def test_a_single_server_bucket_is_async_and_kept_so(
    settings: Settings, js: JetStreamContext
) -> None:
    assert (await js.stream_info(BUCKET_STREAM)).config.persist_mode == PersistMode.ASYNC

    report = await provision(js, settings.replace(view_persist_mode="default"))

    # NATS cannot change it in place: provisioning says so and leaves it.
    assert f"bucket {VIEW_BUCKET}: as configured (persist mode async kept" in "\n".join(report)
    assert (await js.stream_info(BUCKET_STREAM)).config.persist_mode == PersistMode.ASYNC


async def test_a_starting_projector_writes_again_the_views_nats_lost(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    ended, begun, queued = lifecycle("op-ended"), lifecycle("op-begun")[:2], lifecycle("op-queued")
    async with running(create_projector(settings.replace(projector_queued_view_delay_s=0))):
        await publish_all(event_log, ended + begun + queued[:1])

        async def three() -> dict[str, OperationView] | None:
            # Every event folded: the requests and the rest come from two streams, so three
            # views can be there before the last events are in them.
            if not (await projector_backlog(js)).idle:
                return None
            views = await stored_views(js)
            return views if len(views) == 3 else None

        before = await eventually(three, what="three views")
    for operation_id in ("op-ended", "op-begun", "op-queued"):
        await lose_view(js, operation_id)
    assert await stored_views(js) == {}

    async with running(create_projector(settings)):

        async def two() -> dict[str, OperationView] | None:
            views = await stored_views(js)
            return views if len(views) == 2 else None

        after = await eventually(two, what="the lost views written again")

    # An operation that had begun gets its view back as it was. A lone request is left to the
    # live consumer (it may be holding it); readers find it in the stream meanwhile.
    assert after == {k: v for k, v in before.items() if k != key("op-queued")}
    assert after[key("op-ended")].status == TaskStatus.SUCCESS


async def test_views_that_have_their_events_are_not_written_again(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    async with running(create_projector(settings)):
        await publish_all(event_log, lifecycle("op-1") + lifecycle("op-2"))
        await eventually(lambda: folded(js, 2), what="two final views")
    written_before = (await js.stream_info(BUCKET_STREAM)).state.last_seq

    writer = ViewWriter(kv, event_log.inbox, request_lookup(event_log))
    written = await repair_recent_views(event_log, writer, 30.0)

    assert written == 0
    assert (await js.stream_info(BUCKET_STREAM)).state.last_seq == written_before


async def test_only_the_events_of_the_window_are_read_again(
    settings: Settings, js: JetStreamContext, kv: KeyValue, event_log: EventLog
) -> None:
    async with running(create_projector(settings)):
        await publish_all(event_log, lifecycle("op-old"))
        await asyncio.sleep(1.5)
        await publish_all(event_log, lifecycle("op-new"))
        await eventually(lambda: folded(js, 2), what="two final views")
    await lose_view(js, "op-old")
    await lose_view(js, "op-new")

    writer = ViewWriter(kv, event_log.inbox, request_lookup(event_log))
    written = await repair_recent_views(event_log, writer, 1.0)

    assert written == 1
    assert list(await stored_views(js)) == [key("op-new")]


async def test_views_lost_by_the_server_come_back_after_the_reconnect(
    settings: Settings, js: JetStreamContext, event_log: EventLog, nats_server: NatsServer
) -> None:
    # 600 events: more than one batched read (READ_BATCH).
    operations = [f"op-{n}" for n in range(150)]
    async with running(create_projector(settings.replace(projector_queued_view_delay_s=0))):
        for operation_id in operations:
            await publish_all(event_log, lifecycle(operation_id, fails=operation_id.endswith("7")))
        await eventually(lambda: folded(js, len(operations)), what="every view final")
        # As a crash would lose them. The restart is orderly, so the consumer keeps every
        # acknowledgement and nothing is redelivered: only the repair can bring them back.
        for operation_id in operations[-3:]:
            await lose_view(js, operation_id)
        await asyncio.to_thread(nats_server.restart)

        after = await eventually(
            lambda: folded(js, len(operations)), what="every view final again", timeout_s=30
        )

    assert after == await replay_views(js)
