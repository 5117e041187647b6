"""The target schema: the user's strawberry schema that asyncgate runs operations against."""

import importlib
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from services.common.documents import CachedDocuments, DocumentCache
from services.common.errors import mask_unexpected
from services.common.identity import OperationContext


class TargetSchemaError(RuntimeError):
    """ASYNCGATE_TARGET_SCHEMA does not name a strawberry schema."""


def load_schema(import_path: str) -> strawberry.Schema:
    """Import a schema named like ``package.module:attribute``."""
    module_name, _, attribute = import_path.partition(":")
    if not module_name or not attribute:
        raise TargetSchemaError(f"{import_path!r} is not of the form 'package.module:attribute'")
    try:
        schema = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise TargetSchemaError(f"cannot load target schema {import_path!r}: {error}") from error
    if not isinstance(schema, strawberry.Schema):
        raise TargetSchemaError(f"{import_path!r} is a {type(schema).__name__}, not a schema")
    return schema


def document_caches() -> list[Callable[[], SchemaExtension]]:
    """strawberry extensions that parse and validate repeated documents once, within a memory
    budget, and large ones off the event loop (``services/common/documents.py``)."""
    cache = DocumentCache()
    return [lambda: CachedDocuments(cache)]


def with_document_caches(schema: strawberry.Schema) -> strawberry.Schema:
    """``schema``, now caching parsed and validated documents (changes it in place)."""
    schema.extensions = (*schema.extensions, *document_caches())
    return schema


def format_error(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error as it appears in a response's ``errors`` list."""
    return dict(error.formatted)


async def execute(
    schema: strawberry.Schema,
    *,
    query: str,
    variables: dict[str, Any],
    operation_name: str | None,
    context: OperationContext,
) -> dict[str, Any]:
    """Run one operation the way the synchronous endpoint would; return its JSON response."""
    result = await schema.execute(
        query,
        variable_values=variables,
        operation_name=operation_name,
        context_value=context,
    )
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [format_error(error) for error in mask_unexpected(result.errors)]
    return response
