"""Loading ``actions.yaml`` and the ``actions.graphql`` beside it; a bad file names its line."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from graphql import (
    DocumentNode,
    FieldDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLOutputType,
    GraphQLSchema,
    ObjectTypeDefinitionNode,
    TypeDefinitionNode,
    build_ast_schema,
    parse,
)

from services.actions.transform_config import (
    TransformConfigError,
    request_transform,
    response_transform,
)
from services.actions.transforms import RequestTransform, ResponseTransform
from services.actions.yaml_lines import LINE, MARKERS, LineLoader, line_of
from services.common.callback_urls import AllowedHosts, CallbackUrlError, check_callback_url

# Scalars every Hasura schema has, which actions.graphql uses without declaring them.
HASURA_SCALARS = ("uuid", "json", "jsonb", "timestamptz")
ROOT_TYPES = {"Mutation": "mutation", "Query": "query"}
NO_HOSTS = AllowedHosts()
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_BACKOFF_S = 1.0
MAX_RETRY_ATTEMPTS = 100
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ActionsConfigError(ValueError):
    """The actions files cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Header:
    """A header sent to the handler on every call."""

    name: str
    value: str


@dataclass(frozen=True)
class Retry:
    """How often an operation is tried when it fails for a passing reason (a handler's 5xx,
    refused connection or time-out), and the first pause between tries in seconds (doubling
    after each, with jitter). ``attempts`` 1 means never again."""

    attempts: int = 1
    backoff_s: float = DEFAULT_BACKOFF_S


@dataclass(frozen=True)
class ActionDefinition:
    """One action: its GraphQL field and how to call its handler."""

    name: str
    operation: Literal["mutation", "query"]
    kind: Literal["synchronous", "asynchronous"]
    handler: str
    timeout_s: float
    headers: tuple[Header, ...]
    forward_client_headers: bool
    field: FieldDefinitionNode
    retry: Retry = Retry()
    # Hasura's request_transform and response_transform (services/actions/transforms.py).
    request_transform: RequestTransform | None = None
    response_transform: ResponseTransform | None = None
    # Where the operation's final state is POSTed once it has ended (asynchronous actions).
    callback_url: str | None = None

    @property
    def is_async(self) -> bool:
        """An asynchronous action answers with an action id and runs in the background."""
        return self.kind == "asynchronous"


@dataclass(frozen=True)
class ActionsConfig:
    """Every declared action, the SDL types they use, and those types built for checking."""

    actions: Mapping[str, ActionDefinition]
    type_definitions: tuple[TypeDefinitionNode, ...]
    schema: GraphQLSchema

    def field(self, action: str) -> GraphQLField:
        """The field ``action`` as actions.graphql declares it (arguments and output type)."""
        definition = self.actions[action]
        schema = self.schema
        root = schema.mutation_type if definition.operation == "mutation" else schema.query_type
        if root is None or action not in root.fields:
            raise KeyError(action)
        field: GraphQLField = root.fields[action]
        return field

    def output_type(self, action: str) -> GraphQLOutputType:
        """The declared output type of ``action``."""
        output: GraphQLOutputType = self.field(action).type
        return output


def _fail(path: Path, line: int | None, message: str) -> ActionsConfigError:
    where = f"{path}:{line}" if line else str(path)
    return ActionsConfigError(f"{where}: {message}")


