"""Running an operation on a strawberry schema through graphql-core directly, when the schema
has no extensions or directives of its own.

strawberry's ``Schema.execute`` builds an execution context, an extension runner and a
middleware manager on every call and enters each extension's hooks as async generators: about
75 µs per run here, 40% of running the seed's ledger query (190 µs against 115 µs). When the
only extension is asyncgate's own document cache, that work does nothing the caller needs, so
the document is parsed and validated through the same cache and handed to the same execute
function strawberry would call, with the same execution context class. Anything else (a user's
extension, custom directives, a subscription) goes through strawberry as before.
"""

from typing import Any

import strawberry
from graphql import GraphQLError, OperationType, specified_rules
from graphql.execution import MiddlewareManager
from graphql.utilities import get_operation_ast
from strawberry.execution import optimized_is_awaitable
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.types import ExecutionResult
from strawberry.utils.await_maybe import await_maybe

from services.common.documents import DocumentCache, parsed, validation_errors

# strawberry's own validation rules are added by validate_document (services/common/documents.py
# passes these through it), as strawberry's ExecutionContext does by default.
RULES = tuple(specified_rules)


async def execute_directly(
    schema: strawberry.Schema,
    cache: DocumentCache,
    *,
    query: str,
    variables: dict[str, Any],
    operation_name: str | None,
    context: Any,
) -> ExecutionResult | None:
    """Run ``query`` as ``schema.execute`` would; None if it needs strawberry's own path (a
    subscription, or no operation to pick: strawberry raises for those). The caller checks that
    ``schema`` has no extensions but ``cache``'s, no directives and no incremental delivery."""
    try:
        entry = await parsed(cache, query)
    except GraphQLError as error:
        return _failed(schema, [error])
    operation = get_operation_ast(entry.document, operation_name)
    if operation is None or operation.operation is OperationType.SUBSCRIPTION:
        return None
    errors = await validation_errors(schema._schema, query, entry, RULES)
    if errors:
        return _failed(schema, errors)
    # strawberry's private helpers: its version is pinned (pyproject.toml), and
    # tests/unit/test_direct_execution.py compares both paths' results.
    execute_function = schema._get_execute_function()
    result = await await_maybe(
        execute_function(
            schema._schema,
            entry.document,
            root_value=None,
            middleware=MiddlewareManager(),
            variable_values=variables,
            operation_name=operation_name,
            context_value=context,
            is_awaitable=optimized_is_awaitable,
            **execution_context_class_kwargs(schema.execution_context_class),
            **schema._get_custom_context_kwargs(None),
        )
    )
    if result.errors:
        schema._process_errors(result.errors)
    return ExecutionResult(data=result.data, errors=result.errors)


def _failed(schema: strawberry.Schema, errors: list[GraphQLError]) -> ExecutionResult:
    """A document that does not parse or validate: logged as strawberry logs it."""
    schema._process_errors(errors)
    return ExecutionResult(data=None, errors=errors)
