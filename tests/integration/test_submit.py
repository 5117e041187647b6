"""Queueing through a real edge (uvicorn, nats-server): the ids a request hands out."""

import uuid

import pytest
from nats.js import JetStreamContext

from contracts.events import OperationRequested
from services.common.settings import Settings
from tests.stack import graphql, serving_edge, stored_events

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

TWO_IN_ONE = """mutation {
  a: asyncQuery(query: "{ slowReport(seconds: 0) }") { operationId }
  b: asyncQuery(query: "{ slowReport(seconds: 0) }") { operationId }
}"""


async def test_every_operation_gets_its_own_id_and_is_stored_once(
    settings: Settings, js: JetStreamContext
) -> None:
    async with serving_edge(settings) as edge:
        answers = [await graphql(edge, TWO_IN_ONE) for _ in range(3)]

    operation_ids = [
        answer["data"][alias]["operationId"] for answer in answers for alias in ("a", "b")
    ]
    trace_ids = [answer["extensions"]["asyncgate-trace-id"] for answer in answers]
    requests = [event for _, event in await stored_events(js)]
    assert len(set(operation_ids)) == 6
    assert all(str(uuid.UUID(op)) == op for op in operation_ids)
    assert len(set(trace_ids)) == 3
    assert sorted(r.operation_id for r in requests) == sorted(operation_ids)
    assert all(isinstance(r, OperationRequested) for r in requests)
    # Event ids stay unique per stored event, and each request is traced by its own id.
    assert len({r.event_id for r in requests}) == 6
    assert {r.trace_id for r in requests} == set(trace_ids)