def _expand(value: str, environ: Mapping[str, str], path: Path, line: int) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise _fail(path, line, f"environment variable {name} is not set")
        return environ[name]

    return _TEMPLATE.sub(substitute, value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except OSError as error:
        raise _fail(path, None, f"cannot read: {error.strerror}") from None
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        raise _fail(path, line, f"not valid YAML: {error.problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
        raise _fail(path, 1, "expected a mapping with an 'actions' list")
    return data


def _read_sdl(path: Path) -> DocumentNode:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _fail(path, None, f"cannot read: {error.strerror}") from None
    except GraphQLError as error:
        line = error.locations[0].line if error.locations else None
        raise _fail(path, line, error.message) from None


def _build_types(document: DocumentNode, path: Path) -> GraphQLSchema:
    declared = {d.name.value for d in document.definitions if isinstance(d, TypeDefinitionNode)}
    prelude = "".join(f"scalar {name}\n" for name in HASURA_SCALARS if name not in declared)
    offset = prelude.count("\n")
    if "Query" not in declared:
        prelude += "type Query { _actions: Boolean }\n"
        offset += 1
    try:
        full = parse(prelude + (document.loc.source.body if document.loc else ""))
        return build_ast_schema(full)
    except (GraphQLError, TypeError) as error:
        locations = getattr(error, "locations", None)
        line = locations[0].line - offset if locations else None
        raise _fail(path, line, str(getattr(error, "message", error))) from None


def _root_fields(document: DocumentNode) -> dict[str, tuple[str, FieldDefinitionNode]]:
    fields: dict[str, tuple[str, FieldDefinitionNode]] = {}
    for definition in document.definitions:
        if isinstance(definition, ObjectTypeDefinitionNode) and definition.name.value in ROOT_TYPES:
            for field in definition.fields or ():
                fields[field.name.value] = (ROOT_TYPES[definition.name.value], field)
    return fields


def _headers(spec: Any, path: Path, line: int, environ: Mapping[str, str]) -> tuple[Header, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise _fail(path, line, "headers must be a list of {name, value} or {name, value_from_env}")
    headers = []
    for item in spec:
        item_line = int(item.get(LINE, line)) if isinstance(item, dict) else line
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _fail(path, item_line, "every header needs a name")
        if isinstance(item.get("value"), str):
            headers.append(Header(item["name"], item["value"]))
        elif isinstance(item.get("value_from_env"), str):
            variable = item["value_from_env"]
            if variable not in environ:
                raise _fail(path, item_line, f"environment variable {variable} is not set")
            headers.append(Header(item["name"], environ[variable]))
        else:
            raise _fail(path, item_line, f"header {item['name']} needs value or value_from_env")
    return tuple(headers)


def _retry(spec: Any, path: Path, line: int) -> Retry:
    """``retry: {attempts, backoff}`` of an action (absent: tried once)."""
    if spec is None:
        return Retry()
    if not isinstance(spec, dict):
        raise _fail(path, line, "retry must be a mapping with attempts and backoff")
    unknown = sorted(set(spec) - {"attempts", "backoff"} - MARKERS)
    if unknown:
        raise _fail(path, line, f"retry takes attempts and backoff, not {', '.join(unknown)}")
    attempts = spec.get("attempts", 1)
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= MAX_RETRY_ATTEMPTS
    ):
        raise _fail(
            path,
            line_of(spec, "attempts"),
            f"retry attempts must be a whole number from 1 to {MAX_RETRY_ATTEMPTS}",
        )
    backoff = spec.get("backoff", DEFAULT_BACKOFF_S)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff <= 0:
        raise _fail(
            path, line_of(spec, "backoff"), "retry backoff must be a positive number of seconds"
        )
    return Retry(attempts=attempts, backoff_s=float(backoff))


def _callback_url(
    definition: dict[str, Any],
    kind: str,
    path: Path,
    environ: Mapping[str, str],
    callback_hosts: AllowedHosts,
) -> str | None:
    """An asynchronous action's ``callback_url``, if it has one that may be called."""
    url = definition.get("callback_url")
    if url is None:
        return None
    line = line_of(definition, "callback_url")
    if not isinstance(url, str) or not url:
        raise _fail(path, line, "callback_url must be a URL")
    if kind != "asynchronous":
        raise _fail(path, line, "only asynchronous actions can have a callback_url")
    url = _expand(url, environ, path, line)
    try:
        check_callback_url(url, callback_hosts)
    except CallbackUrlError as error:
        raise _fail(path, line, str(error)) from None
    return url


def _action(
    entry: Any,
    fields: dict[str, tuple[str, FieldDefinitionNode]],
    path: Path,
    sdl_path: Path,
    environ: Mapping[str, str],
    *,
    callback_hosts: AllowedHosts,
) -> ActionDefinition:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        line = int(entry.get(LINE, 1)) if isinstance(entry, dict) else 1
        raise _fail(path, line, "every action needs a name")
    name = entry["name"]
    if name not in fields:
        raise _fail(
            path,
            line_of(entry, "name"),
            f"action {name} is not a field of Mutation or Query in {sdl_path.name}",
        )
    definition = entry.get("definition")
    if not isinstance(definition, dict):
        raise _fail(path, line_of(entry, "definition"), f"action {name} needs a definition")
    operation, field = fields[name]
    kind = definition.get("kind", "synchronous")
    if kind not in ("synchronous", "asynchronous"):
        raise _fail(
            path,
            line_of(definition, "kind"),
            f"kind must be synchronous or asynchronous, not {kind!r}",
        )
    if kind == "asynchronous" and operation != "mutation":
        raise _fail(
            path,
            line_of(definition, "kind"),
            f"action {name} is a query; only mutations can be asynchronous",
        )
    handler = definition.get("handler")
    if not isinstance(handler, str) or not handler:
        raise _fail(path, line_of(entry, "definition"), f"action {name} needs a handler URL")
    handler = _expand(handler, environ, path, line_of(definition, "handler"))
    if not handler.startswith(("http://", "https://")):
        raise _fail(
            path,
            line_of(definition, "handler"),
            f"handler of {name} must be an http(s) URL, not {handler!r}",
        )
    timeout = definition.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _fail(
            path, line_of(definition, "timeout"), "timeout must be a positive number of seconds"
        )
    forward = definition.get("forward_client_headers", False)
    if not isinstance(forward, bool):
        raise _fail(
            path,
            line_of(definition, "forward_client_headers"),
            "forward_client_headers must be true or false",
        )
    return ActionDefinition(
        name=name,
        operation="mutation" if operation == "mutation" else "query",
        kind="asynchronous" if kind == "asynchronous" else "synchronous",
        handler=handler,
        timeout_s=float(timeout),
        headers=_headers(definition.get("headers"), path, line_of(definition, "headers"), environ),
        forward_client_headers=forward,
        field=field,
        retry=_retry(definition.get("retry"), path, line_of(definition, "retry")),
        callback_url=_callback_url(definition, kind, path, environ, callback_hosts),
        **_transforms(entry, path),
    )


def _transforms(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    """The action's transforms, their templates parsed; refused at the line at fault."""
    try:
        return {
            "request_transform": request_transform(entry),
            "response_transform": response_transform(entry),
        }
    except TransformConfigError as error:
        raise _fail(path, error.line, f"action {entry['name']}: {error}") from None


def load_actions(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    callback_hosts: AllowedHosts = NO_HOSTS,
) -> ActionsConfig:
    """Read ``path`` (actions.yaml) and ``actions.graphql`` beside it; raise ActionsConfigError.

    A ``callback_url`` must be on ``callback_hosts`` (ASYNCGATE_CALLBACK_ALLOWED_HOSTS).
    """
    environ = os.environ if environ is None else environ
    sdl_path = path.with_name("actions.graphql")
    data = _read_yaml(path)
    document = _read_sdl(sdl_path)
    schema = _build_types(document, sdl_path)
    fields = _root_fields(document)
    actions: dict[str, ActionDefinition] = {}
    for entry in data["actions"]:
        action = _action(entry, fields, path, sdl_path, environ, callback_hosts=callback_hosts)
        if action.name in actions:
            raise _fail(path, entry.get(LINE), f"action {action.name} is declared twice")
        actions[action.name] = action
    for name, (_, field) in fields.items():
        if name not in actions:
            line = field.loc.source.get_location(field.loc.start).line if field.loc else None
            raise _fail(sdl_path, line, f"{name} has no entry in {path.name}")
    type_definitions = tuple(
        d
        for d in document.definitions
        if isinstance(d, TypeDefinitionNode) and d.name.value not in ROOT_TYPES
    )
    return ActionsConfig(actions=actions, type_definitions=type_definitions, schema=schema)
