"""Reading an action's ``request_transform`` and ``response_transform`` from actions.yaml, with
Hasura's keys. Every template is parsed here, at start-up: a template that does not parse, an
unknown variable or function, or an unknown key is refused with its line in the file."""

from collections.abc import Callable
from typing import Any, Final

from services.actions.kriti import KritiSyntaxError, Template, parse_string_template, parse_template
from services.actions.transforms import (
    FORM,
    JSON,
    REQUEST_VARIABLES,
    RESPONSE_VARIABLES,
    RequestBody,
    RequestTransform,
    ResponseTransform,
)
from services.actions.yaml_lines import fields, line_of, text_line

METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
_REQUEST_KEYS: Final = frozenset(
    {"version", "template_engine", "method", "url", "content_type", "query_params"}
    | {"request_headers", "body"}
)
_RESPONSE_KEYS: Final = frozenset({"version", "template_engine", "body"})


class TransformConfigError(ValueError):
    """A transform cannot be used; ``line`` is where in actions.yaml."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


Parse = Callable[[str, tuple[str, ...]], Template]


def _template(
    mapping: dict[str, Any], key: str, where: str, variables: tuple[str, ...], parse: Parse
) -> Template:
    """The template at ``mapping[key]``, parsed; refused at its line."""
    text = mapping[key]
    if not isinstance(text, str):
        raise TransformConfigError(line_of(mapping, key), f"{where} must be a template string")
    try:
        return parse(text, variables)
    except KritiSyntaxError as error:
        line = text_line(mapping, key, error.line)
        message = f"{where} is not a template asyncgate can use: {error}"
        raise TransformConfigError(line, message) from None


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent[key]
    if not isinstance(value, dict):
        raise TransformConfigError(line_of(parent, key), f"{where} must be a mapping")
    return value


def _check_keys(mapping: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in fields(mapping):
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            message = f"{where} has no key {key!r} (it takes {known})"
            raise TransformConfigError(line_of(mapping, key), message)


def _header(spec: dict[str, Any], where: str) -> None:
    """``version`` (1 or 2) and ``template_engine`` (Kriti) of either transform."""
    if spec.get("version", 1) not in (1, 2):
        raise TransformConfigError(line_of(spec, "version"), f"{where}.version must be 1 or 2")
    if spec.get("template_engine", "Kriti") != "Kriti":
        line = line_of(spec, "template_engine")
        raise TransformConfigError(line, f"{where}.template_engine must be Kriti")


def request_transform(entry: dict[str, Any]) -> RequestTransform | None:
    """The action's ``request_transform``, or None."""
    if entry.get("request_transform") is None:
        return None
    where = "request_transform"
    spec = _mapping(entry, where, where)
    _check_keys(spec, _REQUEST_KEYS, where)
    _header(spec, where)
    method = spec.get("method")
    if method is not None and (not isinstance(method, str) or method.upper() not in METHODS):
        message = f"{where}.method must be one of {', '.join(METHODS)}"
        raise TransformConfigError(line_of(spec, "method"), message)
    content_type = spec.get("content_type")
    if content_type not in (None, JSON, FORM):
        message = f"{where}.content_type must be {JSON} or {FORM}"
        raise TransformConfigError(line_of(spec, "content_type"), message)
    url = None
    if "url" in spec:
        url = _template(spec, "url", f"{where}.url", REQUEST_VARIABLES, parse_string_template)
    add, remove = _headers(spec)
    return RequestTransform(
        method=method.upper() if isinstance(method, str) else None,
        url=url,
        content_type=content_type,
        query_params=_query_params(spec),
        add_headers=add,
        remove_headers=remove,
        body=_request_body(spec),
    )


