"""Submits answered without the general GraphQL executor.

Submitting is the edge's busiest request, and clients send the same few documents for it: a
mutation with one ``asyncQuery`` field, asking for a few of the operation's plain fields. Around
the resolver, strawberry and graphql-core spent about a third of the edge's CPU on such a
request (extensions, execution context, field completion: ~0.5 ms of the ~1.6 ms a submit cost,
measured with py-spy under the bench's W1), work that is the same for every request with the
same document. So such a document is compiled once: parsed and validated exactly as strawberry
would (the same rules, the same token limit), checked to be that shape, and kept as a plan.
A request with a compiled document then needs its variables and arguments coerced
(graphql-core's own functions), ``queue_operation`` (what the resolver calls), and the chosen
fields of the view.

Everything else goes the general way: any other document, one with fragments or directives, a
body with extensions, variables or arguments that do not coerce, a request over a size limit.
And a submit that fails is answered the general way too, the failure handed to the resolver
through the context (``EdgeContext.submit_failure``), so that every error is formatted by the
one path that formats errors. The compiled path is used only where the edge's schema carries
nothing but its own extensions (a target schema with extensions of its own runs them).
"""

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    VariableDefinitionNode,
    get_named_type,
    is_leaf_type,
    parse,
    specified_rules,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from starlette.requests import Request
from starlette.responses import Response
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.schema import validate_document

from contracts.view import OperationView
from services.common.results import data_url
from services.common.timestamps import iso_timestamp
from services.edge.async_query import queue_operation
from services.edge.context import EdgeContext
from services.edge.json_input import UnreadableJSONError, read_json
from services.edge.media_types import is_json_request
from services.edge.shape_limits import ShapeLimits

FIELD: Final = "asyncQuery"
# asyncQuery's arguments, by their GraphQL names: queue_operation's keywords.
KEYWORDS: Final = {
    "query": "query",
    "args": "args",
    "operationName": "operation_name",
    "idempotencyKey": "idempotency_key",
    "startWithin": "start_within",
    "timeout": "timeout_s",
    "callbackUrl": "callback_url",
}
# AsyncOperation's fields that a stored view answers at once, as AsyncOperation.from_view and
# its resolvers read them (the rest, data, progress and callback, take the general path).
LEAVES: Final[Mapping[str, Callable[[OperationView], object]]] = {
    "operationId": lambda view: view.operation_id,
    "status": lambda view: view.status,
    "error": lambda view: view.error,
    "errorCode": lambda view: view.code,
    "createdAt": lambda view: iso_timestamp(view.created_at),
    "startedAt": lambda view: iso_timestamp(view.started_at),
    "completedAt": lambda view: iso_timestamp(view.completed_at),
    "attempts": lambda view: view.attempts,
    "dataUrl": data_url,
}
TYPENAME: Final = "__typename"
# A request body with anything else (extensions, say) takes the general path.
BODY_KEYS: Final = frozenset({"query", "variables", "operationName"})
# Plans kept, by document text; and the largest document compiled (as the document cache).
MAX_PLANS: Final = 256
MAX_DOCUMENT_CHARS: Final = 8 * 1024

# One selected field: its response key, how to read it off a view, how to serialize it.
Selection = tuple[str, Callable[[OperationView], object], Callable[[Any], Any]]


@dataclass(frozen=True)
class SubmitPlan:
    """A compiled asyncQuery document: where its arguments come from, what it answers."""

    operation_name: str | None
    response_key: str
    field: FieldNode
    definition: GraphQLField
    variable_definitions: tuple[VariableDefinitionNode, ...]
    selections: tuple[Selection, ...]

    def keywords(self, schema: GraphQLSchema, variables: dict[str, Any]) -> dict[str, Any] | None:
        """queue_operation's keywords for a request with ``variables``, coerced as the executor
        would; None if they do not coerce (the general path says why)."""
        coerced = get_variable_values(schema, self.variable_definitions, variables, max_errors=1)
        if not isinstance(coerced, VariableValues):
            return None
        try:
            arguments = get_argument_values(self.definition, self.field, coerced)
        except GraphQLError:
            return None
        return {KEYWORDS[name]: value for name, value in arguments.items()}

    def answer(self, view: OperationView) -> dict[str, Any]:
        """The response's ``data`` for a queued operation's view."""
        fields = {key: serialize(read(view)) for key, read, serialize in self.selections}
        return {self.response_key: fields}


def compile_submit(schema: GraphQLSchema, query: str, shape: ShapeLimits) -> SubmitPlan | None:
    """The plan for ``query`` if it is a valid mutation of one plain asyncQuery field asking
    only for leaves a view answers; None otherwise."""
    try:
        document = parse(query, max_tokens=shape.max_tokens)
    except GraphQLError:
        return None
    rules = (*specified_rules, *shape.validation_rules())
    if validate_document(schema, document, rules) or len(document.definitions) != 1:
        return None
    [operation] = document.definitions
    mutation = schema.mutation_type
    if (
        not isinstance(operation, OperationDefinitionNode)
        or operation.operation != OperationType.MUTATION
        or operation.directives
        or mutation is None
        or FIELD not in mutation.fields
        or set(mutation.fields[FIELD].args) != set(KEYWORDS)
    ):
        return None
    selected = operation.selection_set.selections
    field = selected[0] if len(selected) == 1 else None
    if not isinstance(field, FieldNode) or field.name.value != FIELD or field.directives:
        return None
    definition = mutation.fields[FIELD]
    selections = _leaf_selections(field, definition)
    if selections is None:
        return None
    return SubmitPlan(
        operation_name=operation.name.value if operation.name else None,
        response_key=field.alias.value if field.alias else FIELD,
        field=field,
        definition=definition,
        variable_definitions=tuple(operation.variable_definitions or ()),
        selections=selections,
    )


