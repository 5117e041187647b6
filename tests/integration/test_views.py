"""Listing views against a real nats-server: complete, however many listings run at once."""

import asyncio

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.view import OperationView, TaskStatus, encode_view
from services.common.views import list_views

pytestmark = pytest.mark.nats


async def test_concurrent_listings_each_see_every_view(js: JetStreamContext, kv: KeyValue) -> None:
    for n in range(200):
        view = OperationView(
            operation_id=f"op-{n}", tenant="t1", principal="u1", status=TaskStatus.SUCCESS
        )
        await kv.put(f"t1.u1.op-{n}", encode_view(view))
    await kv.put(
        "t1.u2.op-x", encode_view(OperationView(operation_id="op-x", tenant="t1", principal="u2"))
    )
    await kv.delete("t1.u1.op-7")

    # nats-py's own watcher ended 27 of 300 such listings early (its "no more values" marker
    # came before values already on their way).
    rounds = [
        await asyncio.gather(*(list_views(js, "t1.u1.*") for _ in range(30))) for _ in range(5)
    ]

    sizes = {len(listing) for listings in rounds for listing in listings}
    assert sizes == {199}
    assert {view.operation_id for view in rounds[0][0]} == {f"op-{n}" for n in range(200)} - {
        "op-7"
    }
    assert await list_views(js, "t9.*.*") == []
