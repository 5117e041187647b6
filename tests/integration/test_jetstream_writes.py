"""Stores through the reply inbox answer as nats-py's own publish and KeyValue writes do."""

import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import (
    BadRequestError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)
from nats.js.kv import KeyValue

from contracts.names import VIEW_BUCKET
from services.common.jetstream_writes import store, store_value
from services.common.reply_inbox import ReplyInbox

pytestmark = pytest.mark.nats


async def test_a_stored_message_is_acknowledged_with_its_sequence_once(
    nc: NatsClient, js: JetStreamContext
) -> None:
    await js.add_stream(name="SCRATCH", subjects=["scratch.>"])
    inbox = ReplyInbox(nc)
    headers = {"Nats-Msg-Id": "m-1"}

    first = await store(inbox, "scratch.a", b"one", headers=headers, within_s=5)
    again = await store(inbox, "scratch.a", b"one", headers=headers, within_s=5)
    other = await store(inbox, "scratch.b", b"two", headers=None, within_s=5)

    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert (other.seq, other.duplicate) == (2, False)
    assert (await js.get_msg("SCRATCH", 2)).data == b"two"


async def test_refusals_raise_what_nats_py_raises(nc: NatsClient, js: JetStreamContext) -> None:
    await js.add_stream(name="SCRATCH", subjects=["scratch.>"])
    inbox = ReplyInbox(nc)
    await store(inbox, "scratch.a", b"one", headers=None, within_s=5)

    with pytest.raises(NoStreamResponseError):
        await store(inbox, "nowhere.a", b"x", headers=None, within_s=5)
    guard = {"Nats-Expected-Last-Subject-Sequence": "7"}
    with pytest.raises(BadRequestError) as refused:
        await store(inbox, "scratch.a", b"two", headers=guard, within_s=5)
    assert refused.value.err_code == 10071


async def test_a_key_is_written_only_over_the_revision_named(nc: NatsClient, kv: KeyValue) -> None:
    inbox = ReplyInbox(nc)

    created = await store_value(inbox, VIEW_BUCKET, "k", b"v1", last=0, within_s=5)
    with pytest.raises(KeyWrongLastSequenceError):
        await store_value(inbox, VIEW_BUCKET, "k", b"again", last=0, within_s=5)
    updated = await store_value(inbox, VIEW_BUCKET, "k", b"v2", last=created, within_s=5)
    with pytest.raises(KeyWrongLastSequenceError):
        await store_value(inbox, VIEW_BUCKET, "k", b"stale", last=created, within_s=5)

    entry = await kv.get("k")
    assert (entry.value, entry.revision) == (b"v2", updated)


async def test_an_unanswered_request_times_out_and_a_late_answer_is_dropped(
    nc: NatsClient,
) -> None:
    held: list[Msg] = []

    async def hold(msg: Msg) -> None:
        held.append(msg)  # answered only after the requester gave up

    await nc.subscribe("silent.service", cb=hold)
    inbox = ReplyInbox(nc)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        await inbox.request("silent.service", b"ping", headers=None, within_s=0.3)

    waited = time.monotonic() - started
    assert 0.3 <= waited < 2.0
    [late] = held
    await nc.publish(late.reply, b"too late")
    answered = await inbox.request("scratch.none", b"x", headers=None, within_s=5)
    assert answered.headers is not None  # the server's no-responders answer, not the late one
    assert answered.data == b""
