"""Every error code asyncgate itself puts in ``errors[].extensions.code`` or an operation's
``errorCode`` (README's "Error codes" table lists them, and a test keeps the two equal).

A target schema's resolvers and an action handler may use codes of their own; those pass
through unchanged and are not listed here.
"""

from enum import StrEnum, unique


@unique
class ErrorCode(StrEnum):
    """A stable, machine-readable reason; the message beside it is for humans."""

    # The request (outer document, or the inner one an async field carries).
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
    NESTED_ASYNC_QUERY = "NESTED_ASYNC_QUERY"
    UNSUPPORTED_OPERATION = "UNSUPPORTED_OPERATION"
    QUERY_TOO_LARGE = "QUERY_TOO_LARGE"
    VARIABLES_TOO_LARGE = "VARIABLES_TOO_LARGE"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    # One operation selecting both asyncgate's own root fields and an upstream API's.
    MIXED_OPERATION = "MIXED_OPERATION"
    # Who is asking, and how much they may ask.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
    RATE_LIMITED = "RATE_LIMITED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # A callbackUrl that is not an http(s) URL on ASYNCGATE_CALLBACK_ALLOWED_HOSTS.
    CALLBACK_URL_NOT_ALLOWED = "CALLBACK_URL_NOT_ALLOWED"
    # HTTP itself.
    BAD_REQUEST = "BAD_REQUEST"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    # asyncgate's own trouble.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # How an operation ended, when no single code of the target's says it better.
    OPERATION_FAILED = "OPERATION_FAILED"
    TIMEOUT = "TIMEOUT"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
    # Reading a result: too large for asyncResult.data (download it from dataUrl).
    RESULT_TOO_LARGE_TO_READ = "RESULT_TOO_LARGE_TO_READ"
    RESULT_READS_BUSY = "RESULT_READS_BUSY"
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    # Actions: what the call to the action handler came to.
    ACTION_HANDLER_FAILED = "ACTION_HANDLER_FAILED"
    ACTION_TIMEOUT = "ACTION_TIMEOUT"
    ACTION_UNREACHABLE = "ACTION_UNREACHABLE"
    ACTION_BAD_RESPONSE = "ACTION_BAD_RESPONSE"
    ACTION_REFUSED = "ACTION_REFUSED"
    ACTION_UNKNOWN = "ACTION_UNKNOWN"
    ACTION_TRANSFORM_FAILED = "ACTION_TRANSFORM_FAILED"
    # Upstream mode: what the call to the upstream GraphQL API came to (classified as actions').
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    UPSTREAM_UNREACHABLE = "UPSTREAM_UNREACHABLE"
    UPSTREAM_REFUSED = "UPSTREAM_REFUSED"
    UPSTREAM_BAD_RESPONSE = "UPSTREAM_BAD_RESPONSE"
    UPSTREAM_AUTHORIZATION_UNREADABLE = "UPSTREAM_AUTHORIZATION_UNREADABLE"
