"""Submits through the compiled path answer exactly as the general GraphQL path does.

Each request is sent twice to a real edge: as it is, which a compilable document takes through
the compiled path, and with an empty ``extensions`` entry in its body, which always takes the
general path. The two answers must agree in status, media type and body, ids and timestamps
aside; and a failed submit queues nothing, on either path.
"""

import re
import uuid
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.events import OperationRequested
from examples.ledger.schema import schema as ledger_schema
from services.common.settings import Settings
from services.edge.compiled_submits import CompiledSubmits
from services.edge.schema import build_schema
from services.edge.shape_limits import ShapeLimits
from tests.stack import serving_edge, stored_events

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBMIT = "mutation Submit($query: String!) { asyncQuery(query: $query) { operationId status } }"
EVERY_LEAF = """mutation Every($q: String!, $args: Dictionary, $key: String) {
  queued: asyncQuery(query: $q, args: $args, idempotencyKey: $key, startWithin: 60, timeout: 30) {
    __typename operationId id: operationId status error errorCode createdAt startedAt
    completedAt attempts dataUrl status
  }
}"""
LEDGER = "{ useCompany(no: 1) { no } }"
WITH_ARGS = "query Q($no: Int!) { useCompany(no: $no) { no } }"

Case = tuple[str, dict[str, Any] | None, str | None]
# (document, variables, operation name): the first group compiles, the second does not.
COMPILED: list[Case] = [
    (SUBMIT, {"query": LEDGER}, None),
    (SUBMIT, {"query": LEDGER}, "Submit"),
    (EVERY_LEAF, {"q": WITH_ARGS, "args": {"no": 7}, "key": "k-{n}"}, None),
    ('mutation { asyncQuery(query: "{ slowReport(seconds: 0) }") { status } }', None, None),
    (
        'mutation { asyncQuery(query: "query Q($no: Int!) { useCompany(no: $no) { no } }", '
        'args: {no: 3}, operationName: "Q") { operationId } }',
        None,
        None,
    ),
    # Refused by the resolver: answered by the general path from the compiled one.
    (SUBMIT, {"query": "{ noSuchField }"}, None),
    (SUBMIT, {"query": "{"}, None),
    (
        'mutation { asyncQuery(query: "{ slowReport(seconds: 0) }", timeout: -1) { status } }',
        None,
        None,
    ),
    (
        'mutation { asyncQuery(query: "{ slowReport(seconds: 0) }", '
        'callbackUrl: "http://169.254.169.254/") { status } }',
        None,
        None,
    ),
]
GENERAL: list[Case] = [
    (SUBMIT, {"query": 5}, None),
    (SUBMIT, {}, None),
    (SUBMIT, {"query": LEDGER}, "Other"),
    (
        "mutation($q: String!) { asyncQuery(query: $q) { status progress { done } } }",
        {"q": LEDGER},
        None,
    ),
    (
        "mutation($q: String!) { asyncQuery(query: $q) { ...F } } "
        "fragment F on AsyncOperation { status }",
        {"q": LEDGER},
        None,
    ),
    (
        "mutation($q: String!) { asyncQuery(query: $q) { status @skip(if: false) } }",
        {"q": LEDGER},
        None,
    ),
    ("mutation($q: String!) { asyncQuery(query: $q) { nope } }", {"q": LEDGER}, None),
    ("mutation { asyncQuery(query: 1) { status } }", None, None),
]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)")


def _normalized(text: str) -> Any:
    for pattern, stand_in in ((_UUID, "<id>"), (_HEX32, "<trace>"), (_TIME, "<time>")):
        text = pattern.sub(stand_in, text)
    return text


async def _both_ways(
    edge: httpx.AsyncClient,
    case: Case,
    number: int,
    accept: str,
) -> tuple[tuple[int, str, Any], tuple[int, str, Any]]:
    document, variables, name = case
    answers = []
    for general in (False, True):
        body: dict[str, Any] = {"query": document}
        if variables is not None:
            # A fresh idempotency key per request, so neither answer is the other's.
            body["variables"] = {
                k: v.format(n=f"{number}-{general}") if isinstance(v, str) and k == "key" else v
                for k, v in variables.items()
            }
        if name is not None:
            body["operationName"] = name
        if general:
            body["extensions"] = {}
        response = await edge.post("/graphql", json=body, headers={"accept": accept})
        answers.append(
            (response.status_code, response.headers["content-type"], _normalized(response.text))
        )
    return answers[0], answers[1]


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_submit_answers_the_same_whichever_path_takes_it(
    settings: Settings, js: JetStreamContext, accept: str
) -> None:
    allowed = settings.model_copy(update={"callback_allowed_hosts": "example.com"})
    accepted = 0
    async with serving_edge(allowed) as edge:
        for number, case in enumerate(COMPILED + GENERAL):
            compiled, general = await _both_ways(edge, case, number, accept)
            assert compiled == general, case[0]
            accepted += 0 if '"errors"' in compiled[2] else 1
    requests = [event for _, event in await stored_events(js)]
    # Two for each accepted case (one each way), none for any refused one.
    assert accepted == 8
    assert len(requests) == 2 * accepted
    assert all(isinstance(r, OperationRequested) for r in requests)


def test_only_a_plain_asyncquery_mutation_of_leaves_compiles() -> None:
    settings = Settings()
    shape = ShapeLimits.from_settings(settings)
    compiled = CompiledSubmits(build_schema(ledger_schema, shape)._schema, shape)
    for document, _, _ in COMPILED:
        assert compiled.plan_for(document) is not None, document
    for document, _, _ in GENERAL[3:]:
        assert compiled.plan_for(document) is None, document


async def test_a_submit_over_the_users_limit_is_refused_alike_and_queues_nothing(
    settings: Settings, js: JetStreamContext
) -> None:
    limited = settings.model_copy(update={"max_active_per_user": 2})
    async with serving_edge(limited) as edge:
        for _ in range(2):
            accepted = await edge.post(
                "/graphql", json={"query": SUBMIT, "variables": {"query": LEDGER}}
            )
            assert accepted.json()["data"]["asyncQuery"]["status"] == "QUEUED"
        # Nothing runs them (no executor): the third is over the limit, on either path.
        compiled, general = await _both_ways(edge, (SUBMIT, {"query": LEDGER}, None), 0, "*/*")
    assert compiled == general
    assert '"TOO_MANY_OPERATIONS"' in compiled[2]
    assert len(await stored_events(js)) == 2
    assert all(str(uuid.UUID(e.operation_id)) for _, e in await stored_events(js))
