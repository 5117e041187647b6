"""Upstream mode's pure parts: the headers a call carries, sealing with key rotation, where an
operation runs, what an upstream's answer comes to, and the merged schema."""

import base64
from pathlib import Path

import pytest
from graphql import OperationType, build_schema, get_operation_ast, parse

from contracts.errors import ErrorCode
from examples.ledger.schema import schema as ledger_schema
from services.common.identity import Principal, session_variables
from services.common.settings import ConfigurationError, Settings
from services.common.target import TargetCallError
from services.common.upstream.config import UpstreamConfig
from services.common.upstream.headers import parse_headers, upstream_headers
from services.common.upstream.schema import (
    UpstreamSchemaError,
    UpstreamUnavailableError,
    schema_from_introspection,
    schema_from_sdl,
)
from services.common.upstream.sealing import KeyRing, UnsealError
from services.common.upstream.target import response_of
from services.edge.forwarding import Forwarding, merged_schema
from services.edge.routing import Route, root_fields, route
from services.edge.schema import build_schema as build_edge_schema
from services.edge.shape_limits import ShapeLimits

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"b" * 16).decode().rstrip("=")


# Headers


def test_the_call_carries_the_gateways_headers_and_the_callers_identity() -> None:
    principal = Principal.of("acme", "alice", {"x-hasura-role": "accountant"})

    headers = upstream_headers(
        {"X-Hasura-Admin-Secret": "s3cret", "X-Asyncgate-User": "forged"},
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        session=session_variables(principal),
    )

    assert headers == {
        "X-Hasura-Admin-Secret": "s3cret",
        "X-Asyncgate-Tenant": "acme",
        "X-Asyncgate-User": "alice",
        "X-Hasura-Role": "accountant",
        "X-Hasura-User-Id": "alice",
        "X-Hasura-Tenant-Id": "acme",
    }


def test_no_role_is_made_up_and_authorization_only_travels_when_given() -> None:
    plain = upstream_headers(
        {"Authorization": "Bearer gateway"}, tenant_id="t", user_id="u", session={}
    )
    forwarded = upstream_headers(
        {"authorization": "Bearer gateway"},
        tenant_id="t",
        user_id="u",
        session={},
        authorization="Bearer client",
    )

    assert "X-Hasura-Role" not in plain
    assert plain["Authorization"] == "Bearer gateway"
    assert [v for k, v in forwarded.items() if k.lower() == "authorization"] == ["Bearer client"]


def test_ids_that_cannot_be_header_values_are_percent_encoded() -> None:
    headers = upstream_headers({}, tenant_id="t", user_id="Åse\r\nX-Evil: 1", session={})

    assert headers["X-Asyncgate-User"] == "%C3%85se%0D%0AX-Evil%3A%201"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ('["a"]', "JSON object"),
        ('{"bad name": "v"}', "no header name"),
        ('{"X-Key": 1}', "printable ASCII"),
        ('{"X-Key": "line\\nbreak"}', "printable ASCII"),
    ],
)
def test_configured_headers_must_be_a_json_object_of_strings(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        parse_headers(text)
    assert "line" not in str(refused.value)  # values (secrets) are never quoted


# Sealing


def test_a_sealed_secret_opens_only_for_its_operation() -> None:
    ring = KeyRing.parse(f"k1:{KEY_A}")
    sealed = ring.seal("Bearer xyz", bound_to="acme.alice.op-1")

    assert "xyz" not in sealed.ciphertext
    assert ring.open(sealed, bound_to="acme.alice.op-1") == "Bearer xyz"
    with pytest.raises(UnsealError):
        ring.open(sealed, bound_to="acme.mallory.op-1")


def test_keys_rotate_by_id_the_first_sealing_and_every_one_opening() -> None:
    old = KeyRing.parse(f"k1:{KEY_A}")
    sealed_before = old.seal("Bearer before", bound_to="op")
    rotated = KeyRing.parse(f"k2:{KEY_B},k1:{KEY_A}")
    sealed_after = rotated.seal("Bearer after", bound_to="op")
    retired = KeyRing.parse(f"k2:{KEY_B}")

    assert sealed_after.kid == "k2"
    assert rotated.open(sealed_before, bound_to="op") == "Bearer before"
    assert retired.open(sealed_after, bound_to="op") == "Bearer after"
    with pytest.raises(UnsealError, match="k1"):
        retired.open(sealed_before, bound_to="op")
    with pytest.raises(UnsealError, match="k2"):
        old.open(sealed_after, bound_to="op")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("k1", "key-id:base64-key"),
        ("k 1:" + KEY_A, "key-id:base64-key"),
        ("k1:!!!", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "5 bytes"),
        (f"k1:{KEY_A},k1:{KEY_A}", "twice"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        KeyRing.parse(text)
    assert KEY_A not in str(refused.value)


def test_forwarding_authorization_needs_keys_and_a_url_needs_a_scheme() -> None:
    with pytest.raises(ConfigurationError, match="ASYNCGATE_UPSTREAM_FORWARD_KEYS"):
        UpstreamConfig.from_settings(
            Settings(upstream_url="http://api/graphql", upstream_forward_authorization=True)
        )
    with pytest.raises(ConfigurationError, match="http"):
        UpstreamConfig.from_settings(Settings(upstream_url="api.example.com/graphql"))


# Routing

OWN = frozenset({"asyncQuery", "asyncResult", "asyncRequests"})


def _route(query: str) -> Route:
    document = parse(query)
    operation = get_operation_ast(document)
    assert operation is not None
    return route(root_fields(document, operation), OWN)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("{ asyncRequests { operationId } }", Route.OWN),
        ("{ __typename }", Route.OWN),
        ("{ __schema { types { name } } }", Route.OWN),
        ("{ __typename asyncResult(id: 1) { status } }", Route.OWN),
        ("{ whoami }", Route.UPSTREAM),
        ("{ __typename whoami }", Route.UPSTREAM),
        ("{ whoami asyncRequests { operationId } }", Route.MIXED),
        ("{ ...F } fragment F on Query { whoami }", Route.UPSTREAM),
        ("{ whoami ... on Query { ...F } } fragment F on Query { asyncResult { s } }", Route.MIXED),
        ("{ ...F ...F } fragment F on Query { ...F whoami }", Route.UPSTREAM),
    ],
)
def test_where_an_operation_runs(query: str, expected: Route) -> None:
    assert _route(query) == expected


