"""The Kriti engine: the templates of Kriti's README and Hasura's action tests render what their
documents say; every function, operator and lookup form; errors name line and column."""

from typing import Any

import pytest

from services.actions.kriti import (
    KritiEvalError,
    KritiSyntaxError,
    parse_string_template,
    parse_template,
)

ARTICLES = {
    "event": {
        "name": "Freddie Jones",
        "age": 27,
        "author": {
            "articles": [
                {"id": 0, "title": "The Elements", "length": 150, "published": True},
                {"id": 1, "title": "ARRL Handbook", "length": 1000, "published": True},
                {"id": 2, "title": "The Mars Trilogy", "length": 500, "published": False},
            ]
        },
    }
}

README_EXAMPLE_1 = """{
  "author": {
    "name": {{$.event.name}},
    "age": {{$.event.age}},
    "articles": [
{{ range _, x := $.event.author.articles }}
      {
        "id": {{x.id}},
        "title": {{x.title}}
      }
{{ end }}
    ]
  }
}"""

README_EXAMPLE_2 = """{
  "author": {
    "name": {{$.event.name}},
    "age": {{$.event.age}},
    "articles": [
{{ range _, x := $.event.author.articles }}
  {{ if x.published }}
      {
        "id": {{x.id}},
        "title": {{x.title}}
      }
  {{ else }}
      null
  {{ end }}
{{ end }}
    ]
  }
}"""

README_IF = """{{ if x.published && (x.post_id > 100) }}
    {
      "id": {{x.id}},
      "title": {{x.title}}
    }
{{ else }}
    null
{{ end }}"""

POKEMON = {"name": {"english": "Bulbasaur"}, "id": 1, "base": {"HP": 45}}

# (template, variables, expected) from Kriti's README.
README_CASES: list[tuple[str, dict[str, Any], Any]] = [
    (
        README_EXAMPLE_1,
        {"$": ARTICLES},
        {
            "author": {
                "name": "Freddie Jones",
                "age": 27,
                "articles": [
                    {"id": 0, "title": "The Elements"},
                    {"id": 1, "title": "ARRL Handbook"},
                    {"id": 2, "title": "The Mars Trilogy"},
                ],
            }
        },
    ),
    (
        README_EXAMPLE_2,
        {"$": ARTICLES},
        {
            "author": {
                "name": "Freddie Jones",
                "age": 27,
                "articles": [
                    {"id": 0, "title": "The Elements"},
                    {"id": 1, "title": "ARRL Handbook"},
                    None,
                ],
            }
        },
    ),
    ("{{ $body.foo.bar[0]['my key'] }}", {"$body": {"foo": {"bar": [{"my key": 7}]}}}, 7),
    ("{{ $body?.foo }}", {"$body": {}}, None),
    ("{{ $body?.foo.bar.baz }}", {"$body": {}}, None),
    ("{{ null ?? true }}", {}, True),
    ("{{ $foo?.bar ?? true }}", {"$foo": {}}, True),
    ("{{ $foo?.bar ?? true }}", {"$foo": {"bar": False}}, False),
    (
        '"http://www.{{$.domain}}.com/{{$.path}}"',
        {"$": {"domain": "google", "path": "search"}},
        "http://www.google.com/search",
    ),
    (
        README_IF,
        {"x": {"published": True, "post_id": 101, "id": 1, "title": "t"}},
        {"id": 1, "title": "t"},
    ),
    (README_IF, {"x": {"published": True, "post_id": 99, "id": 1, "title": "t"}}, None),
    (
        "{\n   'name': {{$.name.english}},\n   'id': {{$.id}},\n   'hp': {{$.base.HP}}\n}",
        {"$": POKEMON},
        {"name": "Bulbasaur", "id": 1, "hp": 45},
    ),
]

HASURA_INPUT = {
    "action": {"name": "mirror_transformed"},
    "input": {"arg": {"id": "some-id", "name": "Alice"}, "username": "alice", "x": "foo"},
    "session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "42"},
    "request_query": "mutation { ... }",
}
NESTED_ANSWER = {
    "user_id": {"id": 1},
    "addresses": [
        {"city": "Bangalore", "country": "India"},
        {"city": "Mumbai", "country": "India"},
    ],
}
NESTED_TEMPLATE = """{ "uid": {{ $body.user_id.id }}, "city0": {{ $body.addresses[0].city }},
  "country0": {{ $body.addresses[0].country }},
  "other_addresses": {{ range i, x := $body.addresses }} {{ if i > 0 }}
    {"city": {{ x.city }}, "country": {{ x.country }}} {{ else }} null {{ end }} {{ end }} }"""

