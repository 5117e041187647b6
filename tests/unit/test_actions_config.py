"""Loading actions.yaml and actions.graphql: good files load, bad ones name the line."""

from pathlib import Path

import pytest
from graphql import GraphQLNonNull, GraphQLObjectType

from examples.actions import ACTIONS_FILE
from services.actions.config import ActionsConfigError, load_actions
from services.actions.output import OutputProblem, output_problem
from services.common.callback_urls import AllowedHosts

SDL = """type Mutation {
  place_order(input: place_order_input!): order
  cancel_order(id: uuid!): Boolean
}

type Query {
  quote(product_id: String!): Float
}

input place_order_input {
  product_id: String!
}

type order {
  id: String!
  lines: [line!]!
}

type line {
  sku: String!
  quantity: Int!
}
"""

YAML = """actions:
  - name: place_order
    definition:
      kind: asynchronous
      handler: "{{BASE}}/place"
      timeout: 12
      forward_client_headers: true
      headers:
        - name: x-key
          value_from_env: KEY
        - name: x-static
          value: fixed
  - name: cancel_order
    definition:
      handler: http://orders/cancel
  - name: quote
    definition:
      handler: http://orders/quote
"""

ENV = {"BASE": "http://orders", "KEY": "k"}


def write(tmp_path: Path, yaml_text: str = YAML, sdl: str = SDL) -> Path:
    """Write both files; return the path of actions.yaml."""
    (tmp_path / "actions.graphql").write_text(sdl)
    path = tmp_path / "actions.yaml"
    path.write_text(yaml_text)
    return path


def error_of(tmp_path: Path, yaml_text: str = YAML, sdl: str = SDL) -> str:
    """The error loading these files raises."""
    with pytest.raises(ActionsConfigError) as refused:
        load_actions(write(tmp_path, yaml_text, sdl), ENV)
    return str(refused.value)


def test_a_good_pair_of_files_loads(tmp_path: Path) -> None:
    config = load_actions(write(tmp_path), ENV)

    place = config.actions["place_order"]
    assert place.is_async
    assert place.handler == "http://orders/place"
    assert place.timeout_s == 12
    assert [(h.name, h.value) for h in place.headers] == [("x-key", "k"), ("x-static", "fixed")]
    assert place.forward_client_headers
    assert not config.actions["cancel_order"].is_async
    assert config.actions["quote"].operation == "query"
    output = config.output_type("place_order")
    assert isinstance(output, GraphQLObjectType)
    assert output.name == "order"


def test_the_demo_actions_load() -> None:
    config = load_actions(ACTIONS_FILE, {"ASYNCGATE_DEMO_HANDLER_URL": "http://127.0.0.1:1"})

    assert config.actions["place_order"].is_async


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        ("      timeout: 12\n", "      timeout: -1\n", "actions.yaml:6", "timeout"),
        ("      kind: asynchronous\n", "      kind: eventually\n", "actions.yaml:4", "kind"),
        (
            "  - name: quote\n    definition:\n",
            "  - name: quote\n    definition:\n      kind: asynchronous\n",
            "actions.yaml:18",
            "only mutations can be asynchronous",
        ),
        (
            "      handler: http://orders/cancel\n",
            "      timeout: 3\n",
            "actions.yaml:14",
            "handler",
        ),
        ("value_from_env: KEY", "value_from_env: MISSING", "actions.yaml:9", "MISSING"),
        ("{{BASE}}", "{{NOPE}}", "actions.yaml:5", "NOPE"),
        ("- name: quote", "- name: unknown", "actions.yaml:16", "not a field"),
        ("      headers:\n", "      headers: [1\n", "actions.yaml:", "not valid YAML"),
    ],
)
def test_bad_yaml_names_its_line(tmp_path: Path, old: str, new: str, where: str, says: str) -> None:
    assert old in YAML
    message = error_of(tmp_path, YAML.replace(old, new))

    assert where in message
    assert says in message


def test_an_sdl_syntax_error_names_its_line(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, sdl=SDL.replace("input place_order_input {", "input place_order_input (")
    )

    assert "actions.graphql:10" in message


def test_an_sdl_type_error_names_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, sdl=SDL.replace("lines: [line!]!", "lines: [nowhere!]!"))

    assert "actions.graphql:" in message
    assert "nowhere" in message


def test_a_field_without_an_entry_is_refused_at_its_line(tmp_path: Path) -> None:
    sdl = SDL.replace(
        "  cancel_order(id: uuid!): Boolean\n",
        "  cancel_order(id: uuid!): Boolean\n  refund(id: uuid!): Boolean\n",
    )

    message = error_of(tmp_path, sdl=sdl)

    assert "actions.graphql:4" in message
    assert "refund" in message


def test_outputs_are_checked_against_the_declared_type(tmp_path: Path) -> None:
    config = load_actions(write(tmp_path), ENV)
    order = config.output_type("place_order")

    assert output_problem({"id": "o", "lines": [{"sku": "s", "quantity": 1}]}, order) is None
    assert output_problem(None, order) is None
    assert isinstance(order, GraphQLObjectType)
    # In Hasura's words (tests/unit/test_hasura_answers.py has every case), with the JSON path.
    assert output_problem(None, GraphQLNonNull(order)) == OutputProblem(
        "got null for the action webhook response", "$"
    )
    assert output_problem({"id": "o"}, order) == OutputProblem(
        'field "lines" expected in webhook response, but not found', "$.lines"
    )
    assert output_problem({"id": "o", "lines": {}}, order) == OutputProblem(
        "expecting array for the action webhook response", "$.lines"
    )
    assert output_problem(
        {"id": "o", "lines": [{"sku": "s", "quantity": "many"}]}, order
    ) == OutputProblem(
        "got scalar String for the action webhook response, expecting Int",
        "$.lines[0].quantity",
    )
    assert output_problem([1], order) == OutputProblem(
        "got array for the action webhook response, expecting order", "$"
    )


def with_callback(url: str, *, line_of: str = "place_order") -> str:
    """YAML with ``callback_url: url`` in one action's definition."""
    marker = f"  - name: {line_of}\n    definition:\n"
    return YAML.replace(marker, marker + f"      callback_url: {url}\n")


def test_an_allowed_callback_url_is_loaded(tmp_path: Path) -> None:
    hosts = AllowedHosts.parse("hooks.example.com")
    config = load_actions(
        write(tmp_path, with_callback("https://hooks.example.com/{{KEY}}")),
        ENV,
        callback_hosts=hosts,
    )

    assert config.actions["place_order"].callback_url == "https://hooks.example.com/k"
    assert config.actions["quote"].callback_url is None


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (with_callback("https://elsewhere.example.net/in"), r"actions.yaml:4: callbacks to"),
        (with_callback("http://169.254.169.254/"), r"actions.yaml:4: callbacks to"),
        (
            with_callback("https://hooks.example.com/in", line_of="cancel_order"),
            r"actions.yaml:\d+: only asynchronous actions can have a callback_url",
        ),
    ],
)
def test_a_callback_url_that_may_not_be_called_stops_the_start(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    with pytest.raises(ActionsConfigError, match=message):
        load_actions(
            write(tmp_path, yaml_text), ENV, callback_hosts=AllowedHosts.parse("hooks.example.com")
        )
