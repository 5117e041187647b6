"""Turning parsed nodes into Python closures, once, so that rendering a template per request is
a few function calls per node and no tree walk or dispatch."""

from collections.abc import Callable, Mapping
from typing import Any, Final

from services.actions.kriti.functions import PURE, WITH_VARIABLES, FunctionError
from services.actions.kriti.reader import position
from services.actions.kriti.syntax import (
    ArrayNode,
    Call,
    If,
    Interpolation,
    Literal,
    Node,
    ObjectNode,
    Operator,
    Path,
    Range,
    Step,
    Variable,
)
from services.actions.kriti.values import as_text, json_equal, type_name

Variables = Mapping[str, Any]
Evaluate = Callable[[Variables], Any]


class KritiEvalError(ValueError):
    """Rendering failed: an unbound variable, a missing field, a value of the wrong type."""

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(f"{problem} (template line {line}, column {column})")
        self.problem = problem
        self.line = line
        self.column = column


class Compiler:
    """Compiles the nodes of one template text (kept for the positions in errors)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, at: int, problem: str) -> KritiEvalError:
        """An evaluation error at offset ``at``."""
        return KritiEvalError(problem, *position(self.text, at))

    def compile(self, node: Node) -> Evaluate:  # noqa: PLR0911 (one case per node type)
        """The closure computing ``node`` from the variables."""
        match node:
            case Literal(value=value):
                return lambda _: value
            case Interpolation():
                return self.interpolation(node)
            case ArrayNode(items=items):
                compiled = [self.compile(item) for item in items]
                return lambda variables: [item(variables) for item in compiled]
            case ObjectNode():
                return self.object(node)
            case Variable():
                return self.variable(node)
            case Path():
                return self.path(node)
            case Call():
                return self.call(node)
            case Operator():
                return self.operator(node)
            case Range():
                return self.range(node)
            case If():
                return self.conditional(node)

    def interpolation(self, node: Interpolation) -> Evaluate:
        """Each part written as text; null, arrays and objects cannot be."""
        parts = [
            (part, None) if isinstance(part, str) else (None, self.compile(part))
            for part in node.parts
        ]
        offsets = [getattr(part, "at", node.at) for part in node.parts]

        def evaluate(variables: Variables) -> str:
            out = []
            for (text, compiled), at in zip(parts, offsets, strict=True):
                if compiled is None:
                    out.append(text or "")
                    continue
                value = compiled(variables)
                written = as_text(value)
                if written is None:
                    raise self.error(at, f"cannot write {type_name(value)} into a string")
                out.append(written)
            return "".join(out)

        return evaluate

    def object(self, node: ObjectNode) -> Evaluate:
        """Fields in order; an interpolated name must come out as text."""
        fields = [
            (name if isinstance(name, str) else self.interpolation(name), self.compile(value))
            for name, value in node.fields
        ]

        def evaluate(variables: Variables) -> dict[str, Any]:
            return {
                (name if isinstance(name, str) else name(variables)): value(variables)
                for name, value in fields
            }

        return evaluate

    def variable(self, node: Variable) -> Evaluate:
        """A bound name's value."""
        name = node.name

        def evaluate(variables: Variables) -> Any:
            try:
                return variables[name]
            except KeyError:
                raise self.error(node.at, f"unbound variable {name}") from None

        return evaluate

    def path(self, node: Path) -> Evaluate:
        """Lookups one after the other; an optional one that finds nothing ends with null."""
        base = self.compile(node.base)
        steps = [
            (step, None if isinstance(step.key, str | int) else self.compile(step.key))
            for step in node.steps
        ]

        def evaluate(variables: Variables) -> Any:
            value = base(variables)
            for step, compiled in steps:
                key = step.key if compiled is None else compiled(variables)
                if isinstance(value, dict) and isinstance(key, str):
                    if key in value:
                        value = value[key]
                        continue
                elif isinstance(value, list) and type(key) is int:
                    if 0 <= key < len(value):
                        value = value[key]
                        continue
                elif not (step.optional and value is None):
                    raise self.error(step.at, self.mismatch(node, step, value, key))
                if step.optional:
                    return None
                raise self.error(step.at, f"{self.lookup(node, step)} not found")
            return value

        return evaluate

    def lookup(self, node: Path, step: Step) -> str:
        """The path text up to and including ``step``."""
        return node.text[: step.at - node.at] + self.text[step.at : self.step_end(node, step)]

    def step_end(self, node: Path, step: Step) -> int:
        """Where ``step``'s text ends (the next step's start, or the path's end)."""
        later = [s.at for s in node.steps if s.at > step.at]
        return min(later) if later else node.at + len(node.text)

    def mismatch(self, node: Path, step: Step, value: Any, key: Any) -> str:
        """Why ``key`` cannot be looked up in ``value``."""
        where = node.text[: step.at - node.at]
        if isinstance(value, dict):
            return f"{where} is an object: it has fields, not index {key!r}"
        if isinstance(value, list):
            return f"{where} is an array: it takes an index, not {key!r}"
        return f"cannot look up {key!r} in {where}: it is {type_name(value)}"

    def call(self, node: Call) -> Evaluate:
        """A function applied to its argument's value."""
        argument = self.compile(node.argument)
        name = node.name
        pure = PURE.get(name)
        session = WITH_VARIABLES.get(name)

        def evaluate(variables: Variables) -> Any:
            value = argument(variables)
            try:
                if pure is not None:
                    return pure(value)
                if session is not None:
                    return session(value, variables)
            except FunctionError as error:
                raise self.error(node.at, str(error)) from None
            raise self.error(node.at, f"unknown function {name}")

        return evaluate

    def operator(self, node: Operator) -> Evaluate:
        """``&&``, ``||`` and ``??`` look at their right side only when they need it."""
        left, right = self.compile(node.left), self.compile(node.right)
        op = node.op
        if op == "??":
            return lambda variables: (
                right(variables) if (value := left(variables)) is None else value
            )
        if op in ("&&", "||"):
            return self.logic(node, left, right)
        compare = _COMPARE[op]

        def evaluate(variables: Variables) -> Any:
            a, b = left(variables), right(variables)
            try:
                return compare(a, b)
            except FunctionError as error:
                raise self.error(node.at, f"{op}: {error}") from None

        return evaluate

    def logic(self, node: Operator, left: Evaluate, right: Evaluate) -> Evaluate:
        """``&&`` and ``||`` over booleans."""
        decided_by = node.op == "||"

        def boolean(value: Any) -> bool:
            if not isinstance(value, bool):
                raise self.error(node.at, f"{node.op} takes booleans, not {type_name(value)}")
            return value

        def evaluate(variables: Variables) -> bool:
            if boolean(left(variables)) is decided_by:
                return decided_by
            return boolean(right(variables))

        return evaluate

    def range(self, node: Range) -> Evaluate:
        """The body once per element, with the element (and its index) bound."""
        source, body = self.compile(node.source), self.compile(node.body)
        index, item = node.index, node.item

        def evaluate(variables: Variables) -> list[Any]:
            items = source(variables)
            if not isinstance(items, list):
                raise self.error(node.at, f"range needs an array, not {type_name(items)}")
            scope = dict(variables)
            out = []
            for position_, element in enumerate(items):
                scope[item] = element
                if index is not None:
                    scope[index] = position_
                out.append(body(scope))
            return out

        return evaluate

    def conditional(self, node: If) -> Evaluate:
        """The value of the first branch whose condition is true."""
        branches = [(self.compile(c), self.compile(v), c) for c, v in node.branches]
        otherwise = self.compile(node.otherwise)

        def evaluate(variables: Variables) -> Any:
            for condition, value, source in branches:
                decided = condition(variables)
                if not isinstance(decided, bool):
                    problem = f"if needs a boolean, not {type_name(decided)}"
                    raise self.error(source.at, problem)
                if decided:
                    return value(variables)
            return otherwise(variables)

        return evaluate


def _ordered(holds: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if numbers or (isinstance(a, str) and isinstance(b, str)):
            return holds(a, b)
        raise FunctionError(
            f"compares two numbers or two strings, not {type_name(a)} and {type_name(b)}"
        )

    return compare


def _member(a: Any, b: Any) -> bool:
    if isinstance(b, dict):
        if not isinstance(a, str):
            raise FunctionError(f"an object's field names are strings, not {type_name(a)}")
        return a in b
    if isinstance(b, list):
        return any(json_equal(a, item) for item in b)
    raise FunctionError(f"looks in an object or an array, not {type_name(b)}")


_COMPARE: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "==": json_equal,
    "!=": lambda a, b: not json_equal(a, b),
    "<": _ordered(lambda a, b: a < b),
    ">": _ordered(lambda a, b: a > b),
    "<=": _ordered(lambda a, b: a <= b),
    ">=": _ordered(lambda a, b: a >= b),
    "in": _member,
}