# (template, variables, expected) from Hasura's action tests and transform documentation.
HASURA_CASES: list[tuple[str, dict[str, Any], Any]] = [
    (
        '{"input": {"arg": {"id": {{ $body.input.arg.name }}, "name": {{ $body.input.arg.id }}}}}',
        {"$body": HASURA_INPUT},
        {"input": {"arg": {"id": "Alice", "name": "some-id"}}},
    ),
    (
        '{"foo": {{ $body.id }}, "bar": {{ $body.name }}}',
        {"$body": {"id": "some-id", "name": "Alice"}},
        {"foo": "some-id", "bar": "Alice"},
    ),
    (
        '{{ range i, x := $body.result_ids }} { "id": {{ x }} } {{ end }}',
        {"$body": {"result_ids": [1, 2, 3]}},
        [{"id": 1}, {"id": 2}, {"id": 3}],
    ),
    (
        NESTED_TEMPLATE,
        {"$body": NESTED_ANSWER},
        {
            "uid": 1,
            "city0": "Bangalore",
            "country0": "India",
            "other_addresses": [None, {"city": "Mumbai", "country": "India"}],
        },
    ),
    ('{"username": {{$body.input.username}}}', {"$body": HASURA_INPUT}, {"username": "alice"}),
    (
        "{{ getSessionVariable('X-Hasura-User-Id') }}",
        {"$session_variables": HASURA_INPUT["session_variables"]},
        "42",
    ),
]

STRING_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("{{$base_url}}/create_user", {"$base_url": "http://h:1/api"}, "http://h:1/api/create_user"),
    (
        "{{$session_variables['x-hasura-user-id']}}",
        {"$session_variables": HASURA_INPUT["session_variables"]},
        "42",
    ),
    ("{{$body.input.x}}", {"$body": HASURA_INPUT}, "foo"),
    ("n={{ $n }}&ok={{ $ok }}&f={{ $f }}", {"$n": 3, "$ok": True, "$f": 1.5}, "n=3&ok=true&f=1.5"),
    ("no templates here", {}, "no templates here"),
    ('quotes " and \\ stay', {}, 'quotes " and \\ stay'),
]

FUNCTION_CASES: list[tuple[str, Any]] = [
    ("empty([])", True),
    ("empty({})", True),
    ("empty('  ')", True),
    ("empty(0)", True),
    ("empty(null)", True),
    ("empty([1])", False),
    ("size([1, 2])", 2),
    ("size({'a': 1})", 1),
    ("size('héllo')", 5),
    ("size(null)", 0),
    ("size(true)", 1),
    ("inverse([1, 2])", [2, 1]),
    ("inverse('ab')", "ba"),
    ("inverse(4)", 0.25),
    ("inverse(true)", False),
    ("head([1, 2])", 1),
    ("head('ab')", "a"),
    ("tail([1, 2, 3])", [2, 3]),
    ("tail('abc')", "bc"),
    ("toUpper('aB')", "AB"),
    ("toLower('aB')", "ab"),
    ("toTitle('hello world')", "Hello World"),
    ("toCaseFold('Straße')", "strasse"),
    ("fromPairs([['a', 1], ['b', [2]]])", {"a": 1, "b": [2]}),
    ("toPairs({'a': 1, 'b': null})", [["a", 1], ["b", None]]),
    ("removeNulls([1, null, 2])", [1, 2]),
    ("concat([[1], [2, 3]])", [1, 2, 3]),
    ("concat(['hello', ' ', 'world'])", "hello world"),
    ("concat([{'a': 1, 'b': 2}, {'b': 3, 'c': 4}])", {"a": 1, "b": 3, "c": 4}),
    ("concat([])", []),
    ("escapeUri('a b/c?d=é')", "a%20b%2Fc%3Fd%3D%C3%A9"),
    ("not(true)", False),
    ("not false", True),
    ("not(empty([]))", False),
]

OPERATOR_CASES: list[tuple[str, Any]] = [
    ("1 == 1.0", True),
    ("true == 1", False),
    ("'a' != 'b'", True),
    ("[1, {'a': null}] == [1, {'a': null}]", True),
    ("2 > 1", True),
    ("2 < 1", False),
    ("2 >= 2", True),
    ("1 <= 0", False),
    ("'abc' < 'abd'", True),
    ("'a' in {'a': 1}", True),
    ("3 in [1, 2]", False),
    ("true && false", False),
    ("false || true", True),
    ("false && $missing", False),
    ("true || $missing", True),
    ("(1 > 2) || (2 > 1) && true", True),
    ("null ?? null ?? 'x'", "x"),
    ("$v.items[1]", "b"),
    ("$v.items[$v.i]", "b"),
    ("$v['items'][0]", "a"),
    ("$v?.none?.deeper", None),
    ("$v.items?[5]", None),
    ("[1, 'two', {\"k\": [true]}]", [1, "two", {"k": [True]}]),
    ("{'a': $v.i, 'b': -2.5e1}", {"a": 1, "b": -25.0}),
    ("head($v.items)", "a"),
]

ELIF = """{{ if $n == 1 }} "one" {{ elif $n == 2 }} "two" {{ elif $n > 2 }} "many" {{ else }}
"none" {{ end }}"""


def render(template: str, variables: dict[str, Any]) -> Any:
    """Parse without a variable list, then render."""
    return parse_template(template).render(variables)


