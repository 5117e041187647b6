"""asyncRequests pages through more operations than fit on one page: newest first, filtered by
status, resumed after any listed operation, to the end; and never shows another user's. Through
a real uvicorn edge, projector and nats-server."""

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.events import OperationCompleted, OperationRequested
from contracts.names import (
    LISTING_BUCKET,
    LISTING_COUNTER_STREAM,
    listing_entry_key,
    listing_position_key,
)
from services.common.event_log import EventLog
from services.common.listing import Listing
from services.common.settings import Settings
from services.common.views import read_bucket
from services.edge.auth import issue_token
from services.edge.schema import DEFAULT_PAGE_SIZE
from services.projector.app import create_app as create_projector
from services.projector.replay import rebuild, rebuild_views
from tests.stack import eventually, running, serving_edge, stored_views

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "listing-test-secret-long-enough-for-hs256!"
SUBMIT = 'mutation { asyncQuery(query: "{ __typename }") { operationId } }'
PAGE = """query($status: TaskStatus, $first: Int!, $after: String) {
  asyncRequests(status: $status, first: $first, after: $after) { operationId status }
}"""
OPERATIONS = 230  # two full pages of 100 and a part


def as_user(settings: Settings, user: str) -> dict[str, str]:
    """Headers of a request by ``user`` of tenant acme."""
    return {"Authorization": f"Bearer {issue_token(settings, tenant='acme', user=user, ttl_s=600)}"}


async def call(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, **variables: Any
) -> dict[str, Any]:
    """One GraphQL request; never a 5xx."""
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_page(
    client: httpx.AsyncClient, headers: dict[str, str], first: int, status: str | None = None
) -> list[list[str]]:
    """The ids of each page, following ``after`` until a page comes back short."""
    pages: list[list[str]] = []
    after = None
    while True:
        body = await call(client, headers, PAGE, status=status, first=first, after=after)
        assert "errors" not in body, body
        page = [item["operationId"] for item in body["data"]["asyncRequests"]]
        pages.append(page)
        if len(page) < first:
            return pages
        after = page[-1]


def error_code(body: dict[str, Any]) -> str:
    """The code of the first error."""
    return str(body["errors"][0]["extensions"]["code"])


async def test_paging_through_more_than_a_page(
    settings: Settings, event_log: EventLog, js: JetStreamContext
) -> None:
    configured = settings.replace(jwt_secret=SECRET)
    alice, bob = as_user(configured, "alice"), as_user(configured, "bob")
    async with running(create_projector(configured)), serving_edge(configured) as edge:
        queued = []
        for n in range(OPERATIONS):
            body = await call(edge, alice, SUBMIT)
            queued.append(body["data"]["asyncQuery"]["operationId"])
            if n % 50 == 0:
                await call(edge, bob, SUBMIT)
        # Every third ends, so a status filter has something to leave out.
        done = set(queued[::3])
        for operation_id in done:
            await event_log.append(
                OperationCompleted(
                    operation_id=operation_id,
                    tenant="acme",
                    principal="alice",
                    trace_id="t",
                    response={"data": {}},
                ),
                msg_id=f"{operation_id}-done",
            )

        async def folded() -> bool | None:
            views = await stored_views(js)
            finished = sum(view.status == "SUCCESS" for view in views.values())
            return True if len(views) == OPERATIONS + 5 and finished == len(done) else None

        await eventually(folded, timeout_s=60, what="the projector folding everything")

        pages = await every_page(edge, alice, first=100)
        successes = await every_page(edge, alice, first=40, status="SUCCESS")
        queued_only = await every_page(edge, alice, first=1000, status="QUEUED")
        bobs = await every_page(edge, bob, first=2)
        mismatched = await call(edge, alice, PAGE, status="QUEUED", first=5, after=queued[0])
        unknown = await call(edge, alice, PAGE, first=5, after="not-an-operation")
        not_hers = await call(edge, alice, PAGE, first=5, after=bobs[0][0])
        last = await call(edge, alice, PAGE, first=5, after=queued[0])

    newest_first = queued[::-1]
    assert [len(page) for page in pages] == [100, 100, 30]
    assert [item for page in pages for item in page] == newest_first
    assert [len(page) for page in successes] == [40, 37]
    assert [item for page in successes for item in page] == [
        item for item in newest_first if item in done
    ]
    assert queued_only == [[item for item in newest_first if item not in done]]
    assert [len(page) for page in bobs] == [2, 2, 1]
    assert not {item for page in bobs for item in page} & set(queued)
    assert error_code(mismatched) == "BAD_USER_INPUT", "the oldest one is done, not queued"
    assert error_code(unknown) == "BAD_USER_INPUT"
    assert error_code(not_hers) == "BAD_USER_INPUT"
    assert last["data"]["asyncRequests"] == []


