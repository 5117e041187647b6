"""The parsed form of a Kriti template: JSON with expressions, loops and conditionals.

Every node keeps ``at``, its offset in the template text, so that an error found while
evaluating it can name the line and column it came from.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Literal:
    """A JSON value written out in the template (a string without ``{{...}}``, a number...)."""

    at: int
    value: Any


@dataclass(frozen=True)
class Interpolation:
    """A string with ``{{ expr }}`` parts; each part's value is written as text."""

    at: int
    parts: tuple["str | Node", ...]


@dataclass(frozen=True)
class ArrayNode:
    """``[a, b, ...]``."""

    at: int
    items: tuple["Node", ...]


@dataclass(frozen=True)
class ObjectNode:
    """``{"k": v, ...}``; a key may itself be an interpolated string."""

    at: int
    fields: tuple[tuple["str | Interpolation", "Node"], ...]


@dataclass(frozen=True)
class Variable:
    """``$body``, ``$session_variables``, a loop binder..."""

    at: int
    name: str


@dataclass(frozen=True)
class Step:
    """One lookup of a path: ``.name``, ``['name']``, ``[0]`` or ``[expr]``; ``?`` makes it
    optional (a missing field gives null and ends the path)."""

    at: int
    key: "str | int | Node"
    optional: bool


@dataclass(frozen=True)
class Path:
    """A value followed by lookups: ``$body.input.items[0]['my key']``."""

    at: int
    base: "Node"
    steps: tuple[Step, ...]
    text: str


@dataclass(frozen=True)
class Call:
    """``name(argument)``: one of the functions Kriti and Hasura provide."""

    at: int
    name: str
    argument: "Node"


@dataclass(frozen=True)
class Operator:
    """``a op b`` for ``== != < > <= >= in && || ??``."""

    at: int
    op: str
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Range:
    """``{{ range i, x := expr }} body {{ end }}``: an array of ``body`` per element."""

    at: int
    index: str | None
    item: str
    source: "Node"
    body: "Node"


@dataclass(frozen=True)
class If:
    """``{{ if c }} a {{ elif d }} b {{ else }} c {{ end }}`` as (condition, value) branches and
    the value when none holds (null without ``else``)."""

    at: int
    branches: tuple[tuple["Node", "Node"], ...]
    otherwise: "Node"


Node = (
    Literal | Interpolation | ArrayNode | ObjectNode | Variable | Path | Call | Operator | Range
) | If
