"""Upstream mode on the edge: one schema showing the upstream API's fields beside asyncgate's
own, and the upstream's operations forwarded to it.

The edge's GraphQL schema becomes the upstream's schema with asyncgate's own root fields added
to its root types (``merged_schema``), so GraphiQL and introspection show both and every request
is validated against it exactly as before (shape limits included). An operation selecting only
upstream fields is then not executed here: ``UpstreamForwarding`` POSTs it to the upstream with
the caller's identity and returns the upstream's answer as it came. The upstream's
subscriptions are not served (asyncgate calls the upstream over HTTP POST only).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    OperationType,
    SourceLocation,
    get_operation_ast,
    validate_schema,
)
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from contracts.errors import ErrorCode
from contracts.events import ForwardedIdentity
from contracts.names import view_key
from services.common.identity import Principal, session_variables
from services.common.target import TargetCallError
from services.common.upstream.schema import UpstreamSchemaError
from services.common.upstream.sealing import KeyRing
from services.edge.errors import coded_error, ensure_codes
from services.edge.routing import Route, root_fields, route


def _root_fields(root: GraphQLObjectType | None) -> frozenset[str]:
    return frozenset(() if root is None else root.fields)


def _merged_root(
    upstream: GraphQLObjectType | None, own: GraphQLObjectType | None
) -> GraphQLObjectType | None:
    if upstream is None or own is None:
        return upstream or own
    taken = set(upstream.fields) & set(own.fields)
    if taken:
        raise UpstreamSchemaError(
            f"the upstream's {upstream.name} has fields asyncgate serves itself: "
            f"{', '.join(sorted(taken))}"
        )
    # Named as the upstream names it, so fragments on the upstream's root type stay valid.
    return GraphQLObjectType(
        upstream.name, {**upstream.fields, **own.fields}, description=upstream.description
    )


def merged_schema(own: GraphQLSchema, upstream: GraphQLSchema) -> GraphQLSchema:
    """The edge's schema in upstream mode: ``upstream``'s types and root fields (but its
    subscriptions) with ``own`` (asyncgate's fields and actions) added to the root types.

    UpstreamSchemaError when the two cannot live in one schema (a type or root field both
    define), naming what clashes.
    """
    own_roots = {t.name for t in (own.query_type, own.mutation_type, own.subscription_type) if t}
    upstream_roots = {
        t.name
        for t in (upstream.query_type, upstream.mutation_type, upstream.subscription_type)
        if t
    }

    def named_types(schema: GraphQLSchema, roots: set[str]) -> dict[str, Any]:
        return {
            name: named
            for name, named in schema.type_map.items()
            if name not in roots and not name.startswith("__")
        }

    own_types = named_types(own, own_roots)
    upstream_types = named_types(upstream, upstream_roots)
    clashes = sorted(
        name
        for name in own_types.keys() & upstream_types.keys()
        if own_types[name] is not upstream_types[name]
    )
    if clashes:
        raise UpstreamSchemaError(
            f"the upstream's schema and asyncgate's both define {', '.join(clashes)}"
        )
    own_directives = {directive.name for directive in own.directives}
    try:
        merged = GraphQLSchema(
            query=_merged_root(upstream.query_type, own.query_type),
            mutation=_merged_root(upstream.mutation_type, own.mutation_type),
            subscription=own.subscription_type,
            types=[*upstream_types.values(), *own_types.values()],
            directives=[
                *own.directives,
                *(d for d in upstream.directives if d.name not in own_directives),
            ],
        )
    except TypeError as error:
        raise UpstreamSchemaError(f"the upstream's schema cannot be served: {error}") from None
    problems = validate_schema(merged)
    if problems:
        raise UpstreamSchemaError(
            "the upstream's schema cannot be served: " + "; ".join(p.message for p in problems)
        )
    return merged


@dataclass(frozen=True)
class Forwarding:
    """What the edge needs to forward operations and queue them for an upstream."""

    forward_authorization: bool
    keys: KeyRing | None
    # asyncgate's own root fields by operation type; every other root field is the upstream's.
    own_fields: dict[OperationType, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def around(
        cls, own: GraphQLSchema, *, forward_authorization: bool, keys: KeyRing | None
    ) -> "Forwarding":
        """Forwarding for an edge whose own fields are those of ``own``."""
        return cls(
            forward_authorization=forward_authorization,
            keys=keys,
            own_fields={
                OperationType.QUERY: _root_fields(own.query_type),
                OperationType.MUTATION: _root_fields(own.mutation_type),
                OperationType.SUBSCRIPTION: _root_fields(own.subscription_type),
            },
        )

    def authorization(self, client_headers: Any) -> str | None:
        """The client's Authorization header, if it is to reach the upstream."""
        if not self.forward_authorization:
            return None
        value = client_headers.get("authorization")
        return value if isinstance(value, str) else None

    def identity(
        self, principal: Principal, client_headers: Any, operation_id: str
    ) -> ForwardedIdentity:
        """What a queued operation carries for the upstream: the caller's session variables
        and, when forwarded, their Authorization sealed for this operation only."""
        authorization = self.authorization(client_headers)
        sealed = None
        if authorization is not None and self.keys is not None:
            binding = view_key(principal.tenant, principal.user, operation_id)
            sealed = self.keys.seal(authorization, bound_to=binding)
        return ForwardedIdentity(
            session_variables=session_variables(principal), authorization=sealed
        )


@dataclass
class ForwardedResult(ExecutionResult):
    """The upstream's answer: its GraphQL response as it came (``response``, what HTTP clients
    get), and as data and errors for strawberry's other transports (WebSockets)."""

    response: dict[str, Any] = field(default_factory=dict)


def _graphql_error(error: object) -> GraphQLError:
    if not isinstance(error, dict):
        return GraphQLError(str(error))
    extensions = error.get("extensions")
    path = error.get("path")
    converted = GraphQLError(
        str(error.get("message", "")),
        path=path if isinstance(path, list) else None,
        extensions=extensions if isinstance(extensions, dict) else None,
    )
    locations = error.get("locations")
    if isinstance(locations, list):
        converted.locations = [
            SourceLocation(int(spot.get("line", 0)), int(spot.get("column", 0)))
            for spot in locations
            if isinstance(spot, dict)
        ]
    return converted


def forwarded_result(response: dict[str, Any]) -> ForwardedResult:
    """An upstream GraphQL response as the result of the operation."""
    errors = response.get("errors")
    return ForwardedResult(
        data=response.get("data"),
        errors=[_graphql_error(e) for e in errors] if isinstance(errors, list) else None,
        response=response,
    )


def _refused(message: str, code: str) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[coded_error(message, code)])


