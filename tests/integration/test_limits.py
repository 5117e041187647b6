"""The seed's per-user limits, holding across two edge replicas (state in NATS KV with CAS)."""

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.names import STREAM
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.edge.auth import issue_token
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
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
    limited = dataclasses.replace(
        settings, jwt_secret=SECRET, max_active_per_user=3, min_start_interval_s=0
    )
    async with (
        serving_edge(limited) as a,
        serving_edge(dataclasses.replace(limited, http_port=free_port())) as b,
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
    assert (await js.stream_info(STREAM)).state.messages == 4, "nothing refused was queued"


async def test_a_new_start_waits_the_minimum_interval_even_on_another_edge(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = dataclasses.replace(
        settings, jwt_secret=SECRET, max_active_per_user=0, min_start_interval_s=3
    )
    async with (
        serving_edge(limited) as a,
        serving_edge(dataclasses.replace(limited, http_port=free_port())) as b,
    ):
        alice = as_user(limited, "alice")
        first = await post(a, alice, QUICK)
        second = await post(b, alice, QUICK)

    assert code_of(first) is None
    assert code_of(second) == "RATE_LIMITED"
    retry_after = second["errors"][0]["extensions"]["retryAfter"]
    assert 1 <= retry_after <= 3
    assert (await js.stream_info(STREAM)).state.messages == 1


async def test_a_finished_operation_frees_its_place(settings: Settings) -> None:
    limited = dataclasses.replace(
        settings, jwt_secret=SECRET, max_active_per_user=1, min_start_interval_s=0
    )
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
