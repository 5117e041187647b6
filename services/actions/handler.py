"""Calling an action's HTTP handler with Hasura's payload, and reading what it answers.

2xx with JSON matching the output type: the output. 4xx with ``{"message", "code"}``: the
handler's own errors, passed on as it wrote them. Anything else (5xx, time-out, refused
connection, an answer that is not JSON or does not match the output type): a clear error of
asyncgate's, without the request, the response body or any other internal detail.
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
    """The handler answered with a valid output."""

    output: Any


@dataclass(frozen=True)
class ActionFailed:
    """The action did not produce an output; ``errors`` are GraphQL-style error objects."""

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


def _failed(code: str, message: str) -> ActionFailed:
    return ActionFailed(
        code=code, message=message, errors=[{"message": message, "extensions": {"code": code}}]
    )


def _refusal(status: int, body: Any) -> ActionFailed:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        extensions: dict[str, Any] = (
            body["extensions"] if isinstance(body.get("extensions"), dict) else {}
        )
        code = body.get("code") or extensions.get("code") or ErrorCode.ACTION_REFUSED
        error = {"message": body["message"], "extensions": {**extensions, "code": str(code)}}
        return ActionFailed(code=str(code), message=body["message"], errors=[error])
    return _failed(
        ErrorCode.ACTION_BAD_RESPONSE,
        f"the action handler refused the call ({status}) without a message",
    )


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
            f"the action handler did not answer within {action.timeout_s:g} s",
        )
    except httpx.TransportError as error:
        log.warning("action %s: handler unreachable: %s", action.name, type(error).__name__)
        return _failed(ErrorCode.ACTION_UNREACHABLE, "the action handler could not be reached")
    return _classify(response, output_type)


def _classify(
    response: httpx.Response, output_type: GraphQLOutputType
) -> ActionSucceeded | ActionFailed:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = _NOT_JSON
    if 400 <= response.status_code < 500:
        return _refusal(response.status_code, body)
    if not response.is_success:
        return _failed(
            ErrorCode.ACTION_HANDLER_FAILED, f"the action handler failed ({response.status_code})"
        )
    if body is _NOT_JSON:
        return _failed(ErrorCode.ACTION_BAD_RESPONSE, "the action handler's answer is not JSON")
    problem = output_problem(body, output_type)
    if problem:
        return _failed(
            ErrorCode.ACTION_BAD_RESPONSE, f"the action handler's answer does not fit: {problem}"
        )
    return ActionSucceeded(output=body)


_NOT_JSON: Final = object()
