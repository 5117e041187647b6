"""Expected failures as GraphQL errors with a stable ``extensions.code``."""

import contextlib
import re
from collections.abc import Iterator
from typing import Any, Final

import nats.errors
from graphql import GraphQLError

GRAPHQL_PARSE_FAILED: Final = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED: Final = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT: Final = "BAD_USER_INPUT"
OPERATION_RESOLUTION_FAILURE: Final = "OPERATION_RESOLUTION_FAILURE"
NESTED_ASYNC_QUERY: Final = "NESTED_ASYNC_QUERY"
UNSUPPORTED_OPERATION: Final = "UNSUPPORTED_OPERATION"
SERVICE_UNAVAILABLE: Final = "SERVICE_UNAVAILABLE"


def coded_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    """A GraphQL error whose ``extensions.code`` clients can branch on."""
    return GraphQLError(message, extensions={"code": code, **extensions})


INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"

# graphql-core's wording when a variable's value (not the document) is wrong.
_VARIABLE_VALUE_ERROR = re.compile(
    r"Variable '\$\w+' (has invalid value|got invalid value|of required type|of non-null type)"
)


def code_of(error: GraphQLError) -> str:
    """The stable code of an error that did not bring its own.

    graphql-core's own request errors (syntax, validation, variable coercion) carry no code; a
    resolver that raised something other than a GraphQLError is an internal error.
    """
    if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
        return INTERNAL_SERVER_ERROR
    if error.message.startswith("Syntax Error"):
        return GRAPHQL_PARSE_FAILED
    if _VARIABLE_VALUE_ERROR.match(error.message):
        return BAD_USER_INPUT
    if error.path is None:
        return GRAPHQL_VALIDATION_FAILED
    return INTERNAL_SERVER_ERROR


def ensure_codes(errors: list[GraphQLError]) -> None:
    """Give every error an ``extensions.code`` (in place), keeping codes resolvers set."""
    for error in errors:
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code_of(error)}


@contextlib.contextmanager
def unavailable_without_nats(action: str, *, connected: bool) -> Iterator[None]:
    """Turn NATS being unreachable into a SERVICE_UNAVAILABLE error the client can retry.

    While the connection is known to be down it fails at once instead of waiting for a time-out.
    """
    unavailable = coded_error(
        f"{action} is not possible right now; try again shortly", SERVICE_UNAVAILABLE
    )
    if not connected:
        raise unavailable
    try:
        yield
    except (nats.errors.Error, TimeoutError):
        raise unavailable from None