async def test_a_lost_index_comes_back_from_the_stream(
    settings: Settings, nc: NatsClient, js: JetStreamContext, kv: KeyValue
) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        queued = []
        for _ in range(12):
            body = await call(edge, {}, SUBMIT)
            queued.append(body["data"]["asyncQuery"]["operationId"])

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == len(queued) else None

        await eventually(folded, what="the projector folding every request")
        await js.purge_stream(f"KV_{LISTING_BUCKET}")
        emptied = await every_page(edge, {}, first=5)
        listing = Listing.over(nc)
        try:
            rebuilt = await rebuild_views(nc, listing)
            again = await rebuild_views(nc, listing)  # indexes nothing twice
        finally:
            await listing.reads.close()
        pages = await every_page(edge, {}, first=5)

    assert emptied == [[]]
    assert rebuilt == again == len(queued)
    assert [item for page in pages for item in page] == queued[::-1]


async def test_lost_counters_come_back_above_every_ordinal_the_requests_carry(
    settings: Settings, nc: NatsClient, js: JetStreamContext
) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        queued = [
            (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"] for _ in range(3)
        ]

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == len(queued) else None

        await eventually(folded, what="the projector folding every request")
        await js.purge_stream(f"KV_{LISTING_BUCKET}")
        await js.purge_stream(LISTING_COUNTER_STREAM)
        listing = Listing.over(nc)
        try:
            await rebuild_views(nc, listing)
        finally:
            await listing.reads.close()
        # Numbered after the rebuild: a counter left at zero would give it an old one's place.
        queued.append((await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"])
        await eventually(folded, what="the projector folding the newest request")
        pages = await every_page(edge, {}, first=10)

    assert pages == [queued[::-1]]


async def test_a_request_stored_without_its_entry_is_answered_and_replay_lists_it(
    settings: Settings, nc: NatsClient, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"KV_{LISTING_BUCKET}"
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        first = (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"]
        # The listing bucket refuses every write (an operation id is longer than this).
        usual = (await js.stream_info(bucket)).config
        await js.update_stream(replace(usual, max_msg_size=8))
        body = await call(edge, {}, SUBMIT)
        await js.update_stream(usual)
        assert "errors" not in body, body
        second = body["data"]["asyncQuery"]["operationId"]

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == 2 else None

        await eventually(folded, what="the projector folding both requests")
        unlisted = await every_page(edge, {}, first=10)
        listing = Listing.over(nc)
        try:
            await rebuild_views(nc, listing)
        finally:
            await listing.reads.close()
        listed = await every_page(edge, {}, first=10)

    assert f"{second} is queued but not indexed" in caplog.text
    assert unlisted == [[first]]
    assert listed == [[second, first]]


async def test_a_null_page_size_means_the_default_page(
    settings: Settings, js: JetStreamContext
) -> None:
    unset_variable = "query($first: Int) { asyncRequests(first: $first) { operationId } }"
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        queued = [
            (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"]
            for _ in range(DEFAULT_PAGE_SIZE + 1)
        ]

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == len(queued) else None

        await eventually(folded, what="the projector folding every request")
        literal_null = await call(edge, {}, "{ asyncRequests(first: null) { operationId } }")
        variable_left_out = await call(edge, {}, unset_variable)
        variable_null = await call(edge, {}, unset_variable, first=None)
        zero = await call(edge, {}, "{ asyncRequests(first: 0) { operationId } }")

    newest_page = [{"operationId": item} for item in queued[::-1][:DEFAULT_PAGE_SIZE]]
    for body in (literal_null, variable_left_out, variable_null):
        assert "errors" not in body, body
        assert body["data"] == {"asyncRequests": newest_page}
    assert error_code(zero) == "BAD_USER_INPUT"


async def listing_messages(js: JetStreamContext) -> int:
    """How many messages the listing bucket has stored (each costs a write, and an fsync)."""
    return (await js.stream_info(f"KV_{LISTING_BUCKET}")).state.messages


async def test_one_submit_stores_one_listing_key(settings: Settings, js: JetStreamContext) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        first = (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"]
        before = await listing_messages(js)
        second = (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"]
        after_one = await listing_messages(js)

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == 2 else None

        await eventually(folded, what="the projector folding both requests")
        pages = await every_page(edge, {}, first=1)

    assert after_one - before == 1
    assert pages == [[second], [first], []]


async def test_an_operation_indexed_twice_is_listed_once(
    settings: Settings, nc: NatsClient, js: JetStreamContext
) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        queued = [
            (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"] for _ in range(3)
        ]

        async def folded() -> bool | None:
            return True if len(await stored_views(js)) == len(queued) else None

        await eventually(folded, what="the projector folding every request")
        [view] = [
            view for view in (await stored_views(js)).values() if view.operation_id == queued[1]
        ]
        # A second entry of the middle one, newest of all, as a retried index write under a
        # fresh ordinal leaves it.
        listing = Listing.over(nc)
        try:
            again = await listing.record(view.tenant, view.principal, queued[1])
            whole = await call(edge, {}, PAGE, first=10)
            pages = await every_page(edge, {}, first=1)
            # Its own entry lost, only the stray one left: rebuilding writes its own again.
            assert view.listing_ordinal is not None
            own = listing_entry_key(view.tenant, view.principal, view.listing_ordinal)
            await (await js.key_value(LISTING_BUCKET)).delete(own)
            stray_only = await every_page(edge, {}, first=10)
            await rebuild_views(nc, listing)
            rebuilt = await every_page(edge, {}, first=10)
        finally:
            await listing.reads.close()

    assert again > view.listing_ordinal
    assert [item["operationId"] for item in whole["data"]["asyncRequests"]] == queued[::-1]
    assert pages == [[queued[2]], [queued[1]], [queued[0]], []]
    assert stray_only == [[queued[2], queued[0]]]
    assert rebuilt == [queued[::-1]]


async def test_operations_queued_before_requests_carried_their_ordinal_still_page(
    settings: Settings, nc: NatsClient, js: JetStreamContext, event_log: EventLog
) -> None:
    """Requests stored, and indexed with both keys, as asyncgate did before the request carried
    its listing ordinal: their views have none, so ``after`` reads the old key."""
    configured = settings.replace(jwt_secret=SECRET)
    alice = as_user(configured, "alice")
    older = [str(uuid.uuid4()) for _ in range(2)]
    listing = Listing.over(nc)
    try:
        for operation_id in older:
            ordinal = await listing.record("acme", "alice", operation_id)
            position = listing_position_key("acme", "alice", operation_id)
            await js.publish(f"$KV.{LISTING_BUCKET}.{position}", str(ordinal).encode())
            await event_log.append(
                OperationRequested(
                    operation_id=operation_id,
                    tenant="acme",
                    principal="alice",
                    trace_id="t",
                    query="{ __typename }",
                ),
                msg_id=operation_id,
            )
        async with running(create_projector(configured)), serving_edge(configured) as edge:
            newer = (await call(edge, alice, SUBMIT))["data"]["asyncQuery"]["operationId"]

            async def folded() -> bool | None:
                return True if len(await stored_views(js)) == 3 else None

            await eventually(folded, what="the projector folding every request")
            views = {view.operation_id: view for view in (await stored_views(js)).values()}
            pages = await every_page(edge, alice, first=1)
            # Rebuilding a lost listing indexes them again, at fresh ordinals, old keys and all.
            await js.purge_stream(f"KV_{LISTING_BUCKET}")
            await rebuild_views(nc, listing)
            rebuilt = await every_page(edge, alice, first=1)
    finally:
        await listing.reads.close()

    assert [views[operation_id].listing_ordinal for operation_id in older] == [None, None]
    assert pages == [[newer], [older[1]], [older[0]], []]
    # Fresh ordinals are above the newer one's: only the order among the older ones is kept.
    assert rebuilt == [[older[1]], [older[0]], [newer], []]


async def test_operations_whose_views_are_not_written_yet_are_listed_from_the_stream(
    settings: Settings, js: JetStreamContext
) -> None:
    # The projector holds each request for a minute, waiting for its next event: no view is
    # written during the test, yet every answer shows what the stream holds.
    holding = settings.replace(projector_queued_view_delay_s=60.0)
    async with running(create_projector(holding)), serving_edge(holding) as edge:
        queued = [
            (await call(edge, {}, SUBMIT))["data"]["asyncQuery"]["operationId"] for _ in "abc"
        ]
        pages = await every_page(edge, {}, first=2)
        body = await call(edge, {}, PAGE, status="QUEUED", first=10, after=queued[2])
        assert await stored_views(js) == {}

    assert pages == [queued[:0:-1], [queued[0]]]
    assert [item["operationId"] for item in body["data"]["asyncRequests"]] == queued[1::-1]
    assert {item["status"] for item in body["data"]["asyncRequests"]} == {"QUEUED"}


async def test_concurrent_submits_of_one_user_share_increments_and_entries_and_page_in_order(
    settings: Settings, nc: NatsClient, js: JetStreamContext
) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        counters = (await js.stream_info(LISTING_COUNTER_STREAM)).state.last_seq
        entries = (await js.stream_info(f"KV_{LISTING_BUCKET}")).state.last_seq
        bodies = await asyncio.gather(*(call(edge, {}, SUBMIT) for _ in range(40)))
        increments = (await js.stream_info(LISTING_COUNTER_STREAM)).state.last_seq - counters
        entry_writes = (await js.stream_info(f"KV_{LISTING_BUCKET}")).state.last_seq - entries
        queued = {body["data"]["asyncQuery"]["operationId"] for body in bodies}
        # Small pages, so that shared entries straddle page boundaries.
        pages = await every_page(edge, {}, first=3)

        async def folded() -> dict[str, int] | None:
            views = await stored_views(js)
            ordinals = {v.operation_id: v.listing_ordinal or 0 for v in views.values()}
            return ordinals if len(ordinals) == len(queued) else None

        ordinals = await eventually(folded, what="the projector folding every request")
        listing = Listing.over(nc)
        try:
            rebuilt = await rebuild(nc, listing)
        finally:
            await listing.reads.close()

    listed = [item for page in pages for item in page]
    assert listed == sorted(queued, key=lambda item: ordinals[item], reverse=True)
    assert increments < len(queued), "submits asking at once shared increments"
    assert entry_writes < len(queued), "...and entries"
    assert rebuilt.indexed == 0, "a rebuild finds every operation indexed, shared entries too"


async def test_deleting_an_operation_of_a_shared_entry_keeps_the_others_listed(
    settings: Settings, js: JetStreamContext
) -> None:
    async with running(create_projector(settings)), serving_edge(settings) as edge:
        before = (await js.stream_info(f"KV_{LISTING_BUCKET}")).state.last_seq
        bodies = await asyncio.gather(*(call(edge, {}, SUBMIT) for _ in range(12)))
        written = (await js.stream_info(f"KV_{LISTING_BUCKET}")).state.last_seq - before
        queued = [body["data"]["asyncQuery"]["operationId"] for body in bodies]
        listed = (await every_page(edge, {}, first=100))[0]
        gone = listed[len(listed) // 2]
        answer = await call(
            edge, {}, "mutation($id: String!) { asyncDelete(id: $id) { operationId } }", id=gone
        )
        after = (await every_page(edge, {}, first=100))[0]
        stored = await read_bucket(js, "*.*.n.*", bucket=LISTING_BUCKET, within_s=None)

    assert written < len(queued), "the submits shared entries"
    assert answer["data"]["asyncDelete"] == {"operationId": gone}
    assert after == [item for item in listed if item != gone]
    values = [value.decode() for value, _ in stored.values() if value]
    assert all(gone not in value for value in values), "its id is gone from the bucket"
    assert sum(len(value.split(" ")) for value in values) >= len(queued) - 1