def _query_params(spec: dict[str, Any]) -> tuple[tuple[Template, Template], ...] | Template | None:
    where = "request_transform.query_params"
    if spec.get("query_params") is None:
        return None
    if isinstance(spec["query_params"], str):
        return _template(spec, "query_params", where, REQUEST_VARIABLES, parse_string_template)
    params = _mapping(spec, "query_params", where)
    pairs = []
    for name in fields(params):
        try:
            key = parse_string_template(str(name), REQUEST_VARIABLES)
        except KritiSyntaxError as error:
            message = f"{where} name {name!r} is not a template asyncgate can use: {error}"
            raise TransformConfigError(line_of(params, name), message) from None
        value = _template(params, name, f"{where}.{name}", REQUEST_VARIABLES, parse_string_template)
        pairs.append((key, value))
    return tuple(pairs)


def _headers(spec: dict[str, Any]) -> tuple[tuple[tuple[str, Template], ...], frozenset[str]]:
    where = "request_transform.request_headers"
    if spec.get("request_headers") is None:
        return (), frozenset()
    headers = _mapping(spec, "request_headers", where)
    _check_keys(headers, frozenset({"add_headers", "remove_headers"}), where)
    add = []
    if headers.get("add_headers") is not None:
        added = _mapping(headers, "add_headers", f"{where}.add_headers")
        for name in fields(added):
            value = _template(
                added, name, f"{where}.add_headers.{name}", REQUEST_VARIABLES, parse_string_template
            )
            add.append((str(name), value))
    removed = headers.get("remove_headers") or []
    if not isinstance(removed, list) or not all(isinstance(name, str) for name in removed):
        line = line_of(headers, "remove_headers")
        raise TransformConfigError(line, f"{where}.remove_headers must be a list of names")
    return tuple(add), frozenset(name.lower() for name in removed)


def _request_body(spec: dict[str, Any]) -> RequestBody | None:
    where = "request_transform.body"
    if spec.get("body") is None:
        return None
    if isinstance(spec["body"], str):
        # Version 1: the body is the template.
        return RequestBody(
            "transform", _template(spec, "body", where, REQUEST_VARIABLES, parse_template)
        )
    body = _mapping(spec, "body", where)
    _check_keys(body, frozenset({"action", "template", "form_template"}), where)
    action = body.get("action")
    if action == "remove":
        return RequestBody("remove")
    if action == "transform" and "template" in body:
        template = _template(
            body, "template", f"{where}.template", REQUEST_VARIABLES, parse_template
        )
        return RequestBody("transform", template)
    if action == "x_www_form_urlencoded" and "form_template" in body:
        form = _mapping(body, "form_template", f"{where}.form_template")
        return RequestBody(
            "x_www_form_urlencoded",
            form=tuple(
                (
                    str(name),
                    _template(
                        form,
                        name,
                        f"{where}.form_template.{name}",
                        REQUEST_VARIABLES,
                        parse_string_template,
                    ),
                )
                for name in fields(form)
            ),
        )
    message = (
        f"{where} takes action: transform with a template, remove, or "
        "x_www_form_urlencoded with a form_template"
    )
    raise TransformConfigError(line_of(body, "action"), message)


def response_transform(entry: dict[str, Any]) -> ResponseTransform | None:
    """The action's ``response_transform``, or None."""
    if entry.get("response_transform") is None:
        return None
    where = "response_transform"
    spec = _mapping(entry, where, where)
    _check_keys(spec, _RESPONSE_KEYS, where)
    _header(spec, where)
    if spec.get("body") is None:
        raise TransformConfigError(line_of(spec, "body"), f"{where} needs a body")
    if isinstance(spec["body"], str):
        return ResponseTransform(
            _template(spec, "body", f"{where}.body", RESPONSE_VARIABLES, parse_template)
        )
    body = _mapping(spec, "body", f"{where}.body")
    _check_keys(body, frozenset({"action", "template"}), f"{where}.body")
    if body.get("action") == "remove":
        return ResponseTransform(None)
    if body.get("action") == "transform" and "template" in body:
        where = f"{where}.body.template"
        return ResponseTransform(
            _template(body, "template", where, RESPONSE_VARIABLES, parse_template)
        )
    message = f"{where}.body takes action: transform with a template, or remove"
    raise TransformConfigError(line_of(body, "action"), message)