# Answers


@pytest.mark.parametrize(
    ("status", "content", "code"),
    [
        (503, b'{"message": "down"}', ErrorCode.UPSTREAM_FAILED),
        (500, b"<html>", ErrorCode.UPSTREAM_FAILED),
        (429, b"", ErrorCode.UPSTREAM_FAILED),
        (401, b'{"errors": [{"message": "bad token"}]}', ErrorCode.UPSTREAM_REFUSED),
        (403, b"forbidden", ErrorCode.UPSTREAM_REFUSED),
        (302, b"", ErrorCode.UPSTREAM_BAD_RESPONSE),
        (200, b"<html>", ErrorCode.UPSTREAM_BAD_RESPONSE),
        (200, b'{"result": 1}', ErrorCode.UPSTREAM_BAD_RESPONSE),
    ],
)
def test_answers_that_are_no_result_are_coded(status: int, content: bytes, code: str) -> None:
    with pytest.raises(TargetCallError) as failure:
        response_of(status, content)
    assert failure.value.code == code


def test_a_refusal_keeps_the_upstreams_own_messages() -> None:
    with pytest.raises(TargetCallError) as failure:
        response_of(401, b'{"errors": [{"message": "bad token"}]}')
    assert failure.value.message == "the upstream refused the call (401): bad token"
    assert failure.value.response == {"errors": [{"message": "bad token"}]}


def test_graphql_errors_in_a_200_are_the_result() -> None:
    body = b'{"data": null, "errors": [{"message": "no", "extensions": {"code": "NOT_FOUND"}}]}'
    assert response_of(200, body)["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_an_introspection_refusal_points_at_the_schema_file() -> None:
    refused = b'{"data": null, "errors": [{"message": "introspection is disabled"}]}'
    with pytest.raises(UpstreamSchemaError, match="ASYNCGATE_UPSTREAM_SCHEMA_FILE"):
        schema_from_introspection("http://api", 200, refused)
    with pytest.raises(UpstreamUnavailableError) as failing:
        schema_from_introspection("http://api", 502, b"")
    assert not isinstance(failing.value, UpstreamSchemaError)


def test_an_unusable_sdl_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "api.graphql"
    broken.write_text("type Query { a: Nope }")
    with pytest.raises(UpstreamSchemaError, match=r"api\.graphql"):
        schema_from_sdl(broken)
    with pytest.raises(UpstreamSchemaError, match=r"missing\.graphql"):
        schema_from_sdl(tmp_path / "missing.graphql")


# The merged schema


def _own() -> Forwarding:
    return Forwarding.around(
        build_edge_schema(None, ShapeLimits.from_settings(Settings()))._schema,
        forward_authorization=False,
        keys=None,
    )


def test_the_merged_schema_has_both_sides_under_the_upstreams_root_names() -> None:
    own = build_edge_schema(None, ShapeLimits.from_settings(Settings()))._schema
    upstream = build_schema("schema { query: query_root } type query_root { hello: String }")

    merged = merged_schema(own, upstream)

    assert merged.query_type is not None
    assert merged.query_type.name == "query_root"
    assert {"hello", "asyncResult", "asyncRequests"} <= set(merged.query_type.fields)
    assert merged.mutation_type is not None
    assert "asyncQuery" in merged.mutation_type.fields
    assert _own().own_fields[OperationType.QUERY] == {"asyncResult", "asyncRequests"}


@pytest.mark.parametrize(
    ("sdl", "clash"),
    [
        ("type Query { asyncResult: String }", "asyncResult"),
        ("type Query { a: AsyncOperation } type AsyncOperation { x: Int }", "AsyncOperation"),
    ],
)
def test_what_both_define_is_refused_by_name(sdl: str, clash: str) -> None:
    own = build_edge_schema(None, ShapeLimits.from_settings(Settings()))._schema
    with pytest.raises(UpstreamSchemaError, match=clash):
        merged_schema(own, build_schema(sdl))


def test_the_ledger_merges_whole() -> None:
    own = build_edge_schema(None, ShapeLimits.from_settings(Settings()))._schema
    merged = merged_schema(own, ledger_schema._schema)
    assert merged.query_type is not None
    assert {"useCompany", "whoami", "asyncResult"} <= set(merged.query_type.fields)


def test_upstream_settings_without_an_upstream_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs ASYNCGATE_UPSTREAM_URL"):
        Settings.from_env({"ASYNCGATE_UPSTREAM_SCHEMA_FILE": "api.graphql"})
