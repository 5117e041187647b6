"""GraphQL over HTTP's media types: which one a client accepts, what a request may be sent as,
and which answers are request errors (pure; the edge's endpoint applies them).

The rules are the GraphQL-over-HTTP spec's: a client that names
``application/graphql-response+json`` gets it, and with it a 4xx for a request that never ran
(parse, validation or variable failures, no ``data`` entry); every other client gets
``application/json`` and a 200 for any well-formed request, as before the spec had the new type.
"""

from collections.abc import Mapping
from typing import Any, Final

GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
JSON: Final = "application/json"

# How precisely a media range names a type: exactly, as application/*, or as */*.
_EXACT, _SUBTYPE_WILDCARD, _ANY = 2, 1, 0


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def _acceptance(accept: str, media_type: str) -> tuple[float, int]:
    """The quality the Accept header gives ``media_type`` and how precisely it names it
    (the most precise matching range decides, as in RFC 9110); (0, -1) if no range matches."""
    kind = media_type.partition("/")[0]
    best: tuple[float, int] = (0.0, -1)
    for media_range in accept.split(","):
        name, *parameters = media_range.split(";")
        name = name.strip().lower()
        if name == media_type:
            precision = _EXACT
        elif name == f"{kind}/*":
            precision = _SUBTYPE_WILDCARD
        elif name == "*/*":
            precision = _ANY
        else:
            continue
        if precision > best[1]:
            best = (_quality(parameters), precision)
    return best


def response_media_type(accept: str | None) -> str:
    """The media type to answer in, from the request's Accept header.

    ``application/graphql-response+json`` when the client names it and likes it no less than
    ``application/json``; ``application/json`` otherwise, also for a missing Accept, for
    ``*/*`` and for an Accept naming neither (the spec lets a server answer its default rather
    than 406, and older clients send such headers).
    """
    if not accept:
        return JSON
    graphql_quality, graphql_precision = _acceptance(accept, GRAPHQL_RESPONSE_JSON)
    json_quality, _ = _acceptance(accept, JSON)
    if graphql_quality > json_quality or (
        graphql_quality == json_quality > 0 and graphql_precision == _EXACT
    ):
        return GRAPHQL_RESPONSE_JSON
    return JSON


def is_json_request(content_type: str | None) -> bool:
    """True for a body sent as ``application/json`` (any parameters, e.g. a charset).

    ``application/graphql-response+json`` is a response type, and ``multipart/form-data`` is for
    file uploads, which the edge does not take: neither is a request body it reads.
    """
    if not content_type:
        return False
    return content_type.split(";")[0].strip().lower() == JSON


def is_request_error(body: Mapping[str, Any]) -> bool:
    """True for a GraphQL response to a request that never ran: no data, and no error from a
    field (those carry a ``path``), only parse, validation or variable errors."""
    errors = body.get("errors")
    if body.get("data") is not None or not isinstance(errors, list) or not errors:
        return False
    return all(isinstance(error, Mapping) and "path" not in error for error in errors)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when the Accept-Encoding header takes gzip (named, or ``*``, with a quality above
    0; a named gzip decides over ``*``)."""
    wildcard = 0.0
    for coding in (accept_encoding or "").split(","):
        name, *parameters = coding.split(";")
        name = name.strip().lower()
        if name in ("gzip", "x-gzip"):
            return _quality(parameters) > 0
        if name == "*":
            wildcard = _quality(parameters)
    return wildcard > 0
