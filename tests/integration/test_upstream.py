"""Upstream mode end to end: asyncgate in front of a separate GraphQL server process (the example
ledger on uvicorn, tests/support/upstream.py), with a real nats-server, executor, projector
and an edge behind a real uvicorn server."""

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from contracts.events import OperationRequested
from contracts.names import EVENT_STREAMS
from examples.ledger.schema import schema as ledger_schema
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.common.upstream.schema import UpstreamSchemaError
from services.edge.app import create_app as create_edge
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.integration.test_ops import ops
from tests.integration.test_seed_examples import fetch, finished, submit
from tests.seed_requests import (
    ASYNC_QUERY,
    ASYNC_QUERY_WITH_ARGS,
    ASYNC_QUERY_WITH_ARGS_VARIABLES,
    ASYNC_REQUESTS,
    INNER_QUERY,
    SEED_RESULT_DATA,
)
from tests.stack import eventually, graphql, running, serving_edge, stored_events
from tests.support.processes import REPO_ROOT, ServiceProcess, service_env
from tests.support.upstream import UpstreamServer
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

JWT_SECRET = "upstream-test-secret-of-at-least-32-bytes"
GATEWAY_HEADERS = '{"X-Gateway-Key": "gw-secret"}'
OLD_KEY = base64.b64encode(bytes(range(32))).decode()
NEW_KEY = base64.b64encode(bytes(range(32, 64))).decode()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    """The upstream API, introspection allowed."""
    with UpstreamServer(tmp_path_factory.mktemp("upstream")) as server:
        yield server


@pytest.fixture(scope="module")
def closed_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    """The upstream API refusing introspection, as many public APIs do."""
    with UpstreamServer(tmp_path_factory.mktemp("closed"), introspection=False) as server:
        yield server


@pytest.fixture(autouse=True)
async def fresh_upstreams(upstream: UpstreamServer) -> None:
    """Nothing seen, nothing to fail, the first schema."""
    await upstream.control("/reset", {})


def upstream_settings(settings: Settings, server: UpstreamServer, **changes: Any) -> Settings:
    """``settings`` in upstream mode against ``server``, with a gateway header and retries."""
    return settings.replace(
        upstream_url=server.url,
        upstream_headers=SecretStr(GATEWAY_HEADERS),
        retry_attempts=3,
        retry_backoff_s=0.05,
        **changes,
    )


@pytest.fixture
async def stack(settings: Settings, upstream: UpstreamServer) -> AsyncIterator[httpx.AsyncClient]:
    """Edge, executor and projector in upstream mode."""
    configured = upstream_settings(settings, upstream)
    async with (
        running(create_projector(configured)),
        running(create_executor(configured)),
        serving_edge(configured) as client,
    ):
        yield client


