"""Expected failures as GraphQL errors with a stable ``extensions.code``."""

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import nats.errors
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from contracts.errors import ErrorCode
from services.common.errors import is_unexpected, masked

log = logging.getLogger(__name__)


class PassedOnError(GraphQLError):
    """An error whose ``extensions`` are someone else's (an action handler's, as Hasura passes
    them on): shown exactly as they are, without a code added when they have none."""


def coded_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    """A GraphQL error whose ``extensions.code`` clients can branch on."""
    return GraphQLError(message, extensions={"code": code, **extensions})


# graphql-core's wording when a variable's value (not the document) is wrong.
_VARIABLE_VALUE_ERROR = re.compile(
    r"Variable '\$\w+' (has invalid value|got invalid value|of required type|of non-null type)"
)


def code_of(error: GraphQLError) -> str:
    """The stable code of an error that did not bring its own.

    graphql-core's own request errors (syntax, validation, variable coercion) carry no code; a
    resolver that raised something other than a GraphQLError is an internal error.
    """
    if is_unexpected(error):
        return ErrorCode.INTERNAL_SERVER_ERROR
    if is_complexity_error(error):
        return ErrorCode.QUERY_TOO_COMPLEX
    if error.message.startswith("Syntax Error"):
        return ErrorCode.GRAPHQL_PARSE_FAILED
    if _VARIABLE_VALUE_ERROR.match(error.message):
        return ErrorCode.BAD_USER_INPUT
    if error.path is None:
        return ErrorCode.GRAPHQL_VALIDATION_FAILED
    return ErrorCode.INTERNAL_SERVER_ERROR


def ensure_codes(errors: list[GraphQLError]) -> None:
    """Give every error an ``extensions.code`` (in place), keeping codes resolvers set and the
    extensions of errors passed on as they are."""
    for error in errors:
        if isinstance(error.original_error, PassedOnError):
            continue
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code_of(error)}


@contextlib.contextmanager
def unavailable_without_nats(action: str, *, connected: bool) -> Iterator[None]:
    """Turn NATS being unreachable into a SERVICE_UNAVAILABLE error the client can retry.

    While the connection is known to be down it fails at once instead of waiting for a time-out.
    """
    unavailable = coded_error(
        f"{action} is not possible right now; try again shortly", ErrorCode.SERVICE_UNAVAILABLE
    )
    if not connected:
        log.warning("%s refused: not connected to NATS", action)
        raise unavailable
    try:
        yield
    except (nats.errors.Error, TimeoutError) as error:
        log.warning("%s failed: %s", action, type(error).__name__)
        raise unavailable from None


class MaskUnexpectedErrors(MaskErrors):
    """strawberry's MaskErrors, keeping a stable code on what it masks."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        """The masked error, with code INTERNAL_SERVER_ERROR."""
        return masked(error)

    def _process_result(self, result: object) -> None:
        # strawberry checks the result against a runtime Protocol here, which walks the
        # Protocol's attributes on every request (~10 us); looking for errors is enough.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]  # has errors


# Codes for the requests strawberry refuses before any GraphQL runs, by its wording.


def http_error_code(status: int, reason: str) -> str:
    """The stable code of an HTTP-level refusal."""
    if reason.startswith("Unknown operation named"):
        return ErrorCode.OPERATION_RESOLUTION_FAILURE
    by_status = {
        401: ErrorCode.UNAUTHENTICATED,
        404: ErrorCode.NOT_FOUND,
        405: ErrorCode.METHOD_NOT_ALLOWED,
        413: ErrorCode.PAYLOAD_TOO_LARGE,
        431: ErrorCode.HEADERS_TOO_LARGE,
        415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    }
    if "content type" in reason.lower():
        return ErrorCode.UNSUPPORTED_MEDIA_TYPE
    return by_status.get(status, ErrorCode.BAD_REQUEST)


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL response body carrying one coded error and no data."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def is_complexity_error(error: GraphQLError) -> bool:
    """True for a depth, alias or token limit's own error (recognised by graphql-core's and
    strawberry's wording, since those errors carry no code)."""
    message = error.message
    return (
        "exceeds maximum operation depth" in message
        or "aliases found. Allowed:" in message
        or ("Document contains more than" in message and "tokens" in message)
    )
