"""Masking unexpected errors: the same on the synchronous path and inside async operations.

A resolver that raises a GraphQLError meant to tell the client something; anything else it
raises is a bug or an outage whose details (messages, stack traces, hostnames) stay in the log.
"""

import logging
from typing import Final

from graphql import GraphQLError

from contracts.errors import ErrorCode

log = logging.getLogger(__name__)

UNEXPECTED_MESSAGE: Final = "Unexpected error."


def is_unexpected(error: GraphQLError) -> bool:
    """True if a resolver raised something other than a GraphQLError."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def masked(error: GraphQLError) -> GraphQLError:
    """The client's view of an unexpected error: where it happened, not what it was."""
    return GraphQLError(
        UNEXPECTED_MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR},
    )


def mask_unexpected(errors: list[GraphQLError]) -> list[GraphQLError]:
    """``errors`` with every unexpected one masked (and logged with its details)."""
    shown = []
    for error in errors:
        if is_unexpected(error):
            log.error("unexpected error at %s", error.path, exc_info=error.original_error)
            shown.append(masked(error))
        else:
            shown.append(error)
    return shown
