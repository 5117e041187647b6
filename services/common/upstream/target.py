"""The upstream target: operations POSTed to an existing GraphQL HTTP API.

What its answers come to, as for action handlers (services/actions/handler.py): a 2xx GraphQL
response is the result, GraphQL errors included. A 5xx (and 408, 429), a time-out or a refused
connection is a passing failure, retried by the executor as ASYNCGATE_RETRY_ATTEMPTS allows
(services/executor/retries.py). A 4xx is a refusal, and an answer that is no GraphQL response
is unusable; neither is tried again.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from graphql import GraphQLSchema

from contracts.errors import ErrorCode
from services.common.identity import OperationContext, session_variables
from services.common.target import TargetCallError
from services.common.upstream.headers import upstream_headers

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "no".
PASSING_STATUSES: Final = frozenset({408, 429})
# Request errors come back as 200 with errors (GraphQL over HTTP's legacy media type): a 4xx
# then always means the call itself was refused (credentials, permissions).
ACCEPT: Final = "application/json"


def _messages(body: object) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    return "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))


def response_of(status: int, content: bytes) -> dict[str, Any]:
    """The GraphQL response in an upstream's answer; TargetCallError for any other answer."""
    if status >= 500 or status in PASSING_STATUSES:
        raise TargetCallError(ErrorCode.UPSTREAM_FAILED, f"the upstream failed ({status})")
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if 400 <= status < 500:
        said = _messages(body)
        response = body if said else None
        raise TargetCallError(
            ErrorCode.UPSTREAM_REFUSED,
            f"the upstream refused the call ({status})" + (f": {said}" if said else ""),
            response,
        )
    if not 200 <= status < 300:
        raise TargetCallError(
            ErrorCode.UPSTREAM_BAD_RESPONSE, f"the upstream answered {status}, not a result"
        )
    if not isinstance(body, dict) or not ("data" in body or "errors" in body):
        raise TargetCallError(
            ErrorCode.UPSTREAM_BAD_RESPONSE, "the upstream's answer is not a GraphQL response"
        )
    return body


@dataclass
class UpstreamTarget:
    """An existing GraphQL HTTP API, called with the gateway's headers and the caller's
    identity (services/common/upstream/headers.py).

    ``schema`` is what the edge validates against; executors never need it (the edge validated
    every document it queued), so theirs stays None and they never ask the upstream for it.
    """

    url: str
    http: httpx.AsyncClient
    headers: Mapping[str, str]
    timeout: httpx.Timeout
    schema: GraphQLSchema | None = field(default=None)

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The upstream's schema as last loaded."""
        if self.schema is None:
            raise RuntimeError("the upstream's schema was never loaded")
        return self.schema

    async def execute(
        self,
        *,
        query: str,
        variables: dict[str, Any],
        operation_name: str | None,
        context: OperationContext,
        authorization: str | None = None,
    ) -> dict[str, Any]:
        """POST the operation to the upstream; its GraphQL response, or TargetCallError."""
        principal = context.principal
        headers = upstream_headers(
            self.headers,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            session=session_variables(principal),
            authorization=authorization,
        )
        headers["Accept"] = ACCEPT
        body = {"query": query, "variables": variables, "operationName": operation_name}
        try:
            response = await self.http.post(
                self.url, json=body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException:
            raise TargetCallError(
                ErrorCode.UPSTREAM_TIMEOUT, "the upstream did not answer in time"
            ) from None
        except httpx.TransportError as error:
            log.warning("upstream unreachable: %s", type(error).__name__)
            raise TargetCallError(
                ErrorCode.UPSTREAM_UNREACHABLE, "the upstream could not be reached"
            ) from None
        return response_of(response.status_code, response.content)
