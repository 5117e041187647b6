"""Parsing and validating GraphQL documents: once per distinct text, within a memory budget, and
large ones off the event loop.

Clients send the same few small documents over and over, and parsing and validating them is
most of the CPU a request costs, so they are cached. But a parsed document keeps every token:
about 80 times its text (a 13 KB document took 1.1 MB), and validating one is quadratic in
repeated fields (that one took ~170 ms). Caching by count let 2,000 distinct 20 KB documents grow
an edge by 1.4 GB. So the cache is bounded by the bytes of text it holds and never takes a
document over ``MAX_CACHED_DOCUMENT_BYTES``, and documents over ``OFF_LOOP_BYTES`` are parsed and
validated in a worker thread, so other requests keep being served meanwhile.
"""

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

T = TypeVar("T")

MAX_CACHED_DOCUMENT_BYTES: Final = 8 * 1024
CACHE_BUDGET_BYTES: Final = 1024 * 1024
# Below this, a worker thread's hand-over costs more than parsing and validating inline.
OFF_LOOP_BYTES: Final = 2 * 1024

Rules = tuple[type[ASTValidationRule], ...]


@dataclass
class ParsedDocument:
    """A parsed document, the validation errors found for each schema and set of rules (a
    schema refreshed from an upstream API is a new object, so nothing stale is reused), and what
    callers read off it (``derived``, by a key of their choosing): a cached document is walked
    once, not once per request."""

    document: DocumentNode
    errors: dict[tuple[GraphQLSchema, Rules], list[GraphQLError]] = field(default_factory=dict)
    derived: dict[Hashable, Any] = field(default_factory=dict)


class DocumentCache:
    """Least recently used parsed documents, by text, within a budget of bytes of text."""

    def __init__(
        self,
        *,
        max_document_bytes: int = MAX_CACHED_DOCUMENT_BYTES,
        budget_bytes: int = CACHE_BUDGET_BYTES,
    ) -> None:
        self._max_document_bytes = max_document_bytes
        self._budget_bytes = budget_bytes
        self._entries: OrderedDict[str, ParsedDocument] = OrderedDict()
        self._held_bytes = 0

    @property
    def held_bytes(self) -> int:
        """The bytes of document text the cache holds now."""
        return self._held_bytes

    def get(self, query: str) -> ParsedDocument | None:
        """The cached document for ``query``, if any (now the most recently used)."""
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
        return entry

    def put(self, query: str, entry: ParsedDocument) -> ParsedDocument:
        """Keep ``entry`` for ``query`` unless it is too big; return it either way."""
        size = len(query)
        if size > self._max_document_bytes or query in self._entries:
            return entry
        self._entries[query] = entry
        self._held_bytes += size
        while self._held_bytes > self._budget_bytes:
            evicted, _ = self._entries.popitem(last=False)
            self._held_bytes -= len(evicted)
        return entry


async def off_the_loop_if_large(size: int, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)``: inline when ``size`` is small, in a worker thread otherwise."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)


async def parsed(cache: DocumentCache, query: str, **parse_options: Any) -> ParsedDocument:
    """The parsed ``query``, from ``cache`` or freshly parsed (and cached if small enough).

    A document that does not parse raises graphql-core's GraphQLError.
    """
    entry = cache.get(query)
    if entry is None:
        document = await off_the_loop_if_large(len(query), parse, query, **parse_options)
        entry = cache.put(query, ParsedDocument(document))
    return entry


async def validation_errors(
    schema: GraphQLSchema, query: str, entry: ParsedDocument, rules: Rules
) -> list[GraphQLError]:
    """The document's validation errors under ``rules`` (strawberry's own rules added)."""
    errors = entry.errors.get((schema, rules))
    if errors is None:
        errors = await off_the_loop_if_large(
            len(query), validate_document, schema, entry.document, rules
        )
        entry.errors[schema, rules] = errors
    return errors


class CachedDocuments(SchemaExtension):
    """A strawberry extension: parsing and validation through a DocumentCache.

    Pass it as a factory (``lambda: CachedDocuments(cache)``); strawberry builds one per
    execution, and they share the cache.
    """

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self._cache = cache
        self._entry: ParsedDocument | None = None

    async def on_parse(self) -> AsyncIterator[None]:
        """Hand strawberry the parsed document, so it does not parse again."""
        context = self.execution_context
        if context.query is not None:
            self._entry = await parsed(self._cache, context.query, **context.parse_options)
            context.graphql_document = self._entry.document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        """Hand strawberry the validation errors, so it does not validate again."""
        context = self.execution_context
        if self._entry is not None and context.query is not None:
            context.pre_execution_errors = await validation_errors(
                context.schema._schema, context.query, self._entry, context.validation_rules
            )
        yield
