"""Transforms in actions.yaml through the real loader: Hasura's keys load, and a template or key
asyncgate cannot use stops start-up with the line in the file and the column in the template."""

from pathlib import Path

import pytest

from services.actions.config import ActionsConfigError, load_actions
from services.actions.transforms import RequestTransform, build_request

SDL = "type Mutation {\n  go(x: String!): Boolean\n}\n"

YAML = """actions:
  - name: go
    definition:
      kind: asynchronous
      handler: http://orders/api
    request_transform:
      version: 2
      template_engine: Kriti
      method: patch
      url: '{{$base_url}}/go/{{$body.input.x}}'
      query_params:
        tenant: "{{ $body.input.x }}"
      request_headers:
        add_headers:
          X-User: "{{$session_variables['x-hasura-user-id']}}"
        remove_headers: [X-Secret]
      body:
        action: transform
        template: |
          {
            "x": {{ $body.input.x }},
            "upper": {{ toUpper($body.input.x) }}
          }
    response_transform:
      version: 2
      body:
        action: transform
        template: '{{ $response.status == 200 }}'
"""


def load(tmp_path: Path, yaml_text: str) -> RequestTransform | None:
    """Load the files; the request transform of ``go``."""
    (tmp_path / "actions.graphql").write_text(SDL)
    (tmp_path / "actions.yaml").write_text(yaml_text)
    return load_actions(tmp_path / "actions.yaml", {}).actions["go"].request_transform


def refusal(tmp_path: Path, old: str, new: str) -> str:
    """The start-up error once ``old`` is replaced by ``new``."""
    assert old in YAML
    with pytest.raises(ActionsConfigError) as refused:
        load(tmp_path, YAML.replace(old, new))
    return str(refused.value)


def test_hasuras_keys_load_and_build_the_request(tmp_path: Path) -> None:
    transform = load(tmp_path, YAML)
    payload = {
        "action": {"name": "go"},
        "input": {"x": "abc"},
        "session_variables": {"x-hasura-user-id": "u1"},
        "request_query": "",
    }

    request = build_request(
        transform, "http://orders/api", payload, {"X-Secret": "s", "x-keep": "k"}
    )

    assert request.method == "PATCH"
    assert request.url == "http://orders/api/go/abc?tenant=abc"
    assert request.headers == {
        "x-keep": "k",
        "Content-Type": "application/json",
        "X-User": "u1",
    }
    assert request.content == b'{"x":"abc","upper":"ABC"}'


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        # An unsupported function names the line and the column inside the template.
        (
            "/go/{{$body.input.x}}'",
            "/go/{{ md5($body.input.x) }}'",
            10,
            "unknown function md5 (template line 1, column 21)",
        ),
        # A mistake on the third line of a | block is on the file's line of that text.
        (
            '"upper": {{ toUpper($body.input.x) }}',
            '"upper": {{ toUpper($body.input.x }}',
            22,
            "expected ')'",
        ),
        (
            'tenant: "{{ $body.input.x }}"',
            'tenant: "{{ $response.status }}"',
            12,
            "unknown variable $response",
        ),
        (
            "      method: patch\n",
            "      methd: patch\n",
            9,
            "request_transform has no key 'methd'",
        ),
        ("        remove_headers:", "        drop_headers:", 16, "has no key 'drop_headers'"),
        ("template_engine: Kriti", "template_engine: Go", 8, "template_engine must be Kriti"),
        ("method: patch", "method: TRACE", 9, "method must be one of"),
        (
            "action: transform\n        template: |",
            "action: replace\n        template: |",
            18,
            "body takes action",
        ),
        ("'{{ $response.status == 200 }}'", "'{{ $response.status = 200 }}'", 28, "expected '}}'"),
        ("      version: 2\n      body:", "      version: 3\n      body:", 25, "version must be"),
    ],
)
def test_a_template_or_key_asyncgate_cannot_use_is_refused_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, says: str
) -> None:
    message = refusal(tmp_path, old, new)

    assert f"actions.yaml:{line}: action go: " in message
    assert says in message


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Request and response transforms", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "actions.graphql").write_text(
        "type Mutation {\n  create_user(username: String!, email: String!): user\n}\n"
        "type user { id: String!, created: Boolean }\n"
    )
    (tmp_path / "actions.yaml").write_text(example)

    action = load_actions(tmp_path / "actions.yaml", {"USERS_API": "http://u/v1"}).actions[
        "create_user"
    ]
    payload = {
        "action": {"name": "create_user"},
        "input": {"username": "ann", "email": "Ann@X.org"},
        "session_variables": {"x-hasura-tenant-id": "t", "x-hasura-user-id": "u"},
        "request_query": "",
    }
    request = build_request(action.request_transform, action.handler, payload, {})

    assert (request.method, request.url) == ("PUT", "http://u/v1/users/ann?tenant=t")
    assert request.content == b'{"name":"ann","mail":"ann@x.org"}'