def token(user: str, tenant: str, role: str) -> str:
    """A bearer token with Hasura-style claims."""
    claims = {
        "sub": user,
        "tenant": tenant,
        "exp": int(time.time()) + 600,
        "https://hasura.io/jwt/claims": {"x-hasura-default-role": role},
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def queue(inner: str) -> str:
    """An asyncQuery request for ``inner`` (which has no double quotes)."""
    return f'mutation {{ asyncQuery(query: "{inner}") {{ operationId status }} }}'


def graphql_calls(seen: list[dict[str, Any]], fragment: str) -> list[dict[str, Any]]:
    """The requests the upstream received whose body contains ``fragment``."""
    return [request for request in seen if fragment in request["body"]]


async def run_seeds(client: httpx.AsyncClient) -> None:
    """The seed's requests, as written, through asyncgate."""
    first = await submit(client, ASYNC_QUERY)
    second = await submit(client, ASYNC_QUERY_WITH_ARGS, ASYNC_QUERY_WITH_ARGS_VARIABLES)
    for operation_id in (first, second):
        result = await finished(client, operation_id)
        assert result["status"] == "SUCCESS", result
        assert result["data"] == SEED_RESULT_DATA
        assert await fetch(client, operation_id) == result

    async def both_listed() -> list[dict[str, Any]] | None:
        listed: list[dict[str, Any]] = (await graphql(client, ASYNC_REQUESTS))["data"][
            "asyncRequests"
        ]
        return listed if len(listed) == 2 else None

    listed = await eventually(both_listed, what="both operations listed")
    assert [item["operationId"] for item in listed] == [second, first]
    synchronous = await graphql(client, INNER_QUERY)
    synchronous.pop("extensions")
    assert json.dumps(synchronous, separators=(",", ":")) == SEED_RESULT_DATA


async def test_the_seed_requests_run_through_an_introspected_upstream(
    stack: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    await run_seeds(stack)

    # Two operations in the background and one synchronous call: each reached the upstream.
    assert len(graphql_calls(await upstream.seen(), "useCompany")) == 3


async def test_the_seed_requests_run_against_an_sdl_file_when_introspection_is_refused(
    settings: Settings, closed_upstream: UpstreamServer, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            closed_upstream.url, json={"query": "{ __schema { queryType { name } } }"}
        )
    refused = answer.json()
    assert refused["data"] is None
    with pytest.raises(UpstreamSchemaError, match="ASYNCGATE_UPSTREAM_SCHEMA_FILE"):
        create_edge(upstream_settings(settings, closed_upstream))
    sdl = tmp_path / "ledger.graphql"
    sdl.write_text(ledger_schema.as_str(), encoding="utf-8")
    configured = upstream_settings(settings, closed_upstream, upstream_schema_file=sdl)

    async with (
        running(create_projector(configured)),
        running(create_executor(configured)),
        serving_edge(configured) as client,
    ):
        await run_seeds(client)


async def test_the_edge_shows_both_schemas_and_routes_each_operation(
    stack: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    introspected = await graphql(
        stack, "{ __schema { queryType { name fields { name } } mutationType { name } } }"
    )
    fields = {f["name"] for f in introspected["data"]["__schema"]["queryType"]["fields"]}
    own_only = await graphql(stack, "{ asyncRequests { operationId } }")
    mixed = await graphql(stack, "{ whoami asyncRequests { operationId } }")
    invalid = await graphql(stack, "{ useCompany(no: 1) { nonsense } }")
    bad_variable = await graphql(
        stack, "query($no: Int!) { useCompany(no: $no) { no } }", {"no": "x"}
    )
    through_fragment = await graphql(stack, "query { ...Who } fragment Who on Query { me: whoami }")

    assert {"useCompany", "whoami", "slowReport", "asyncResult", "asyncRequests"} <= fields
    assert own_only["data"] == {"asyncRequests": []}
    assert [e["extensions"]["code"] for e in mixed["errors"]] == ["MIXED_OPERATION"]
    assert "asyncRequests" in mixed["errors"][0]["message"]
    assert "whoami" in mixed["errors"][0]["message"]
    assert [e["extensions"]["code"] for e in invalid["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert [e["extensions"]["code"] for e in bad_variable["errors"]] == ["BAD_USER_INPUT"]
    assert through_fragment["data"] == {"me": "anonymous"}
    assert "asyncgate-trace-id" in through_fragment["extensions"]
    # Only the fragment's operation was the upstream's to answer (besides introspection).
    seen = [call for call in await upstream.seen() if "IntrospectionQuery" not in call["body"]]
    assert len(seen) == 1
    assert "fragment Who" in seen[0]["body"]


async def test_over_a_websocket_the_upstreams_operations_are_forwarded_and_asyncs_answered(
    stack: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    url = str(stack.base_url).replace("http://", "ws://") + "/graphql"
    async with graphql_websocket(url) as ws:
        upstreams = await ws.start("query { me: whoami useCompany(no: 3) { no } }")
        own = await ws.start("{ asyncRequests { operationId } }")
        mixed = await ws.start("{ whoami asyncRequests { operationId } }")
        answers = await asyncio.wait_for(ws.collect({upstreams, own, mixed}), 30)

    [forwarded] = answers[upstreams]
    [listed] = answers[own]
    [refused] = answers[mixed]
    assert forwarded["payload"]["data"] == {"me": "anonymous", "useCompany": {"no": 3}}
    assert listed["payload"]["data"] == {"asyncRequests": []}
    assert [e["extensions"]["code"] for e in refused["payload"]["errors"]] == ["MIXED_OPERATION"]
    seen = [call for call in await upstream.seen() if "IntrospectionQuery" not in call["body"]]
    assert len(seen) == 1
    assert "useCompany" in seen[0]["body"]


async def test_the_upstream_is_told_who_asks_and_not_the_clients_credentials(
    settings: Settings, upstream: UpstreamServer
) -> None:
    configured = upstream_settings(settings, upstream, jwt_secret=SecretStr(JWT_SECRET))
    bearer = {"Authorization": f"Bearer {token('alice', 'acme', 'accountant')}"}
    async with (
        running(create_projector(configured)),
        running(create_executor(configured)),
        serving_edge(configured) as client,
    ):
        client.headers.update(bearer)
        synchronous = await graphql(client, "{ whoami }")
        operation_id = await submit(client, queue("{ whoami }"))
        result = await finished(client, operation_id)

    assert synchronous["data"] == {"whoami": "alice"}
    assert result["status"] == "SUCCESS"
    assert json.loads(result["data"]) == {"data": {"whoami": "alice"}}
    calls = graphql_calls(await upstream.seen(), "whoami")
    assert len(calls) == 2
    for call in calls:
        headers = call["headers"]
        assert headers["x-asyncgate-tenant"] == "acme"
        assert headers["x-asyncgate-user"] == "alice"
        assert headers["x-hasura-user-id"] == "alice"
        assert headers["x-hasura-tenant-id"] == "acme"
        assert headers["x-hasura-role"] == "accountant"
        assert headers["x-gateway-key"] == "gw-secret"
        assert "authorization" not in headers


async def test_an_upstream_503_is_retried_and_a_graphql_error_is_not(
    stack: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    await upstream.control("/fail", {"status": 503, "times": 2})
    retried = await submit(stack, queue("{ slowReport(seconds: 0) }"))
    retried_result = await finished(stack, retried)
    failed = await submit(
        stack,
        queue("{ useCompany(no: 0) { no } }"),
    )
    failed_result = await finished(stack, failed)
    await upstream.control("/fail", {"status": 503, "times": 1})
    synchronous = await graphql(stack, "{ whoami }")

    assert retried_result["status"] == "SUCCESS"
    assert json.loads(retried_result["data"]) == {"data": {"slowReport": "report ready after 0 s"}}
    assert len(graphql_calls(await upstream.seen(), "slowReport")) == 3
    codes = await graphql(
        stack, "query($id: String!) { asyncResult(id: $id) { attempts errorCode } }", {"id": failed}
    )
    assert failed_result["status"] == "ERROR"
    assert "no company has number 0" in failed_result["error"]
    assert codes["data"]["asyncResult"] == {"attempts": 1, "errorCode": "NOT_FOUND"}
    assert len(graphql_calls(await upstream.seen(), "useCompany(no: 0)")) == 1
    assert [e["extensions"]["code"] for e in synchronous["errors"]] == ["UPSTREAM_FAILED"]


async def test_an_opted_in_authorization_reaches_the_upstream_sealed_on_its_way(
    settings: Settings, upstream: UpstreamServer, js: JetStreamContext
) -> None:
    bearer = f"Bearer {token('alice', 'acme', 'accountant')}"
    edge_settings = upstream_settings(
        settings,
        upstream,
        jwt_secret=SecretStr(JWT_SECRET),
        upstream_forward_authorization=True,
        upstream_forward_keys=SecretStr(f"k2:{NEW_KEY},k1:{OLD_KEY}"),
    )
    # An executor not yet given the new key cannot open it; one holding both can.
    executor_settings = edge_settings.replace(upstream_forward_keys=SecretStr(f"k1:{OLD_KEY}"))
    async with (
        running(create_projector(edge_settings)),
        serving_edge(edge_settings) as client,
    ):
        client.headers["Authorization"] = bearer
        synchronous = await graphql(client, "{ whoami }")
        async with running(create_executor(executor_settings)):
            unreadable = await finished(client, await submit(client, queue("{ whoami }")))
        async with running(create_executor(edge_settings)):
            operation_id = await submit(client, queue("{ slowReport(seconds: 0) }"))
            result = await finished(client, operation_id)
        shown = await ops(edge_settings, "show", operation_id)

    assert synchronous["data"] == {"whoami": "alice"}
    assert unreadable["status"] == "ERROR"
    assert "k2" in unreadable["error"]
    assert result["status"] == "SUCCESS"
    calls = graphql_calls(await upstream.seen(), "slowReport")
    assert [call["headers"]["authorization"] for call in calls] == [bearer]
    assert graphql_calls(await upstream.seen(), "whoami")[0]["headers"]["authorization"] == bearer
    secret_part = bearer.rsplit(".", maxsplit=1)[-1]
    for stream in EVENT_STREAMS:
        info = await js.stream_info(stream)
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            stored = (await js.get_msg(stream, sequence)).data or b""
            assert secret_part.encode() not in stored
    requests = [e for _, e in await stored_events(js) if isinstance(e, OperationRequested)]
    assert {
        r.forwarded.authorization.kid for r in requests if r.forwarded and r.forwarded.authorization
    } == {"k2"}
    assert shown.exit_code == 0
    assert secret_part not in shown.output


def test_an_unreachable_upstream_stops_the_edge_with_one_line(tmp_path: Path) -> None:
    env = service_env(
        {
            "ASYNCGATE_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/graphql",
            "ASYNCGATE_UPSTREAM_TIMEOUT_S": "1",
            "ASYNCGATE_HTTP_PORT": str(free_port()),
        }
    )
    started = time.monotonic()
    finished_edge = subprocess.run(
        [sys.executable, "-m", "services.cli", "edge"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished_edge.returncode == 69
    assert "Traceback" not in finished_edge.stderr + finished_edge.stdout
    last = finished_edge.stderr.strip().splitlines()[-1]
    assert last.startswith("asyncgate: the upstream at http://127.0.0.1:")
    assert "unreachable" in last
    # It asked a few times with growing pauses before giving up.
    assert time.monotonic() - started >= 3


async def test_sighup_makes_the_edge_read_the_upstreams_schema_again(
    settings: Settings, upstream: UpstreamServer, tmp_path: Path
) -> None:
    env = {
        "ASYNCGATE_NATS_URL": settings.nats_url,
        "ASYNCGATE_HTTP_PORT": str(free_port()),
        "ASYNCGATE_UPSTREAM_URL": upstream.url,
        "ASYNCGATE_UPSTREAM_SCHEMA_REFRESH_S": "0",
    }
    newer = "{ upstreamVersion }"
    with ServiceProcess("edge", env, tmp_path) as edge:
        await edge.wait_ready()
        async with httpx.AsyncClient(base_url=edge.base_url) as client:
            before = await graphql(client, newer)
            await upstream.control("/schema", {"extra": True})
            os.kill(edge.pid, signal.SIGHUP)

            async def refreshed() -> dict[str, Any] | None:
                answer = await graphql(client, newer)
                return answer if answer.get("data") else None

            after = await eventually(refreshed, what="the new schema served")
            await asyncio.sleep(0)

    assert [e["extensions"]["code"] for e in before["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert after["data"] == {"upstreamVersion": 2}
    assert edge.returncode in {0, -signal.SIGTERM}
