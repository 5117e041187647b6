"""Checking a handler's answer against the action's declared output type."""

from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
)


def output_problem(value: Any, output_type: GraphQLOutputType, path: str = "output") -> str | None:
    """Why ``value`` is not a valid ``output_type``, or None if it is."""
    if isinstance(output_type, GraphQLNonNull):
        return (
            f"{path} must not be null"
            if value is None
            else output_problem(value, output_type.of_type, path)
        )
    if value is None:
        return None
    if isinstance(output_type, GraphQLList):
        return _list_problem(value, output_type, path)
    if isinstance(output_type, GraphQLObjectType):
        return _object_problem(value, output_type, path)
    if isinstance(output_type, GraphQLScalarType | GraphQLEnumType):
        return _leaf_problem(value, output_type, path)
    return f"{path} has a type actions cannot return ({output_type})"


def _list_problem(value: Any, list_type: GraphQLList[Any], path: str) -> str | None:
    if not isinstance(value, list):
        return f"{path} must be a list"
    problems = (output_problem(v, list_type.of_type, f"{path}[{i}]") for i, v in enumerate(value))
    return next((problem for problem in problems if problem), None)


def _object_problem(value: Any, object_type: GraphQLObjectType, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{path} must be an object of type {object_type.name}"
    problems = (
        output_problem(value.get(name), field.type, f"{path}.{name}")
        for name, field in object_type.fields.items()
    )
    return next((problem for problem in problems if problem), None)


def _leaf_problem(
    value: Any, leaf_type: GraphQLScalarType | GraphQLEnumType, path: str
) -> str | None:
    try:
        leaf_type.serialize(value)
    except (GraphQLError, TypeError, ValueError):
        return f"{path} is not a valid {leaf_type.name}"
    return None
