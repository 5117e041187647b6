"""Results of any size, end to end: a real nats-server, and the edge, executor and projector as
processes of their own (services/cli.py), so the edge's memory during a download is its own."""

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts.events import OperationCompleted, OperationRequested, correlation_of
from contracts.names import VIEW_BUCKET, result_object_name, terminal_msg_id
from examples.actions import ACTIONS_FILE
from examples.actions.handler import app as demo_handler
from examples.ledger.schema import ledger_row
from services.common.event_log import EventLog
from services.common.jetstream import connect
from services.common.nats_server import free_port
from services.common.reply_inbox import ReplyInbox
from services.common.results import ResultStore
from services.common.settings import Settings
from services.edge.app import create_app as create_edge
from services.edge.auth import issue_token
from services.edge.result_memory import ResultMemory
from services.executor.app import create_app as create_executor
from services.executor.handlers import record_outcome
from services.executor.outcome import ResultLimits
from services.projector.app import create_app as create_projector
from services.projector.replay import rebuild_views
from tests.seed_requests import HASURA_SEED_ID, HASURA_SEED_MUTATION, HASURA_SEED_SUBSCRIPTION
from tests.stack import (
    eventually,
    graphql,
    running,
    serving,
    serving_edge,
    stored_events,
    stored_views,
)
from tests.support.processes import ServiceStack
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "large-results-secret-long-enough-for-hs256"
OWNER = ("acme", "alice")
STRANGER = ("acme", "bob")
# About 520 bytes a row: some 47 MB of result.
EXPORT_ROWS = 90_000
EXPORT = (
    "mutation($q: String!) { asyncQuery(query: $q) { operationId } }",
    "query { ledgerExport(rows: %d) { line accountNo name amount } }",
)
RESULT = "query($id: String!) { asyncResult(id: $id) { status errorCode data dataUrl } }"
DELETE = "mutation($id: String!) { asyncDelete(id: $id) { operationId } }"


def headers(who: tuple[str, str]) -> dict[str, str]:
    """A bearer token for ``who``, as the edge's JWT settings accept it."""
    token = issue_token(Settings(jwt_secret=SECRET), tenant=who[0], user=who[1], ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], who: tuple[str, str] = OWNER
) -> dict[str, Any]:
    """One GraphQL request as ``who``; the whole response body."""
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers(who)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def export(http: httpx.AsyncClient, rows: int) -> str:
    """Queue a ledger export of ``rows`` rows as the owner; its operation id."""
    submit, inner = EXPORT
    body = await call(http, submit, {"q": inner % rows})
    operation_id: str = body["data"]["asyncQuery"]["operationId"]
    return operation_id


async def finished(http: httpx.AsyncClient, operation_id: str) -> None:
    """Wait until the operation has ended (status only: its data is not read meanwhile)."""

    async def ended() -> bool | None:
        query = "query($id: String!) { asyncResult(id: $id) { status } }"
        status = (await call(http, query, {"id": operation_id}))["data"]["asyncResult"]["status"]
        return True if status in ("SUCCESS", "ERROR") else None

    await eventually(ended, timeout_s=90, what=f"{operation_id} ending")


@pytest.fixture
async def stack(nats_url: str, tmp_path: Path) -> AsyncIterator[ServiceStack]:
    """The three services with JWT principals, as separate processes."""
    async with ServiceStack(nats_url, tmp_path, {"ASYNCGATE_JWT_SECRET": SECRET}) as services:
        yield services


