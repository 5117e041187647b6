"""Which schema answers an operation, in upstream mode (pure): asyncgate's own root fields
(asyncQuery, asyncResult, asyncRequests, asyncCancel, asyncDelete, subscriptions, actions) are
served by the edge, every other root field by forwarding the request to the upstream API.

One operation cannot be split between the two: its fields would run in two places with two
transactions and one error list. Such an operation is refused with code MIXED_OPERATION.
"""

from collections.abc import Iterator
from enum import Enum
from typing import Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

# Answered by whichever side serves the rest of the operation (alone: by the edge, which
# shows both schemas in one).
META_FIELDS: Final = frozenset({"__typename", "__schema", "__type"})


class Route(Enum):
    """Where an operation runs."""

    OWN = "own"
    UPSTREAM = "upstream"
    MIXED = "mixed"


def root_fields(document: DocumentNode, operation: OperationDefinitionNode) -> frozenset[str]:
    """The names of the root fields ``operation`` selects, through fragments of any depth."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    expanded: set[str] = set()

    def names(selection_set: SelectionSetNode) -> Iterator[str]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection.name.value
            elif isinstance(selection, InlineFragmentNode):
                yield from names(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                # A fragment spread twice (or, invalidly, in a cycle) is walked once.
                if name in fragments and name not in expanded:
                    expanded.add(name)
                    yield from names(fragments[name].selection_set)

    return frozenset(names(operation.selection_set))


def route(fields: frozenset[str], own: frozenset[str]) -> Route:
    """Where an operation selecting root ``fields`` runs, ``own`` being the edge's own root
    fields of its operation type."""
    named = fields - META_FIELDS
    ours = named & own
    if ours == named:
        return Route.OWN
    return Route.UPSTREAM if not ours else Route.MIXED
