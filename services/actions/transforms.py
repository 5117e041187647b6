"""Hasura's request and response transforms: what is sent to an action's handler, and what its
answer becomes, computed by Kriti templates from ``actions.yaml``.

The request transform may change the method, the URL (``$base_url`` is the configured handler),
the query parameters, the headers and the body (a template, removed, or a form); the response
transform reshapes the handler's decoded answer before it is checked against the output type.
A template that fails while a call is being made ends the action with Hasura's message.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import msgspec

from contracts.errors import ErrorCode
from services.actions.hasura import hasura_error
from services.actions.kriti import KritiEvalError, Template

if TYPE_CHECKING:
    from services.actions.config import ActionDefinition

REQUEST_VARIABLES: Final = ("$body", "$base_url", "$session_variables", "$query_params")
RESPONSE_VARIABLES: Final = ("$body", "$response", "$base_url", "$session_variables")
JSON: Final = "application/json"
FORM: Final = "application/x-www-form-urlencoded"
# Headers that describe the body that was answered, not the reshaped one.
_BODY_HEADERS: Final = frozenset({"content-length", "content-encoding", "content-type"})


@dataclass(frozen=True)
class RequestBody:
    """``body``: a template (``transform``), none at all (``remove``), or a form whose fields
    are string templates (``x_www_form_urlencoded``)."""

    action: Literal["transform", "remove", "x_www_form_urlencoded"]
    template: Template | None = None
    form: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True)
class RequestTransform:
    """``request_transform`` of an action; what is not given stays as Hasura sends it."""

    method: str | None = None
    url: Template | None = None
    content_type: str | None = None
    # Name and value templates, or one template that renders the whole query string.
    query_params: tuple[tuple[Template, Template], ...] | Template | None = None
    add_headers: tuple[tuple[str, Template], ...] = ()
    remove_headers: frozenset[str] = frozenset()
    body: RequestBody | None = None


@dataclass(frozen=True)
class ResponseTransform:
    """``response_transform``: the template the handler's answer goes through (None: the
    answer is dropped, Hasura's ``action: remove``)."""

    body: Template | None


@dataclass(frozen=True)
class HandlerRequest:
    """The HTTP request asyncgate makes to an action's handler."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


class TransformError(Exception):
    """A transform's template failed for this call; ``errors`` are as Hasura reports them."""

    def __init__(self, message: str, where: str, error: KritiEvalError) -> None:
        super().__init__(f"{message}: {where}: {error}")
        self.code = ErrorCode.ACTION_TRANSFORM_FAILED
        self.message = message
        self.errors = [hasura_error(message, internal={"transform": where, "error": str(error)})]


def _render(template: Template, variables: Mapping[str, Any], where: str, message: str) -> Any:
    try:
        return template.render(variables)
    except KritiEvalError as error:
        raise TransformError(message, where, error) from None


def _render_request(template: Template, variables: Mapping[str, Any], where: str) -> Any:
    message = "Request Transformation Failed"
    return _render(template, variables, f"request_transform.{where}", message)


def build_request(
    transform: RequestTransform | None,
    handler: str,
    payload: dict[str, Any],
    headers: Mapping[str, str],
) -> HandlerRequest:
    """Hasura's POST of ``payload`` to ``handler``, changed by ``transform``. Raises
    TransformError."""
    if transform is None:
        typed = any(name.lower() == "content-type" for name in headers)
        own = {} if typed else {"Content-Type": JSON}
        return HandlerRequest("POST", handler, {**headers, **own}, _json(payload))
    variables = {
        "$body": payload,
        "$base_url": handler,
        "$session_variables": payload["session_variables"],
        "$query_params": _query_params_of(handler),
    }
    url = handler if transform.url is None else _render_request(transform.url, variables, "url")
    url = _with_query(transform.query_params, url, variables)
    content_type, content = _body(transform, payload, variables)
    kept = {
        name: value
        for name, value in headers.items()
        if name.lower() not in transform.remove_headers and name.lower() != "content-type"
    }
    if content is not None:
        kept["Content-Type"] = content_type
    for name, template in transform.add_headers:
        kept[name] = str(_render_request(template, variables, f"request_headers.{name}"))
    return HandlerRequest(transform.method or "POST", url, kept, content)


@lru_cache(maxsize=256)
def _query_params_of(handler: str) -> dict[str, str]:
    """The handler URL's query parameters (one per action; templates only read them)."""
    return dict(parse_qsl(urlsplit(handler).query))


def _with_query(
    params: tuple[tuple[Template, Template], ...] | Template | None,
    url: str,
    variables: Mapping[str, Any],
) -> str:
    if params is None:
        return url
    if isinstance(params, Template):
        query = str(_render_request(params, variables, "query_params"))
    else:
        query = urlencode(
            [
                (
                    _render_request(name, variables, "query_params"),
                    _render_request(value, variables, f"query_params.{name.source}"),
                )
                for name, value in params
            ]
        )
    return urlunsplit(urlsplit(url)._replace(query=query))


def _body(
    transform: RequestTransform, payload: dict[str, Any], variables: Mapping[str, Any]
) -> tuple[str, bytes | None]:
    """The content type and the body."""
    body = transform.body
    content_type = transform.content_type or JSON
    if body is None:
        return content_type, _json(payload)
    if body.action == "remove":
        return content_type, None
    if body.action == "x_www_form_urlencoded":
        fields = [
            (name, _render_request(template, variables, f"body.form_template.{name}"))
            for name, template in body.form
        ]
        return FORM, urlencode(fields).encode()
    assert body.template is not None  # noqa: S101 (the loader gives every transform body one)
    rendered = _render_request(body.template, variables, "body")
    if content_type == FORM and isinstance(rendered, dict):
        # Version 1 with a form content type: the template's object becomes the form.
        return FORM, urlencode({k: _form_text(v) for k, v in rendered.items()}).encode()
    return content_type, _json(rendered)


def _form_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def transform_response(
    transform: ResponseTransform | None,
    response: httpx.Response,
    handler: str,
    session_variables: Mapping[str, str],
) -> httpx.Response:
    """The handler's response with its JSON answer reshaped by ``transform`` (2xx and 4xx
    answers, as Hasura; a 5xx or an answer that is not JSON is left as it is). Raises
    TransformError."""
    if transform is None or not (200 <= response.status_code < 500):
        return response
    try:
        answer = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response
    variables = {
        "$body": answer,
        "$response": {"status": response.status_code},
        "$base_url": handler,
        "$session_variables": dict(session_variables),
    }
    reshaped = None
    if transform.body is not None:
        message = "Response Transformation Failed"
        reshaped = _render(transform.body, variables, "response_transform.body", message)
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _BODY_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=[*headers, ("content-type", JSON)],
        content=_json(reshaped),
        request=response.request,
    )


async def send(
    http: httpx.AsyncClient,
    action: "ActionDefinition",
    payload: dict[str, Any],
    headers: Mapping[str, str],
) -> httpx.Response:
    """Call ``action``'s handler with ``payload`` through its transforms. Raises
    TransformError and httpx's errors."""
    request = build_request(action.request_transform, action.handler, payload, headers)
    response = await http.request(
        request.method,
        request.url,
        headers=request.headers,
        content=request.content,
        timeout=action.timeout_s,
    )
    return transform_response(
        action.response_transform, response, action.handler, payload["session_variables"]
    )
