"""Calling an action's HTTP handler with Hasura's payload, and reading what it answers as Hasura
does (services/actions/hasura.py has its words).

2xx with JSON matching the output type: the output, and the answer's ``Set-Cookie`` headers for
a synchronous action's client. 4xx with ``{"message", "code"?, "extensions"?}``: the handler's
own error, with Hasura's precedence of codes. Anything else (another status, time-out, refused
connection, an answer that is not JSON or does not fit the output type): Hasura's message, code
``unexpected``, and asyncgate's explanation under ``extensions.internal``, without the request,
the response body or any other internal detail.

``ActionFailed.code`` is asyncgate's own class of the failure (``ACTION_*``): retries and
``errorCode`` go by it, never by a code the handler wrote.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from graphql import GraphQLOutputType

from contracts.errors import ErrorCode
from services.actions.config import ActionDefinition
from services.actions.hasura import (
    HTTP_EXCEPTION,
    INTERNAL_ERROR,
    NOT_JSON,
    hasura_error,
    refusal_error,
)
from services.actions.output import output_problem
from services.actions.transforms import TransformError, send

log = logging.getLogger(__name__)


# A background action can reach its handler more than once (its executor was lost mid-call):
# every call of one operation carries the same key, as payment APIs take it, and the attempt.
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
ATTEMPT_HEADER: Final = "Asyncgate-Attempt"

# Client headers never forwarded: they describe the client's connection to the edge, or are
# credentials that must not be stored in the event stream with the request.
NOT_FORWARDED: Final = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "connection",
        "upgrade",
        "content-length",
        "content-type",
        "accept-encoding",
        "transfer-encoding",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
    }
)


@dataclass(frozen=True)
class ActionSucceeded:
    """The handler answered with a valid output; ``set_cookies`` are the values of its
    ``Set-Cookie`` headers, which Hasura passes on to a synchronous action's client."""

    output: Any
    set_cookies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionFailed:
    """The action did not produce an output.

    ``code`` is asyncgate's class of the failure (an ``ACTION_*`` code: what retries and
    ``errorCode`` go by), ``message`` Hasura's text, ``errors`` the GraphQL errors Hasura
    answers (the handler's own code and extensions among them).
    """

    code: str
    message: str
    errors: list[dict[str, Any]]


# Handler servers close idle keep-alive connections, commonly after 5 s (uvicorn, Node); a call
# sent on a connection the server is closing fails although the handler never saw it. Dropping
# idle connections sooner than that avoids the race.
KEEPALIVE_EXPIRY_S: Final = 2.0


def handler_client() -> httpx.AsyncClient:
    """The HTTP client for calling action handlers (one per process)."""
    return httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    """The client headers that may be forwarded to a handler."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in NOT_FORWARDED and not name.lower().startswith("sec-websocket-")
    }


def _failed(code: ErrorCode, message: str, explanation: str) -> ActionFailed:
    internal = {"error": explanation, "code": code}
    return ActionFailed(
        code=code, message=message, errors=[hasura_error(message, internal=internal)]
    )


def _refused(body: Any) -> ActionFailed:
    error = refusal_error(body)
    return ActionFailed(code=ErrorCode.ACTION_REFUSED, message=error["message"], errors=[error])


async def call_handler(
    http: httpx.AsyncClient,
    action: ActionDefinition,
    output_type: GraphQLOutputType,
    *,
    input: dict[str, Any],
    session_variables: Mapping[str, str],
    request_query: str,
    client_headers: Mapping[str, str],
    idempotency: tuple[str, int] | None = None,
) -> ActionSucceeded | ActionFailed:
    """POST Hasura's action payload to the handler and classify its answer. Never raises.

    ``idempotency`` (operation id, attempt) is sent for background calls, so a handler can tell
    a repeat of a call it already served.
    """
    payload = {
        "action": {"name": action.name},
        "input": input,
        "session_variables": dict(session_variables),
        "request_query": request_query,
    }
    headers = {**(client_headers if action.forward_client_headers else {})}
    headers.update({header.name: header.value for header in action.headers})
    if idempotency is not None:
        headers[IDEMPOTENCY_KEY_HEADER], attempt = idempotency[0], idempotency[1]
        headers[ATTEMPT_HEADER] = str(attempt)
    try:
        # Through the action's request and response transforms, if it has any.
        response = await send(http, action, payload, headers)
    except TransformError as failure:
        return ActionFailed(code=failure.code, message=failure.message, errors=failure.errors)
    except httpx.TimeoutException:
        return _failed(
            ErrorCode.ACTION_TIMEOUT,
            HTTP_EXCEPTION,
            f"the action handler did not answer within {action.timeout_s:g} s",
        )
    except httpx.TransportError as error:
        log.warning("action %s: handler unreachable: %s", action.name, type(error).__name__)
        return _failed(
            ErrorCode.ACTION_UNREACHABLE,
            HTTP_EXCEPTION,
            f"the action handler could not be reached ({type(error).__name__})",
        )
    return classify(response, output_type)


def classify(
    response: httpx.Response, output_type: GraphQLOutputType
) -> ActionSucceeded | ActionFailed:
    """What the handler's ``response`` comes to, as Hasura reads it: the body must be JSON
    whatever the status; then 2xx is the output, 4xx the handler's error, anything else a
    failure of the handler's."""
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _failed(
            _failure_class(status), NOT_JSON, f"the action handler's answer ({status}) is not JSON"
        )
    if 400 <= status < 500:
        return _refused(body)
    if not response.is_success:
        return _failed(
            ErrorCode.ACTION_HANDLER_FAILED,
            INTERNAL_ERROR,
            f"expecting 2xx or 4xx status code, but found {status}",
        )
    problem = output_problem(body, output_type)
    if problem is not None:
        return _failed(
            ErrorCode.ACTION_BAD_RESPONSE,
            problem.message,
            f"the action handler's answer does not fit {output_type} at {problem.path}",
        )
    return ActionSucceeded(output=body, set_cookies=tuple(response.headers.get_list("set-cookie")))


def _failure_class(status: int) -> ErrorCode:
    """asyncgate's class of an unreadable answer with ``status``: a refusal for a 4xx, a bad
    answer for a 2xx, and for any other status a failure of the handler's that may pass."""
    if 400 <= status < 500:
        return ErrorCode.ACTION_REFUSED
    if 200 <= status < 300:
        return ErrorCode.ACTION_BAD_RESPONSE
    return ErrorCode.ACTION_HANDLER_FAILED
