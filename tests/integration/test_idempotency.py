"""Idempotency keys on asyncQuery: one operation per key and principal, across two edges."""

import asyncio
import hashlib
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from contracts.events import OperationRequested
from contracts.names import IDEMPOTENCY_BUCKET, idempotency_key
from services.common.identity import ANONYMOUS
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.edge.idempotency import STALE_CLAIM_S, document_digest
from tests.integration.test_limits import SECRET, as_user, code_of
from tests.stack import serving_edge, stored_events

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBMIT = """mutation($key: String, $q: String!) {
  asyncQuery(query: $q, idempotencyKey: $key) { operationId status }
}"""
REPORT = "{ slowReport(seconds: 0) }"
OTHER_REPORT = "{ slowReport(seconds: 1) }"


async def submit(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    key: str | None,
    query: str = REPORT,
) -> dict[str, Any]:
    """asyncQuery with ``key`` as its argument (None: no argument); never a 5xx."""
    response = await client.post(
        "/graphql",
        json={"query": SUBMIT, "variables": {"key": key, "q": query}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operation_of(body: dict[str, Any]) -> str:
    """The operation id a submit answered."""
    assert "errors" not in body, body
    return str(body["data"]["asyncQuery"]["operationId"])


async def requests_stored(js: JetStreamContext) -> list[OperationRequested]:
    """Every request event in the stream."""
    return [e for _, e in await stored_events(js) if isinstance(e, OperationRequested)]


async def test_one_key_through_two_edges_at_once_queues_one_operation(
    settings: Settings, js: JetStreamContext
) -> None:
    keyed = settings.replace(jwt_secret=SECRET)
    alice = as_user(keyed, "alice")
    keys = [f"order-{n}" for n in range(5)]
    async with (
        serving_edge(keyed) as a,
        serving_edge(keyed.replace(http_port=free_port())) as b,
    ):
        # Every key submitted twice at once, once through each edge.
        answers = await asyncio.gather(
            *(submit(edge, alice, key=key) for key in keys for edge in (a, b))
        )
        again = await submit(b, alice, key=keys[0])
        other_document = await submit(a, alice, key=keys[0], query=OTHER_REPORT)
        bob = await submit(a, as_user(keyed, "bob"), key=keys[0])

    ids = [operation_of(body) for body in answers]
    pairs = [ids[n : n + 2] for n in range(0, len(ids), 2)]
    assert all(first == second for first, second in pairs), pairs
    assert len({first for first, _ in pairs}) == len(keys)
    assert operation_of(again) == pairs[0][0]
    assert code_of(other_document) == "IDEMPOTENCY_KEY_REUSED"
    assert operation_of(bob) != pairs[0][0], "keys are per principal"
    stored = await requests_stored(js)
    assert sorted(r.operation_id for r in stored if r.principal == "alice") == sorted(
        first for first, _ in pairs
    ), "one request event per key"


async def test_the_header_gives_the_key_and_the_argument_wins_over_it(
    settings: Settings, js: JetStreamContext
) -> None:
    async with serving_edge(settings) as edge:
        by_header = await submit(edge, {"Idempotency-Key": "h-1"}, key=None)
        header_again = await submit(edge, {"Idempotency-Key": "h-1"}, key=None)
        argument_wins = await submit(edge, {"Idempotency-Key": "h-1"}, key="a-1")
        argument_alone = await submit(edge, {}, key="a-1")
        unkeyed = [await submit(edge, {}, key=None) for _ in range(2)]

    assert operation_of(header_again) == operation_of(by_header)
    assert operation_of(argument_wins) != operation_of(by_header)
    assert operation_of(argument_alone) == operation_of(argument_wins)
    assert operation_of(unkeyed[0]) != operation_of(unkeyed[1]), "no key: as before"
    assert len(await requests_stored(js)) == 4


async def test_an_empty_or_overlong_key_is_refused(
    settings: Settings, js: JetStreamContext
) -> None:
    async with serving_edge(settings) as edge:
        empty = await submit(edge, {}, key="")
        overlong = await submit(edge, {}, key="k" * 256)
        empty_header = await submit(edge, {"Idempotency-Key": ""}, key=None)
        longest = await submit(edge, {}, key="k" * 255)

    assert [code_of(b) for b in (empty, overlong, empty_header)] == ["BAD_USER_INPUT"] * 3
    operation_of(longest)
    assert len(await requests_stored(js)) == 1


async def test_a_key_whose_submit_was_refused_can_be_used_again(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = settings.replace(jwt_secret=SECRET, max_active_per_user=1)
    alice = as_user(limited, "alice")
    async with serving_edge(limited) as edge:
        operation_of(await submit(edge, alice, key="first", query="{ slowReport(seconds: 30) }"))
        refused = await submit(edge, alice, key="second")
    assert code_of(refused) == "TOO_MANY_OPERATIONS"
    claims = await js.key_value(IDEMPOTENCY_BUCKET)
    with pytest.raises(KeyNotFoundError):
        await claims.get(idempotency_key("acme", "alice", hashlib.sha256(b"second").hexdigest()))


async def test_a_stale_claim_whose_operation_was_never_stored_is_taken_over(
    settings: Settings, js: JetStreamContext
) -> None:
    # What an edge leaves when it claimed a key, failed to queue and could not release it.
    claims = await js.key_value(IDEMPOTENCY_BUCKET)
    digest = document_digest({"query": REPORT, "variables": {}, "operation_name": None})
    lost = str(uuid.uuid4())
    record = {"operation_id": lost, "digest": digest, "claimed_at": time.time() - STALE_CLAIM_S - 1}
    anonymous = idempotency_key(
        ANONYMOUS.tenant, ANONYMOUS.user, hashlib.sha256(b"lost").hexdigest()
    )
    await claims.create(anonymous, msgspec.json.encode(record))
    async with serving_edge(settings) as edge:
        first = operation_of(await submit(edge, {}, key="lost"))
        second = operation_of(await submit(edge, {}, key="lost"))
    assert first == second != lost
    assert [r.operation_id for r in await requests_stored(js)] == [first]
