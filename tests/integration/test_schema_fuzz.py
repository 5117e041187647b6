"""A property-based fuzz of the served schema: documents generated from the edge's own
introspection (valid ones, and deliberately invalid ones), every answer a coded one. Through a
real uvicorn edge (the demo actions configured) and a real nats-server, in a small budget."""

from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
from graphql import (
    GraphQLSchema,
    NameNode,
    ObjectFieldNode,
    ObjectValueNode,
    build_client_schema,
    get_introspection_query,
)
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from hypothesis_graphql import strategies as graphql_st

from examples.actions import ACTIONS_FILE
from tests.stack import PYTHON_DETAILS, edge_in_background, environment

pytestmark = [pytest.mark.nats, pytest.mark.e2e]


def _object(fields: dict[str, int]) -> ObjectValueNode:
    return nodes.Object(
        [
            ObjectFieldNode(name=NameNode(value=name), value=nodes.Int(value))
            for name, value in fields.items()
        ]
    )


# The scalars hypothesis-graphql cannot know: asyncQuery's args and Hasura's action scalars.
CUSTOM_SCALARS = {
    "Dictionary": st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True), st.integers(-5, 5), max_size=2
    ).map(_object),
    "uuid": st.uuids().map(str).map(nodes.String),
    "timestamptz": st.datetimes().map(lambda moment: moment.isoformat() + "Z").map(nodes.String),
    "json": st.text(max_size=10).map(nodes.String),
    "jsonb": st.text(max_size=10).map(nodes.String),
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of an edge serving the ledger and the demo actions."""
    with (
        environment(ASYNCGATE_DEMO_HANDLER_URL="http://127.0.0.1:9"),  # refused at once
        edge_in_background(
            tmp_path_factory.mktemp("nats"),
            actions_file=ACTIONS_FILE,
            max_active_per_user=0,
            min_start_interval_s=0,
        ) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def served_schema(edge: httpx.Client) -> GraphQLSchema:
    """The schema the edge serves, as a client sees it by introspection."""
    response = edge.post("/graphql", json={"query": get_introspection_query()})
    return build_client_schema(response.json()["data"])


def assert_coded(response: httpx.Response) -> None:
    """Not a 5xx, nothing of Python's, and every error with a code."""
    assert response.status_code < 500, response.text
    assert not [word for word in PYTHON_DETAILS if word in response.text], response.text
    body: dict[str, Any] = response.json()
    for error in body.get("errors") or []:
        assert isinstance(error["extensions"]["code"], str), error


@pytest.mark.parametrize("mode", [graphql_st.Mode.POSITIVE, graphql_st.Mode.NEGATIVE])
def test_generated_documents_always_get_coded_answers(
    edge: httpx.Client, served_schema: GraphQLSchema, mode: graphql_st.Mode
) -> None:
    @hypothesis.settings(
        max_examples=120,
        suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
    )
    @hypothesis.given(
        document=graphql_st.from_schema(served_schema, mode=mode, custom_scalars=CUSTOM_SCALARS)
    )
    def sends(document: str) -> None:
        # A synchronous slowReport waits as long as it is told (up to an hour): longer than the
        # client's 30 s, which made this fuzz fail on the wait, not on an answer (seen once).
        hypothesis.assume("slowReport" not in document)
        assert_coded(edge.post("/graphql", json={"query": document}))

    sends()
