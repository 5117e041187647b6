"""Hasura's request and response transforms against a real HTTP handler, a real uvicorn edge,
executor, projector and nats-server: method, URL, query, headers and body as the handler
receives them, answers reshaped before they are checked, and a failing template's error."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.nats_server import free_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.integration.test_cli import run_cli
from tests.stack import eventually, graphql, running, serving, serving_edge

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

ACTIONS_GRAPHQL = """
type Mutation {
  create_user(username: String!, x: String!): created_user
  swap_arg(arg: MirrorInput!): OutObject
  mirror_transformed_output(arg: MirrorInput!): TransformedOutput
  results(n: Int!): [Result]
  form_login(user: String!): OutObject
  broken(arg: MirrorInput!): OutObject
  mirror_now(arg: MirrorInput!): TransformedOutput
}

type Query {
  lookup(id: String!): OutObject
}

input MirrorInput { id: String!, name: String! }
type created_user { user_id: String! }
type OutObject { id: String!, name: String }
type TransformedOutput { foo: String!, bar: String! }
type Result { id: Int! }
"""

RESPONSE_FOO_BAR = """
    response_transform:
      version: 2
      template_engine: Kriti
      body:
        action: transform
        template: '{"foo": {{ $body.id }}, "bar": {{ $body.name }}}'"""

ACTIONS_YAML = """actions:
  - name: create_user
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/api"
      headers:
        - name: x-drop
          value: gone
        - name: x-keep
          value: kept
    request_transform:
      version: 2
      template_engine: Kriti
      method: PUT
      url: '{{$base_url}}/users/{{$body.input.username}}'
      query_params:
        id: "{{$session_variables['x-hasura-user-id']}}"
        source: asyncgate
      request_headers:
        add_headers:
          X-Foo: "{{$body.input.x}}"
        remove_headers: [x-drop]
      body:
        action: transform
        template: |
          {"username": {{$body.input.username}},
           "role": {{ getSessionVariable("X-Hasura-Role") }}}
  - name: swap_arg
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/mirror"
    request_transform:
      version: 2
      template_engine: Kriti
      body:
        action: transform
        template: |
          {"input": {"arg": {"id": {{ $body.input.arg.name }},
                             "name": {{ $body.input.arg.id }}}}}
  - name: mirror_transformed_output
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/mirror"
RESPONSE_FOO_BAR
  - name: results
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/results"
    response_transform:
      version: 2
      template_engine: Kriti
      body:
        action: transform
        template: '{{ range i, x := $body.result_ids }} { "id": {{ x }} } {{ end }}'
  - name: form_login
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/form"
    request_transform:
      version: 2
      body:
        action: x_www_form_urlencoded
        form_template:
          user: "{{$body.input.user}}"
          grant: password
  - name: broken
    definition:
      kind: asynchronous
      handler: "{{HANDLER}}/mirror"
    request_transform:
      body: '{"x": {{ $body.input.arg.missing }}}'
  - name: mirror_now
    definition:
      kind: synchronous
      handler: "{{HANDLER}}/mirror"
RESPONSE_FOO_BAR
  - name: lookup
    definition:
      handler: "{{HANDLER}}"
    request_transform:
      method: GET
      url: '{{$base_url}}/lookup/{{$body.input.id}}'
      version: 2
      body:
        action: remove
""".replace("RESPONSE_FOO_BAR", RESPONSE_FOO_BAR.strip("\n"))


@dataclass(frozen=True)
class Received:
    """One request as the handler saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class RestHandler:
    """A REST-style handler that knows nothing of Hasura's payload; records every request."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def answer(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.received.append(
            Received(request.method, path, dict(request.query_params), dict(request.headers), body)
        )
        if path.startswith("/api/users/"):
            return JSONResponse({"user_id": "u-" + path.rsplit("/", 1)[1]})
        if path == "/mirror":
            return JSONResponse(json.loads(body)["input"]["arg"])
        if path == "/results":
            return JSONResponse({"result_ids": [1, 2, 3]})
        if path == "/form":
            form = dict(parse_qsl(body.decode()))
            return JSONResponse({"id": form["user"], "name": form["grant"]})
        if path.startswith("/lookup/"):
            return JSONResponse({"id": path.rsplit("/", 1)[1], "name": "looked-up"})
        return JSONResponse({"message": "no such route"}, 404)

    def app(self) -> Starlette:
        """The handler as an ASGI app."""
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{rest:path}", self.answer, methods=methods)])


@pytest.fixture
async def handler() -> AsyncIterator[tuple[RestHandler, str]]:
    """The REST handler behind a real uvicorn server."""
    recorder = RestHandler()
    async with serving(recorder.app(), free_port()) as url:
        yield recorder, url


@pytest.fixture
async def stack(
    settings: Settings,
    tmp_path: Path,
    handler: tuple[RestHandler, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole stack with the transformed actions."""
    monkeypatch.setenv("HANDLER", handler[1])
    (tmp_path / "actions.graphql").write_text(ACTIONS_GRAPHQL)
    (tmp_path / "actions.yaml").write_text(ACTIONS_YAML)
    settings = settings.replace(actions_file=tmp_path / "actions.yaml")
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        serving_edge(settings) as client,
    ):
        yield client


