"""Checking a handler's answer against the action's declared output type, in Hasura's words.

Hasura (``validateResponse``) checks the answer's shape against the output type, list elements
included, and an object's non-nullable fields: present and not null. asyncgate also checks what
Hasura passes through unchecked (the values inside an object's fields, custom scalars and
enums), because graphql-core would refuse them later with a less clear error, or, for an async
action, only when its result is read; those failures are worded as Hasura words the same
mismatch at the top.
"""

from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
)

from services.actions.hasura import ROOT_PATH

GOT_NULL: Final = "got null for the action webhook response"
EXPECTING_ARRAY: Final = "expecting array for the action webhook response"

# Which JSON values Hasura takes for each built-in scalar without complaint.
_BUILT_IN: Final[dict[str, tuple[type, ...]]] = {
    "Int": (int, float),
    "Float": (int, float),
    "String": (str,),
    "ID": (str,),
    "Boolean": (bool,),
}


@dataclass(frozen=True)
class OutputProblem:
    """Why an answer does not fit: Hasura's message, and where in the answer (a JSON path)."""

    message: str
    path: str


def got(value: Any, expected: str) -> str:
    """Hasura's message for a value of the wrong JSON type where ``expected`` was due.

    Hasura's latest source says "scalar String" for a number too; kept, so the texts match.
    """
    if isinstance(value, list):
        return f"got array for the action webhook response, expecting {expected}"
    if isinstance(value, dict):
        return f"got object for the action webhook response, expecting {expected}"
    kind = "Boolean" if isinstance(value, bool) else "String"
    return f"got scalar {kind} for the action webhook response, expecting {expected}"


def output_problem(
    value: Any, output_type: GraphQLOutputType, path: str = ROOT_PATH
) -> OutputProblem | None:
    """Why ``value`` is not a valid ``output_type``, or None if it is."""
    if isinstance(output_type, GraphQLNonNull):
        inner = output_type.of_type
        return (
            OutputProblem(GOT_NULL, path) if value is None else output_problem(value, inner, path)
        )
    if value is None:
        return None
    if isinstance(output_type, GraphQLList):
        return _list_problem(value, output_type, path)
    if isinstance(output_type, GraphQLObjectType):
        return _object_problem(value, output_type, path)
    if isinstance(output_type, GraphQLScalarType | GraphQLEnumType):
        return _leaf_problem(value, output_type, path)
    return OutputProblem(got(value, str(output_type)), path)


def _list_problem(value: Any, list_type: GraphQLList[Any], path: str) -> OutputProblem | None:
    if not isinstance(value, list):
        return OutputProblem(EXPECTING_ARRAY, path)
    problems = (
        output_problem(item, list_type.of_type, f"{path}[{index}]")
        for index, item in enumerate(value)
    )
    return next((problem for problem in problems if problem), None)


def _object_problem(value: Any, object_type: GraphQLObjectType, path: str) -> OutputProblem | None:
    if not isinstance(value, dict):
        return OutputProblem(got(value, object_type.name), path)
    # Hasura's own check first: every non-nullable field present and not null. Fields the type
    # does not declare are ignored.
    for name, field in object_type.fields.items():
        if not isinstance(field.type, GraphQLNonNull):
            continue
        if name not in value:
            return OutputProblem(
                f'field "{name}" expected in webhook response, but not found', f"{path}.{name}"
            )
        if value[name] is None:
            return OutputProblem(f'expecting not null value for field "{name}"', f"{path}.{name}")
    problems = (
        output_problem(value.get(name), field.type, f"{path}.{name}")
        for name, field in object_type.fields.items()
    )
    return next((problem for problem in problems if problem), None)


def _leaf_problem(
    value: Any, leaf_type: GraphQLScalarType | GraphQLEnumType, path: str
) -> OutputProblem | None:
    accepted = _BUILT_IN.get(leaf_type.name)
    wrong_json_type = accepted is not None and (
        not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool))
    )
    if wrong_json_type:
        return OutputProblem(got(value, leaf_type.name), path)
    try:
        leaf_type.serialize(value)
    except (GraphQLError, TypeError, ValueError):
        return OutputProblem(got(value, leaf_type.name), path)
    return None
