"""The two event streams (contracts/names.py): requests in one, the rest of each operation's
history in the other, and provisioning over a store from before they were apart."""

from collections.abc import AsyncIterator

import pytest
from msgspec.structs import replace
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig

from contracts.events import encode_event
from contracts.lifecycle import evolve, fold
from contracts.names import (
    ALL_EVENTS,
    EXECUTOR_DURABLE,
    HISTORY_EVENTS,
    PROJECTOR_DURABLE,
    REQUESTED_EVENTS,
    REQUESTS_STREAM,
    STREAM,
    VIEW_BUCKET,
    event_subject,
    view_key,
)
from contracts.view import TaskStatus, encode_view
from services.common.event_log import EventLog
from services.common.jetstream import close_connection, connect
from services.common.settings import Settings
from services.projector.replay import rebuild, replay_views, verify
from services.provision import RequestsNotTakenError, provision
from tests.integration.test_projector import lifecycle

pytestmark = pytest.mark.nats

PreSplit = tuple[Settings, NatsClient, JetStreamContext]


@pytest.fixture
async def pre_split(nats_url: str) -> AsyncIterator[PreSplit]:
    """A store laid out as before requests were stored apart: one stream took every event
    subject."""
    settings = Settings(nats_url=nats_url)
    nc = await connect(settings, "asyncgate-test")
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=[ALL_EVENTS], allow_direct=True))
        yield settings, nc, js
    finally:
        await close_connection(nc)


async def test_each_event_is_stored_in_its_stream(settings: Settings, event_log: EventLog) -> None:
    js = event_log.js
    asked, started, *_ = lifecycle("op-split")

    await event_log.append(asked, msg_id="r")
    await event_log.append(started, msg_id="s", after=0)

    assert (await js.stream_info(REQUESTS_STREAM)).state.messages == 1
    assert (await js.stream_info(STREAM)).state.messages == 1
    facts = await event_log.facts("t1", "op-split")
    assert facts.requested is not None
    assert facts.requested[1] == asked
    assert facts.started is not None
    assert facts.started[1] == started
    # A guarded append names the history's position: the request is not part of it.
    assert facts.last_sequence == facts.started[0]


async def test_provisioning_a_store_from_before_splits_it_and_keeps_every_event(
    pre_split: PreSplit,
) -> None:
    settings, nc, js = pre_split
    await js.add_consumer(
        STREAM, ConsumerConfig(durable_name=PROJECTOR_DURABLE, filter_subject=ALL_EVENTS)
    )
    await js.add_consumer(
        STREAM, ConsumerConfig(durable_name=EXECUTOR_DURABLE, filter_subject=REQUESTED_EVENTS)
    )
    old, started, *_ = lifecycle("op-old")
    await js.publish(event_subject("t1", "op-old", "requested"), encode_event(old))
    await js.publish(event_subject("t1", "op-old", "started"), encode_event(started))

    # Its executors have not taken the old request yet: splitting now would strand it.
    with pytest.raises(RequestsNotTakenError, match="1 requests"):
        await provision(js, settings)
    assert (await js.stream_info(STREAM)).config.subjects == [ALL_EVENTS]
    taking = await js.pull_subscribe_bind(durable=EXECUTOR_DURABLE, stream=STREAM)
    [taken] = await taking.fetch(1, timeout=5)
    await taken.ack_sync()

    report = "\n".join(await provision(js, settings))

    assert f"stream {STREAM}: updated" in report
    assert f"stream {REQUESTS_STREAM}: created" in report
    assert f"consumer {EXECUTOR_DURABLE} on {STREAM}: removed" in report
    executors = [info.name for info in await js.consumers_info(REQUESTS_STREAM)]
    assert EXECUTOR_DURABLE in executors
    history = await js.stream_info(STREAM)
    assert sorted(history.config.subjects or []) == sorted(HISTORY_EVENTS)
    assert history.state.messages == 2  # nothing stored is lost
    # A new request goes to the requests stream; the old one is still read where it is.
    new = lifecycle("op-new")[0]
    ack = await js.publish(event_subject("t1", "op-new", "requested"), encode_event(new))
    assert ack.stream == REQUESTS_STREAM
    events = EventLog(nc, js)
    facts = await events.facts("t1", "op-old")
    assert facts.requested is not None
    assert facts.requested[1] == old
    assert facts.started is not None
    views = {view.operation_id: view.status for view in (await replay_views(js)).values()}
    assert views == {"op-old": TaskStatus.RUNNING, "op-new": TaskStatus.QUEUED}
    await events.close()


async def test_views_from_before_the_split_are_compared_and_repaired_by_replay(
    pre_split: PreSplit,
) -> None:
    settings, nc, js = pre_split
    # Three operations that ended before the upgrade: their requests are 1, 3 and 5 of the
    # history stream, numbers the new requests stream reaches only later.
    before: dict[str, bytes] = {}
    for operation_id in ("op-a", "op-b", "op-old"):
        asked, *_, done = lifecycle(operation_id)
        stored = []
        for event, kind in ((asked, "requested"), (done, "completed")):
            ack = await js.publish(event_subject("t1", operation_id, kind), encode_event(event))
            stored.append((ack.seq, event))
        # What the projector wrote then: a view without the request's own position.
        view = replace(fold(stored)[operation_id], request_sequence=None)
        before[view_key("t1", "u1", operation_id)] = encode_view(view)
    await provision(js, settings)
    new = lifecycle("op-new")[0]
    ack = await js.publish(event_subject("t1", "op-new", "requested"), encode_event(new))
    before[view_key("t1", "u1", "op-new")] = encode_view(evolve(None, new, ack.seq))
    views = await js.key_value(VIEW_BUCKET)
    for key, data in before.items():
        await views.put(key, data)
    # A projector that has folded everything stored.
    for stream in (STREAM, REQUESTS_STREAM):
        folded = await js.pull_subscribe_bind(durable=PROJECTOR_DURABLE, stream=stream)
        while (await js.consumer_info(stream, PROJECTOR_DURABLE)).num_pending:
            for msg in await folded.fetch(10, timeout=5):
                await msg.ack_sync()

    verified = await verify(js)

    # Every view compared (none taken for newer than the replay or not folded yet), and
    # the old ones equal to what the replay folds.
    assert (verified.differences, verified.in_flight) == ([], 0)

    damaged = replace(fold([(0, lifecycle("op-old")[0])])["op-old"], last_sequence=6)
    await views.put(view_key("t1", "u1", "op-old"), encode_view(damaged))
    [difference] = (await verify(js)).differences
    assert difference.key == view_key("t1", "u1", "op-old")
    assert (await rebuild(nc)).written == 1
    assert (await verify(js)).differences == []
    entry = await views.get(view_key("t1", "u1", "op-old"))
    assert entry.value == before[view_key("t1", "u1", "op-old")]