@pytest.fixture
async def http(stack: ServiceStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the stack's edge."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        yield client


@pytest.fixture
async def looking(stack: ServiceStack) -> AsyncIterator[tuple[JetStreamContext, ResultStore]]:
    """The test's own look at the stream and the results bucket. (Not the ``js`` fixture: its
    provisioning would give the executors' consumer the test settings' 5 s ack wait.)"""
    nc = await connect(Settings.from_env(stack.env), "asyncgate-test")
    try:
        yield nc.jetstream(), ResultStore(nc.jetstream(), ReplyInbox(nc))
    finally:
        await nc.drain()


async def download(
    http: httpx.AsyncClient,
    url: str,
    who: tuple[str, str] = OWNER,
    *,
    encoding: str = "identity",
) -> tuple[httpx.Response, bytes]:
    """GET ``url`` as ``who``, accepting ``encoding``; the response and its body as sent (not
    decoded). (httpx asks for gzip unless told otherwise.)"""
    more = {"Accept-Encoding": encoding}
    async with http.stream("GET", url, headers=headers(who) | more) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, raw


async def test_a_50_mb_export_reads_back_whole_and_downloads_byte_identical_then_is_deleted(
    stack: ServiceStack,
    http: httpx.AsyncClient,
    looking: tuple[JetStreamContext, ResultStore],
) -> None:
    js, results = looking
    started = time.perf_counter()
    operation_id = await export(http, EXPORT_ROWS)
    await finished(http, operation_id)
    stored_at = time.perf_counter()
    url = f"/results/{operation_id}"
    edge_before = stack.edge.memory_bytes(peak=True)

    plain, plain_body = await download(http, url)
    downloaded_at = time.perf_counter()
    zipped, zipped_body = await download(http, url, encoding="gzip")
    edge_after_downloads = stack.edge.memory_bytes(peak=True)
    read_started = time.perf_counter()
    result = (await call(http, RESULT, {"id": operation_id}))["data"]["asyncResult"]
    read_at = time.perf_counter()
    edge_after_read = stack.edge.memory_bytes(peak=True)
    stranger, stranger_body = await download(http, url, STRANGER)
    missing, missing_body = await download(http, f"/results/{uuid.uuid4()}")

    assert (result["status"], result["errorCode"]) == ("SUCCESS", None), result
    data = result["data"].encode()
    rows = json.loads(data)["data"]["ledgerExport"]
    print(  # noqa: T201 (the report's numbers, shown with pytest -s)
        f"\n{len(data) / 1e6:.1f} MB: run and store {stored_at - started:.1f} s, download "
        f"{downloaded_at - stored_at:.2f} s, asyncResult.data {read_at - read_started:.2f} s; "
        f"edge peak RSS {edge_before / 1e6:.0f} -> {edge_after_downloads / 1e6:.0f} MB over "
        f"both downloads, {edge_after_read / 1e6:.0f} MB after data"
    )
    assert result["status"] == "SUCCESS"
    assert len(data) > 45_000_000
    assert len(rows) == EXPORT_ROWS
    assert rows[-1] == {
        "line": EXPORT_ROWS,
        "accountNo": ledger_row(EXPORT_ROWS).account_no,
        "name": ledger_row(EXPORT_ROWS).name,
        "amount": ledger_row(EXPORT_ROWS).amount,
    }
    assert result["dataUrl"] == url
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.headers["content-length"] == str(len(data))
    assert plain_body == data
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["transfer-encoding"] == "chunked"
    assert len(zipped_body) < len(data) / 5
    assert gzip.decompress(zipped_body) == data
    # Streamed: the edge never held the object (its peak grew by a fraction of it).
    assert edge_after_downloads - edge_before < 20_000_000
    assert (stranger.status_code, missing.status_code) == (404, 404)
    assert stranger_body == missing_body
    assert json.loads(stranger_body)["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    # The terminal event carries the reference, not the body.
    (terminal,) = [
        event
        for _, event in await stored_events(js)
        if isinstance(event, OperationCompleted) and event.operation_id == operation_id
    ]
    assert terminal.response is None
    assert terminal.response_ref is not None
    assert terminal.response_ref.size == len(data)
    assert await results.exists(terminal.response_ref.name)

    deleted = await call(http, DELETE, {"id": operation_id})
    after_delete, _ = await download(http, url)

    assert deleted["data"]["asyncDelete"] == {"operationId": operation_id}
    assert not await results.exists(terminal.response_ref.name)
    assert after_delete.status_code == 404


# Small limits, so that small exports take every path: a row is about 520 bytes of JSON.
SMALL_LIMITS = {"inline_result_bytes": 1024, "max_read_bytes": 30_000, "max_result_bytes": 100_000}


@pytest.fixture
async def small(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The three services in this process, with JWT principals and SMALL_LIMITS."""
    configured = settings.replace(jwt_secret=SECRET, **SMALL_LIMITS)
    async with (
        running(create_projector(configured)),
        running(create_executor(configured)),
        serving_edge(configured) as client,
    ):
        yield client


async def finished_result(http: httpx.AsyncClient, rows: int) -> tuple[str, dict[str, Any]]:
    """Export ``rows`` rows and wait for the end; the id and asyncResult's status, code and
    dataUrl (not data)."""
    operation_id = await export(http, rows)
    await finished(http, operation_id)
    query = "query($id: String!) { asyncResult(id: $id) { status errorCode dataUrl } }"
    result = (await call(http, query, {"id": operation_id}))["data"]["asyncResult"]
    return operation_id, result


async def test_every_result_reads_the_same_through_data_and_data_url_and_survives_a_replay(
    small: httpx.AsyncClient, nc: NatsClient, js: JetStreamContext
) -> None:
    stored_id, _ = await finished_result(small, 20)  # about 10 kB: in the bucket
    inline_id, _ = await finished_result(small, 1)  # under 1 kB: in the event
    before = {}
    for operation_id in (stored_id, inline_id):
        result = (await call(small, RESULT, {"id": operation_id}))["data"]["asyncResult"]
        _, body = await download(small, result["dataUrl"])
        _, zipped = await download(small, result["dataUrl"], encoding="gzip")
        assert body == gzip.decompress(zipped) == result["data"].encode()
        before[operation_id] = result["data"]
    # The view lost and rebuilt from the stream: it still refers to the object.
    views = await stored_views(js)
    key = next(key for key, view in views.items() if view.operation_id == stored_id)
    await js.purge_stream(f"KV_{VIEW_BUCKET}", subject=f"$KV.{VIEW_BUCKET}.{key}")
    await rebuild_views(nc)
    after = (await call(small, RESULT, {"id": stored_id}))["data"]["asyncResult"]

    assert views[key].response is None
    assert views[key].response_ref is not None
    assert json.loads(before[stored_id])["data"]["ledgerExport"][19]["line"] == 20
    assert (await stored_views(js))[key].response_ref == views[key].response_ref
    assert after["data"] == before[stored_id]


async def test_head_on_a_stored_result_answers_its_headers_without_the_body(
    small: httpx.AsyncClient, js: JetStreamContext
) -> None:
    stored_id, result = await finished_result(small, 20)
    size = len((await download(small, result["dataUrl"]))[1])

    plain = await small.head(result["dataUrl"], headers=headers(OWNER) | {"Accept-Encoding": ""})
    zipped = await small.head(result["dataUrl"], headers=headers(OWNER))
    stranger = await small.head(result["dataUrl"], headers=headers(STRANGER))
    [stored] = [v for v in (await stored_views(js)).values() if v.operation_id == stored_id]

    assert stored.response_ref is not None  # the case that would read the object
    assert (plain.status_code, plain.headers["content-length"], plain.content) == (
        200,
        str(size),
        b"",
    )
    assert (zipped.status_code, zipped.headers["content-encoding"]) == (200, "gzip")
    assert "content-length" not in zipped.headers
    assert stranger.status_code == 404


async def test_a_result_over_the_read_limit_points_to_its_download(
    small: httpx.AsyncClient,
) -> None:
    operation_id, result = await finished_result(small, 100)  # about 52 kB
    read = await call(small, RESULT, {"id": operation_id})
    response, body = await download(small, result["dataUrl"])

    assert result == {"status": "SUCCESS", "errorCode": None, "dataUrl": result["dataUrl"]}
    (error,) = read["errors"]
    assert error["extensions"]["code"] == "RESULT_TOO_LARGE_TO_READ"
    assert error["extensions"]["dataUrl"] == result["dataUrl"]
    assert "dataUrl" in error["message"]
    assert read["data"] == {"asyncResult": None}
    assert response.status_code == 200
    assert len(json.loads(body)["data"]["ledgerExport"]) == 100
    assert error["extensions"]["size"] == len(body)


async def test_reads_past_the_edges_memory_for_results_wait_their_turn_or_are_told_to_retry(
    settings: Settings,
) -> None:
    # Room for one 10 kB result read whole at a time, across every request.
    configured = settings.replace(jwt_secret=SECRET, **SMALL_LIMITS, max_reading_bytes=15_000)
    edge = create_edge(configured)
    memory: ResultMemory = edge.state.result_memory
    async with (
        running(create_projector(configured)),
        running(create_executor(configured)),
        serving(edge, configured.http_port) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        ids = [(await finished_result(http, 20))[0] for _ in range(2)]
        # Six at once: each waits until the answer holding the one before is sent.
        reads = await asyncio.gather(*(call(http, RESULT, {"id": i}) for i in ids * 3))
        held_after_reads = memory.held
        # Another request holding all the room for longer than a read waits for it.
        memory.wait_s = 0.2
        assert await memory.take(15_000)
        busy = await call(http, RESULT, {"id": ids[0]})
        memory.give_back(15_000)
        again = await call(http, RESULT, {"id": ids[0]})

    assert all(len(read["data"]["asyncResult"]["data"]) > 9_000 for read in reads)
    assert held_after_reads == 0
    (error,) = busy["errors"]
    assert error["extensions"]["code"] == "RESULT_READS_BUSY"
    assert error["extensions"]["dataUrl"] == f"/results/{ids[0]}"
    assert busy["data"] == {"asyncResult": None}
    assert again["data"]["asyncResult"]["data"] == reads[0]["data"]["asyncResult"]["data"]
    assert memory.held == 0


async def test_results_over_the_hard_cap_end_too_large_and_bad_sizes_are_refused(
    small: httpx.AsyncClient,
) -> None:
    _, too_large = await finished_result(small, 300)  # about 156 kB, over 100 kB
    refused = await call(small, "{ ledgerExport(rows: 400001) { line } }", {})
    unauthenticated = await small.get(f"/results/{uuid.uuid4()}")
    malformed, malformed_body = await download(small, "/results/not-an-id")
    missing, missing_body = await download(small, f"/results/{uuid.uuid4()}")

    assert too_large == {"status": "ERROR", "errorCode": "RESULT_TOO_LARGE", "dataUrl": None}
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (malformed.status_code, malformed_body) == (missing.status_code, missing_body)
    assert missing.status_code == 404


async def test_an_action_output_kept_in_the_bucket_reads_as_any_other(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, js: JetStreamContext
) -> None:
    demo_port = free_port()
    monkeypatch.setenv("ASYNCGATE_DEMO_HANDLER_URL", f"http://127.0.0.1:{demo_port}")
    # Every output kept apart, however small: the demo's order is a few hundred bytes.
    settings = settings.replace(actions_file=ACTIONS_FILE, inline_result_bytes=1)
    async with (
        serving(demo_handler, demo_port),
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        queued = await graphql(
            client, HASURA_SEED_MUTATION, {"order_input": {"product_id": "p-7", "quantity": 3}}
        )
        action_id = queued["data"]["place_order"]
        url = str(client.base_url).replace("http://", "ws://") + "/graphql"
        async with graphql_websocket(url) as ws:
            sid = await ws.start(HASURA_SEED_SUBSCRIPTION.replace(HASURA_SEED_ID, action_id))
            pushed = (await asyncio.wait_for(ws.collect({sid}), 20))[sid]
        query = await graphql(client, f'{{ place_order(id: "{action_id}") {{ output errors }} }}')

    final = pushed[-1]["payload"]["data"]["place_order"]
    assert final["errors"] is None
    assert (final["output"]["product_id"], final["output"]["status"]) == ("p-7", "placed")
    assert query["data"]["place_order"] == final
    [completed] = [e for _, e in await stored_events(js) if isinstance(e, OperationCompleted)]
    assert completed.response is None
    assert completed.response_ref is not None


@pytest.mark.parametrize(
    "race",
    [
        # It read the facts before the winner was stored: its guarded write is refused.
        "refused",
        # Its guard passes, but the winner took the id every ending of the operation takes:
        # JetStream answers it as a duplicate of the winner.
        "deduplicated",
    ],
)
async def test_an_outcome_that_loses_to_another_attempts_removes_its_object(
    event_log: EventLog, js: JetStreamContext, race: str
) -> None:
    operation_id = f"{race}-race"
    request = OperationRequested(
        operation_id=operation_id, tenant="t", principal="u", trace_id="tr", query="{ a }"
    )
    await event_log.append(request, msg_id=operation_id)
    winner = OperationCompleted(**correlation_of(request), response={"data": {"a": 1}})
    winner_id = terminal_msg_id(operation_id) if race == "deduplicated" else f"{race}.winner"
    won_at = await event_log.append(winner, msg_id=winner_id)
    results = ResultStore(js, event_log.inbox)
    loser = OperationCompleted(**correlation_of(request), response={"data": {"a": "x" * 5000}})
    name = result_object_name(operation_id, loser.event_id)

    stored = await record_outcome(
        event_log,
        request,
        loser,
        # "refused": it read the history when it was empty (0), before the winner.
        after=won_at if race == "deduplicated" else 0,
        limits=ResultLimits(max_payload=1 << 20, inline_bytes=1024),
        results=results,
    )

    assert stored is None
    assert not await results.exists(name)
    facts = await event_log.facts("t", operation_id)
    assert facts.terminal is not None
    assert facts.terminal[1].event_id == winner.event_id
