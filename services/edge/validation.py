"""Checking an asyncQuery's inner document before anything is queued.

The document is parsed and validated against the target schema with the args as its variables,
exactly as a synchronous request would be, so an operation that is queued can only fail for
reasons a synchronous call would have failed at run time too.
"""

from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    specified_rules,
)
from graphql.execution.values import get_variable_values
from graphql.language import Visitor, visit

from contracts.errors import ErrorCode
from services.common.documents import DocumentCache, ParsedDocument, parsed, validation_errors
from services.edge.errors import (
    coded_error,
    is_complexity_error,
)
from services.edge.shape_limits import ShapeLimits

ASYNC_FIELDS: Final = frozenset({"asyncQuery", "asyncResult", "asyncRequests"})


@dataclass(frozen=True)
class ValidatedOperation:
    """An inner operation that may be queued."""

    query: str
    variables: dict[str, Any]
    operation_name: str | None
    operation_type: OperationType


class _AsyncFieldFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: str | None = None

    def enter_field(self, node: FieldNode, *_: object) -> None:
        if node.name.value in ASYNC_FIELDS and self.found is None:
            self.found = node.name.value


def _first_async_field(entry: ParsedDocument) -> str | None:
    """The first async field anywhere in the document (a walk of the whole AST, once)."""
    key = "first_async_field"
    if key not in entry.derived:
        finder = _AsyncFieldFinder()
        visit(entry.document, finder)
        entry.derived[key] = finder.found
    found: str | None = entry.derived[key]
    return found


STANDARD_RULES: Final = tuple(specified_rules)


async def _checked(
    schema: GraphQLSchema, query: str, limits: ShapeLimits, cache: DocumentCache
) -> tuple[ParsedDocument, list[GraphQLError]]:
    """The parsed document and its validation errors; a document that does not parse raises."""
    try:
        entry: ParsedDocument = await parsed(cache, query, max_tokens=limits.max_tokens)
    except GraphQLError as error:
        if is_complexity_error(error):
            raise coded_error(
                f"the query has more than {limits.max_tokens} tokens", ErrorCode.QUERY_TOO_COMPLEX
            ) from None
        raise coded_error(
            f"the query does not parse: {error.message}", ErrorCode.GRAPHQL_PARSE_FAILED
        ) from None
    errors = await validation_errors(schema, query, entry, STANDARD_RULES)
    if errors:
        return entry, errors
    too_complex = await validation_errors(schema, query, entry, limits.validation_rules())
    if too_complex:
        raise coded_error(
            "the query is too complex: " + "; ".join(e.message for e in too_complex),
            ErrorCode.QUERY_TOO_COMPLEX,
        )
    return entry, []


def _operation(entry: ParsedDocument, operation_name: str | None) -> OperationDefinitionNode:
    key = ("operation", operation_name)
    if key not in entry.derived:
        entry.derived[key] = get_operation_ast(entry.document, operation_name)
    operation: OperationDefinitionNode | None = entry.derived[key]
    if operation is not None:
        return operation
    if operation_name:
        message = f"the query has no operation named '{operation_name}'"
    else:
        message = "the query has several operations: name the one to run with operationName"
    raise coded_error(message, ErrorCode.OPERATION_RESOLUTION_FAILURE)


def _check_variables(
    schema: GraphQLSchema, operation: OperationDefinitionNode, args: dict[str, Any]
) -> None:
    definitions = operation.variable_definitions or ()
    if not definitions and not args:
        return  # nothing declared, nothing given: nothing to coerce
    declared = {definition.variable.name.value for definition in definitions}
    unexpected = sorted(set(args) - declared)
    if unexpected:
        names = ", ".join(f"${name}" for name in unexpected)
        raise coded_error(
            f"args has variables the query does not declare: {names}", ErrorCode.BAD_USER_INPUT
        )
    coerced = get_variable_values(schema, definitions, args)
    if isinstance(coerced, list):
        raise coded_error("; ".join(error.message for error in coerced), ErrorCode.BAD_USER_INPUT)


async def validate_inner(
    schema: GraphQLSchema,
    *,
    query: str,
    args: dict[str, Any] | None,
    operation_name: str | None,
    limits: ShapeLimits,
    cache: DocumentCache,
) -> ValidatedOperation:
    """Check an inner document against the target ``schema``; raise a coded GraphQLError if bad.

    Repeated documents are parsed and validated once (``cache``), large ones off the event loop.
    """
    limits.check_sizes(query, args, "inner query")
    entry, errors = await _checked(schema, query, limits, cache)
    nested = _first_async_field(entry)
    if nested is not None:
        raise coded_error(
            f"an async query cannot contain another async field ('{nested}')",
            ErrorCode.NESTED_ASYNC_QUERY,
        )
    if errors:
        raise coded_error(
            "the query is not valid against the schema: "
            + "; ".join(error.message for error in errors),
            ErrorCode.GRAPHQL_VALIDATION_FAILED,
        )
    operation = _operation(entry, operation_name)
    if operation.operation == OperationType.SUBSCRIPTION:
        raise coded_error(
            "only queries and mutations can run asynchronously", ErrorCode.UNSUPPORTED_OPERATION
        )
    variables = args or {}
    _check_variables(schema, operation, variables)
    return ValidatedOperation(
        query=query,
        variables=variables,
        # The name of the operation that will run, also when the document has one named
        # operation and the client named none: terminal events tell consumers what ran.
        operation_name=operation.name.value if operation.name else None,
        operation_type=operation.operation,
    )