def _leaf_selections(field: FieldNode, definition: GraphQLField) -> tuple[Selection, ...] | None:
    """How to answer each field selected under ``field``; None if any is not a plain leaf."""
    operation_type = get_named_type(definition.type)
    fields = getattr(operation_type, "fields", {})
    if field.selection_set is None:
        return None
    selections: list[Selection] = []
    for selected in field.selection_set.selections:
        if not isinstance(selected, FieldNode) or selected.directives or selected.arguments:
            return None
        name = selected.name.value
        key = selected.alias.value if selected.alias else name
        if name == TYPENAME:
            selections.append((key, _constant(operation_type.name), _as_is))
            continue
        leaf = get_named_type(fields[name].type) if name in fields else None
        if name not in LEAVES or not is_leaf_type(leaf):
            return None
        assert isinstance(leaf, GraphQLLeafType)  # noqa: S101 (is_leaf_type said so)
        selections.append((key, LEAVES[name], _nullable(leaf.serialize)))
    return tuple(selections)


def _constant(value: object) -> Callable[[OperationView], object]:
    return lambda _view: value


def _as_is(value: object) -> object:
    return value


def _nullable(serialize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """graphql-core's completion of a leaf: null stays null, anything else is serialized."""

    def complete(value: Any) -> Any:
        return None if value is None else serialize(value)

    return complete


class CompiledSubmits:
    """Plans by document text, the most recently used ``MAX_PLANS`` (None: not compilable)."""

    def __init__(self, schema: GraphQLSchema, shape: ShapeLimits) -> None:
        self.schema = schema
        self.shape = shape
        self._plans: OrderedDict[str, SubmitPlan | None] = OrderedDict()

    def planned(self, body: object) -> tuple[SubmitPlan, dict[str, Any]] | None:
        """The plan and queue_operation's keywords for a request ``body``, if it is a submit
        with a compilable document whose variables and arguments coerce; None otherwise."""
        if not isinstance(body, dict) or not body.keys() <= BODY_KEYS:
            return None
        query, variables = body.get("query"), body.get("variables")
        if not isinstance(query, str) or not isinstance(variables, dict | None):
            return None
        plan = self.plan_for(query)
        if (
            plan is None
            or body.get("operationName") not in (None, plan.operation_name)
            or not self._within_sizes(query, variables)
        ):
            return None
        keywords = plan.keywords(self.schema, variables or {})
        return None if keywords is None else (plan, keywords)

    def _within_sizes(self, query: str, variables: dict[str, Any] | None) -> bool:
        try:
            self.shape.check_sizes(query, variables)
        except GraphQLError:
            return False
        return True

    def plan_for(self, query: str) -> SubmitPlan | None:
        """The plan for ``query``, compiled on first sight; None if it takes the general path."""
        if query in self._plans:
            self._plans.move_to_end(query)
            return self._plans[query]
        if len(query) > MAX_DOCUMENT_CHARS or FIELD not in query:
            # Most documents are not submits at all: not parsed twice (here and by strawberry).
            return None
        plan = self._plans[query] = compile_submit(self.schema, query, self.shape)
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return plan


class GraphQLView(Protocol):
    """What the compiled path uses of the edge's GraphQL endpoint (services/edge/app.py)."""

    async def get_sub_response(self, request: Request) -> Response:
        """The response headers and media type being prepared."""

    async def get_context(self, request: Request, response: Response) -> EdgeContext:
        """Who asks, and the handles (may refuse with 401)."""

    def create_response(
        self, response_data: GraphQLHTTPResponse, sub_response: Response
    ) -> Response:
        """The answer, in the negotiated media type."""

    async def run(self, request: Request, context: EdgeContext) -> Response:
        """The general path, with a context made already."""


async def submit_compiled(
    view: GraphQLView, submits: CompiledSubmits, request: Request, *, trace_key: str
) -> Response | None:
    """The answer to ``request`` if it is a submit with a compiled document; None if it takes
    the general path from the start. ``trace_key`` names the trace id in the extensions."""
    if request.method != "POST" or not is_json_request(request.headers.get("content-type")):
        return None
    try:
        planned = submits.planned(read_json(await request.body()))
    except UnreadableJSONError:
        return None
    if planned is None:
        return None
    plan, keywords = planned
    sub_response = await view.get_sub_response(request)
    context = await view.get_context(request, sub_response)
    try:
        queued = await queue_operation(context, **keywords)
    except Exception as failure:  # answered by the general path, as every error is
        context.submit_failure = failure
        return await view.run(request, context)
    data = {"data": plan.answer(queued), "extensions": {trace_key: context.trace_id}}
    return view.create_response(data, sub_response)  # type: ignore[arg-type]  # a response body