async def run_async(
    client: httpx.AsyncClient, action: str, arguments: str, selection: str
) -> dict[str, Any]:
    """Queue ``action`` and wait for its output or errors."""
    queued = await graphql(client, f"mutation {{ {action}({arguments}) }}")
    assert "errors" not in queued, queued
    action_id = queued["data"][action]

    async def done() -> dict[str, Any] | None:
        query = f'{{ {action}(id: "{action_id}") {{ output {selection} errors }} }}'
        state: dict[str, Any] = (await graphql(client, query))["data"][action]
        return state if state["output"] is not None or state["errors"] is not None else None

    return await eventually(done, what=f"{action} finishing")


ARG = 'arg: {id: "some-id", name: "Alice"}'


async def test_the_request_transform_sets_method_url_query_headers_and_body(
    stack: httpx.AsyncClient, handler: tuple[RestHandler, str]
) -> None:
    state = await run_async(stack, "create_user", 'username: "alice", x: "foo"', "{ user_id }")

    assert state == {"output": {"user_id": "u-alice"}, "errors": None}
    [received] = handler[0].received
    assert received.method == "PUT"
    assert received.path == "/api/users/alice"
    assert received.query == {"id": "anonymous", "source": "asyncgate"}
    assert received.headers["x-foo"] == "foo"
    assert received.headers["x-keep"] == "kept"
    assert "x-drop" not in received.headers
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body) == {"username": "alice", "role": "user"}


async def test_hasuras_body_template_swaps_the_arguments(
    stack: httpx.AsyncClient, handler: tuple[RestHandler, str]
) -> None:
    state = await run_async(stack, "swap_arg", ARG, "{ id name }")

    assert state["output"] == {"id": "Alice", "name": "some-id"}
    assert json.loads(handler[0].received[0].body) == {
        "input": {"arg": {"id": "Alice", "name": "some-id"}}
    }


async def test_response_transforms_reshape_the_answer_before_it_is_checked(
    stack: httpx.AsyncClient,
) -> None:
    mirrored = await run_async(stack, "mirror_transformed_output", ARG, "{ foo bar }")
    ranged = await run_async(stack, "results", "n: 3", "{ id }")
    now = await graphql(stack, f"mutation {{ mirror_now({ARG}) {{ foo bar }} }}")

    assert mirrored == {"output": {"foo": "some-id", "bar": "Alice"}, "errors": None}
    assert ranged == {"output": [{"id": 1}, {"id": 2}, {"id": 3}], "errors": None}
    assert now["data"] == {"mirror_now": {"foo": "some-id", "bar": "Alice"}}


async def test_a_form_body_and_a_get_without_body(
    stack: httpx.AsyncClient, handler: tuple[RestHandler, str]
) -> None:
    form = await run_async(stack, "form_login", 'user: "bob"', "{ id name }")
    looked_up = await graphql(stack, '{ lookup(id: "k-9") { id name } }')

    assert form["output"] == {"id": "bob", "name": "password"}
    assert looked_up["data"] == {"lookup": {"id": "k-9", "name": "looked-up"}}
    posted, got = handler[0].received
    assert posted.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (got.method, got.path, got.body) == ("GET", "/lookup/k-9", b"")


async def test_a_failing_request_template_ends_the_action_with_hasuras_error(
    stack: httpx.AsyncClient, handler: tuple[RestHandler, str]
) -> None:
    state = await run_async(stack, "broken", ARG, "{ id }")
    listed = await graphql(stack, "{ asyncRequests { status errorCode } }")

    # Hasura's async action errors: its stored error object.
    errors = state["errors"]
    assert (errors["error"], errors["code"], errors["path"]) == (
        "Request Transformation Failed",
        "unexpected",
        "$",
    )
    assert "$body.input.arg.missing not found" in errors["internal"]["error"]
    assert errors["internal"]["transform"] == "request_transform.body"
    assert listed["data"]["asyncRequests"] == [
        {"status": "ERROR", "errorCode": "ACTION_TRANSFORM_FAILED"}
    ]
    assert handler[0].received == []


@pytest.mark.parametrize("service", ["edge", "executor"])
def test_an_unsupported_template_expression_stops_start_up_naming_the_line(
    tmp_path: Path, service: str
) -> None:
    (tmp_path / "actions.graphql").write_text("type Mutation {\n  go(n: Int!): Boolean\n}\n")
    actions = tmp_path / "actions.yaml"
    actions.write_text(
        "actions:\n  - name: go\n    definition:\n      handler: http://h/go\n"
        "    request_transform:\n      body: '{\"n\": {{ $body.input.n | int }}}'\n"
    )

    finished = run_cli(service, env={"ASYNCGATE_ACTIONS_FILE": str(actions)})

    assert finished.returncode == 2
    assert f"{actions}:6: action go: request_transform.body is not a template" in finished.stderr
    assert "(template line 1, column 24)" in finished.stderr
    assert "Traceback" not in finished.stderr