class UpstreamForwarding(SchemaExtension):
    """A strawberry extension: after validation, an operation of upstream fields is answered
    by the upstream instead of executed; one mixing both sides is refused."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Decide where the operation runs; forward it if it is the upstream's."""
        execution = self.execution_context
        document = execution.graphql_document
        forwarding: Forwarding | None = getattr(execution.context, "forwarding", None)
        operation = (
            None if document is None else get_operation_ast(document, execution.operation_name)
        )
        if forwarding is not None and document is not None and operation is not None:
            own = forwarding.own_fields.get(operation.operation, frozenset())
            fields = root_fields(document, operation)
            decision = route(fields, own)
            if decision is Route.MIXED:
                ours = ", ".join(sorted(fields & own))
                theirs = ", ".join(sorted(fields - own - {"__typename"}))
                execution.result = _refused(
                    f"one operation selects asyncgate's fields ({ours}) and the upstream API's "
                    f"({theirs}): send them as separate operations",
                    ErrorCode.MIXED_OPERATION,
                )
            elif decision is Route.UPSTREAM:
                execution.result = await self._forward(forwarding, operation)
        yield

    async def _forward(self, forwarding: Forwarding, operation: Any) -> ExecutionResult:
        execution = self.execution_context
        variables = execution.variables or {}
        coerced = get_variable_values(
            execution.schema._schema, operation.variable_definitions or (), variables
        )
        if isinstance(coerced, list):
            ensure_codes(coerced)
            return ExecutionResult(data=None, errors=coerced)
        context = execution.context
        try:
            response = await context.target.execute(
                query=execution.query or "",
                variables=variables,
                operation_name=execution.operation_name,
                context=context,
                authorization=forwarding.authorization(context.client_headers),
            )
        except TargetCallError as error:
            return _refused(error.message, error.code)
        return forwarded_result(response)