@pytest.mark.parametrize(("template", "variables", "expected"), README_CASES + HASURA_CASES)
def test_documented_templates_render_as_documented(
    template: str, variables: dict[str, Any], expected: Any
) -> None:
    assert render(template, variables) == expected


@pytest.mark.parametrize(("template", "variables", "expected"), STRING_CASES)
def test_string_templates_write_each_value_as_text(
    template: str, variables: dict[str, Any], expected: str
) -> None:
    assert parse_string_template(template).render(variables) == expected


@pytest.mark.parametrize(("expression", "expected"), FUNCTION_CASES + OPERATOR_CASES)
def test_functions_and_operators(expression: str, expected: Any) -> None:
    variables = {"$v": {"items": ["a", "b"], "i": 1}}

    assert render("{{ " + expression + " }}", variables) == expected


@pytest.mark.parametrize(("n", "expected"), [(1, "one"), (2, "two"), (7, "many"), (0, "none")])
def test_elif_picks_the_first_branch_that_holds(n: int, expected: str) -> None:
    assert render(ELIF, {"$n": n}) == expected


def test_an_if_without_else_gives_null_and_json_renders_to_itself() -> None:
    document = '{"a": [1, 2.5, -3e2, "s\\n\\u00e9", true, false, null, {}, []]}'

    assert render("{{ if false }} 1 {{ end }}", {}) is None
    assert render(document, {}) == {"a": [1, 2.5, -300.0, "s\né", True, False, None, {}, []]}


def test_an_interpolated_field_name() -> None:
    assert render('{"{{ $k }}_id": 1}', {"$k": "user"}) == {"user_id": 1}


SYNTAX_ERRORS = [
    ('{"a": {{ $body.x }', 1, 18, "expected '}}'"),
    ('{\n  "a": {{ md5($body) }}\n}', 2, 11, "unknown function md5"),
    ("{{ $nope }}", 1, 4, "unknown variable $nope"),
    ('{\n  "a": {{ if $body }} 1 }}', 2, 25, "expected {{ elif }} or {{ else }} or {{ end }}"),
    ('{"a": 1,}', 1, 9, "expected a quoted field name"),
    ('{"a": 1} x', 1, 10, "after the end of the template"),
    ("{{ }}", 1, 4, "empty {{ }}"),
    ("{{ end }}", 1, 4, "without an open range or if"),
    ("{{ range i, x := $body }} {{ x }}", 1, 34, "expected {{ end }}"),
    ('"never closed', 1, 1, "never closed"),
    ("{{ $body | toUpper }}", 1, 10, "expected '}}'"),
    ("{{ toUpper($body, 1) }}", 1, 17, "toUpper takes one argument"),
    ("{{ x }}", 1, 4, "unknown variable x"),
]


@pytest.mark.parametrize(("template", "line", "column", "says"), SYNTAX_ERRORS)
def test_syntax_errors_name_line_and_column(
    template: str, line: int, column: int, says: str
) -> None:
    with pytest.raises(KritiSyntaxError) as refused:
        parse_template(template, ["$body"])

    assert (refused.value.line, refused.value.column) == (line, column), str(refused.value)
    assert says in refused.value.problem


def test_loop_binders_are_known_only_inside_their_range() -> None:
    parse_template("{{ range i, x := $body }} [{{ i }}, {{ x }}] {{ end }}", ["$body"])

    with pytest.raises(KritiSyntaxError, match="unknown variable x"):
        parse_template(
            '{"a": {{ range _, x := $body }} {{ x }} {{ end }}, "b": {{ x }}}', ["$body"]
        )


EVAL_ERRORS = [
    ('{"a": {{ $body.input.missing }}}', {"$body": {"input": {}}}, "$body.input.missing not found"),
    ("{{ $body.items[3] }}", {"$body": {"items": [1]}}, "$body.items[3] not found"),
    ("{{ $body.items.name }}", {"$body": {"items": [1]}}, "$body.items is an array"),
    ("{{ $body.n.x }}", {"$body": {"n": 1}}, "it is a number"),
    ("{{ $other }}", {}, "unbound variable $other"),
    ('"id={{ $body }}"', {"$body": None}, "cannot write null into a string"),
    ("{{ if $body }} 1 {{ else }} 2 {{ end }}", {"$body": "yes"}, "if needs a boolean"),
    ("{{ range _, x := $body }} 1 {{ end }}", {"$body": {}}, "range needs an array"),
    ("{{ toUpper($body) }}", {"$body": 1}, "toUpper takes a string, not a number"),
    ("{{ $body > 'a' }}", {"$body": 1}, "compares two numbers or two strings"),
    ("{{ $body && true }}", {"$body": 1}, "&& takes booleans"),
    ("{{ getSessionVariable('x-nope') }}", {"$session_variables": {}}, "x-nope is not set"),
]


@pytest.mark.parametrize(("template", "variables", "says"), EVAL_ERRORS)
def test_evaluation_errors_say_what_is_wrong(
    template: str, variables: dict[str, Any], says: str
) -> None:
    with pytest.raises(KritiEvalError) as failed:
        render(template, variables)

    assert says in failed.value.problem
    assert failed.value.line == 1
