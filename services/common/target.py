"""The target: what asyncgate runs operations against, behind one small interface (``Target``)
that the edge and the executor both use.

Two implementations: ``InProcessTarget``, the user's strawberry schema run in-process
(``ASYNCGATE_TARGET_SCHEMA``), and ``UpstreamTarget`` (services/common/upstream/target.py), an
existing GraphQL HTTP API (``ASYNCGATE_UPSTREAM_URL``). Each service's composition root picks
one from the settings.
"""

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import strawberry
from graphql import GraphQLError, GraphQLSchema
from strawberry.extensions import SchemaExtension

from services.common.direct_execution import execute_directly
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


@dataclass(frozen=True)
class _CachedDocumentsFactory:
    """Makes each execution's CachedDocuments extension, all sharing one cache."""

    cache: DocumentCache

    def __call__(self) -> SchemaExtension:
        return CachedDocuments(self.cache)


def document_caches() -> list[Callable[[], SchemaExtension]]:
    """strawberry extensions that parse and validate repeated documents once, within a memory
    budget, and large ones off the event loop (``services/common/documents.py``)."""
    return [_CachedDocumentsFactory(DocumentCache())]


def direct_execution_cache(schema: strawberry.Schema) -> DocumentCache | None:
    """The document cache of a schema that has no other extension, no directives and no
    incremental delivery: one graphql-core can run directly (see direct_execution.py)."""
    extensions = schema.extensions
    if (
        len(extensions) != 1
        or not isinstance(extensions[0], _CachedDocumentsFactory)
        or schema.directives
        or schema.config.enable_experimental_incremental_execution
    ):
        return None
    return extensions[0].cache


def has_document_cache(extensions: Iterable[object]) -> bool:
    """Whether ``extensions`` (a schema's) already cache parsed and validated documents."""
    return any(isinstance(extension, _CachedDocumentsFactory) for extension in extensions)


def with_document_caches(schema: strawberry.Schema) -> strawberry.Schema:
    """``schema``, now caching parsed and validated documents (changes it in place, once: a
    schema module is loaded once per process, and every service made in that process shares it
    and its cache; adding a cache per service made each request parse and validate once per
    service ever made in the process, and keep every document in each cache)."""
    if not has_document_cache(schema.extensions):
        schema.extensions = (*schema.extensions, *document_caches())
    return schema


def format_error(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error as it appears in a response's ``errors`` list."""
    return dict(error.formatted)


class TargetCallError(Exception):
    """The target could not run the operation at all (its API failed, refused or could not be
    reached): a stable ``code``, a ``message`` for people, and the target's own GraphQL
    response if it gave one."""

    def __init__(self, code: str, message: str, response: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.response = response


class Target(Protocol):
    """What operations run against."""

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The schema documents are validated against (graphql-core's view of it)."""
        ...

    async def execute(
        self,
        *,
        query: str,
        variables: dict[str, Any],
        operation_name: str | None,
        context: OperationContext,
        authorization: str | None = None,
    ) -> dict[str, Any]:
        """Run one operation for ``context.principal``; its GraphQL response (GraphQL errors
        included). ``authorization``: the client's own header, where the operator has the
        target receive it. Raises TargetCallError when the operation could not run at all."""
        ...


@dataclass(frozen=True)
class InProcessTarget:
    """A strawberry schema run in this process (the resolvers get ``context`` as it is)."""

    schema: strawberry.Schema

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The schema as graphql-core sees it."""
        return self.schema._schema

    async def execute(
        self,
        *,
        query: str,
        variables: dict[str, Any],
        operation_name: str | None,
        context: OperationContext,
        authorization: str | None = None,
    ) -> dict[str, Any]:
        """Run one operation the way the synchronous endpoint would (``authorization`` is not
        used: in-process resolvers are asyncgate's own code)."""
        return await execute(
            self.schema,
            query=query,
            variables=variables,
            operation_name=operation_name,
            context=context,
        )


async def execute(
    schema: strawberry.Schema,
    *,
    query: str,
    variables: dict[str, Any],
    operation_name: str | None,
    context: OperationContext,
) -> dict[str, Any]:
    """Run one operation the way the synchronous endpoint would; return its JSON response."""
    cache = direct_execution_cache(schema)
    result = None
    if cache is not None:
        result = await execute_directly(
            schema,
            cache,
            query=query,
            variables=variables,
            operation_name=operation_name,
            context=context,
        )
    if result is None:
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
