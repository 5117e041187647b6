"""The seed's per-user limits, holding across two edge replicas (state in NATS KV with CAS)."""

import asyncio
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.events import Correlation, OperationCompleted, OperationFailed, OperationRequested
from contracts.names import LIMITS_BUCKET, limits_key, view_key
from services.common.active_operations import (
    EndedOperations,
    UserLimits,
    encode_limits,
    read_limits,
)
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.edge.auth import issue_token
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.projector.replay import stream_size
from tests.stack import eventually, running, serving_edge

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SECRET = "limits-test-secret-long-enough-for-hs256!"
SLOW = 'mutation { asyncQuery(query: "{ slowReport(seconds: 30) }") { operationId } }'
QUICK = 'mutation { asyncQuery(query: "{ slowReport(seconds: 0) }") { operationId } }'


def as_user(settings: Settings, user: str) -> dict[str, str]:
    """Headers of a request by ``user``."""
    token = issue_token(settings, tenant="acme", user=user, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def post(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> dict[str, Any]:
    """One GraphQL request; never a 5xx."""
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def code_of(body: dict[str, Any]) -> str | None:
    """The code of the first error, if any."""
    errors = body.get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


async def test_at_most_n_active_operations_across_two_edges(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = settings.replace(jwt_secret=SECRET, max_active_per_user=3, min_start_interval_s=0)
    async with (
        serving_edge(limited) as a,
        serving_edge(limited.replace(http_port=free_port())) as b,
    ):
        alice = as_user(limited, "alice")
        answers = await asyncio.gather(*(post((a, b)[n % 2], alice, SLOW) for n in range(12)))
        other_user = await post(b, as_user(limited, "bob"), SLOW)

    accepted = [body for body in answers if code_of(body) is None]
    refused = [body for body in answers if code_of(body) is not None]
    assert len(accepted) == 3
    assert {code_of(body) for body in refused} == {"TOO_MANY_OPERATIONS"}
    assert all(body["errors"][0]["extensions"]["retryAfter"] >= 1 for body in refused)
    assert code_of(other_user) is None, "limits are per user"
    assert await stream_size(js) == 4, "nothing refused was queued"


async def test_a_new_start_waits_the_minimum_interval_even_on_another_edge(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = settings.replace(jwt_secret=SECRET, max_active_per_user=0, min_start_interval_s=3)
    async with (
        serving_edge(limited) as a,
        serving_edge(limited.replace(http_port=free_port())) as b,
    ):
        alice = as_user(limited, "alice")
        first = await post(a, alice, QUICK)
        second = await post(b, alice, QUICK)

    assert code_of(first) is None
    assert code_of(second) == "RATE_LIMITED"
    retry_after = second["errors"][0]["extensions"]["retryAfter"]
    assert 1 <= retry_after <= 3
    assert await stream_size(js) == 1


async def test_a_finished_operation_frees_its_place(settings: Settings) -> None:
    limited = settings.replace(jwt_secret=SECRET, max_active_per_user=1, min_start_interval_s=0)
    async with (
        running(create_projector(limited)),
        running(create_executor(limited)),
        serving_edge(limited) as edge,
    ):
        alice = as_user(limited, "alice")
        first = await post(edge, alice, QUICK)
        operation_id = first["data"]["asyncQuery"]["operationId"]

        async def finished() -> bool | None:
            response = await edge.post(
                "/graphql",
                json={"query": f'{{ asyncResult(id: "{operation_id}") {{ status }} }}'},
                headers=alice,
            )
            return True if response.json()["data"]["asyncResult"]["status"] == "SUCCESS" else None

        await eventually(finished, what="the first operation finishing")
        second = await post(edge, alice, QUICK)

    assert code_of(first) is None
    assert code_of(second) is None


async def limits_of(js: JetStreamContext, user: str) -> UserLimits:
    """What the limits bucket holds for ``user`` of tenant acme."""
    state, _ = await read_limits(await js.key_value(LIMITS_BUCKET), limits_key("acme", user))
    return state


async def test_at_the_limit_a_user_can_submit_again_once_an_operation_ends(
    settings: Settings, js: JetStreamContext, kv: KeyValue
) -> None:
    limited = settings.replace(jwt_secret=SECRET, max_active_per_user=1, min_start_interval_s=0)
    alice = as_user(limited, "alice")
    async with (
        running(create_projector(limited)),
        running(create_executor(limited)),
        serving_edge(limited) as edge,
    ):
        first = await post(edge, alice, QUICK)
        first_id = first["data"]["asyncQuery"]["operationId"]

        async def released() -> bool | None:
            return True if first_id not in (await limits_of(js, "alice")).active else None

        await eventually(released, what="the projector releasing the ended operation")
        # The submit decides from the user's count alone: with the view gone (an edge that
        # read views would count an operation reserved moments ago and not seen as active)
        # the place is free all the same.
        await kv.purge(view_key("acme", "alice", first_id))
        second = await post(edge, alice, SLOW)
        third = await post(edge, alice, QUICK)

    assert code_of(first) is None
    assert code_of(second) is None, "the ended operation no longer counts"
    assert code_of(third) == "TOO_MANY_OPERATIONS", "the running one still does"
    assert set((await limits_of(js, "alice")).active) == {
        second["data"]["asyncQuery"]["operationId"]
    }


def envelope(operation_id: str, user: str = "alice") -> Correlation:
    """The envelope of an event of ``user``'s operation."""
    return {"operation_id": operation_id, "tenant": "acme", "principal": user, "trace_id": "t"}


async def test_an_ended_operation_is_released_once_whatever_replays_it(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = settings.replace(max_active_per_user=2)
    limits = await js.key_value(LIMITS_BUCKET)
    key = limits_key("acme", "alice")
    await limits.create(key, encode_limits(UserLimits(active={"op-1": 1.0, "op-2": 2.0})))
    ended = EndedOperations(limited)
    await ended.open(js)
    completed = OperationCompleted(**envelope("op-1"), response={"data": None})

    await ended.release(OperationRequested(**envelope("op-2"), query="{ a }"))
    await ended.release(completed)
    await ended.release(completed)  # a redelivery, or a replay folding it again
    await ended.release(OperationFailed(**envelope("op-9"), code="X", error="e"))
    # No key for bob: nothing to do, nothing created.
    await ended.release(OperationFailed(**envelope("op-1", "bob"), code="X", error="e"))

    assert (await limits_of(js, "alice")).active == {"op-2": 2.0}
    with pytest.raises(KeyNotFoundError):
        await limits.get(limits_key("acme", "bob"))
