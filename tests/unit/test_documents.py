"""The document cache: bounded by the bytes of text it holds, never holding large documents."""

from graphql import parse

from services.common.documents import DocumentCache, ParsedDocument, parsed
from services.common.settings import Settings
from services.common.target import has_document_cache, load_schema
from services.edge.app import create_app as create_edge
from services.executor.app import create_app as create_executor


def entry(query: str) -> ParsedDocument:
    return ParsedDocument(parse(query))


def test_repeated_documents_are_parsed_once() -> None:
    cache = DocumentCache()
    query = "{ a }"

    first = cache.put(query, entry(query))

    assert cache.get(query) is first
    assert cache.held_bytes == len(query)


def test_a_document_over_the_size_limit_is_never_held() -> None:
    cache = DocumentCache(max_document_bytes=100, budget_bytes=10_000)
    large = "{ " + "a " * 100 + "}"

    cache.put(large, entry(large))

    assert cache.get(large) is None
    assert cache.held_bytes == 0


def test_the_least_recently_used_go_first_when_the_budget_is_spent() -> None:
    cache = DocumentCache(max_document_bytes=100, budget_bytes=25)
    queries = [f"{{ field{n} }}" for n in range(5)]  # 10 bytes each: room for two
    for query in queries[:2]:
        cache.put(query, entry(query))
    cache.get(queries[0])  # used again: now the most recent

    cache.put(queries[2], entry(queries[2]))

    assert cache.held_bytes == 20
    assert cache.get(queries[1]) is None
    assert cache.get(queries[0]) is not None
    assert cache.get(queries[2]) is not None


async def test_parsing_goes_through_the_cache() -> None:
    cache = DocumentCache()

    first = await parsed(cache, "{ a }")
    again = await parsed(cache, "{ a }")

    assert again is first


def test_services_made_in_one_process_share_one_document_cache() -> None:
    # An embedding program (or the tests) may make several executors and edges in one process;
    # the target schema module is loaded once, and each service used to add a cache of its own
    # to it, so a request was parsed and validated once per service ever made.
    settings = Settings(target_schema="tests.targets:schema")
    for _ in range(3):
        create_executor(settings)
    create_edge(settings)

    extensions = load_schema(settings.target_schema).extensions
    assert sum(has_document_cache([extension]) for extension in extensions) == 1
