"""Size and shape limits on every document: the request's own and an asyncQuery's inner one.

Query bytes, variables bytes, depth, aliases and tokens; over any of them, a coded error before
anything runs (and, for an inner document, before anything is queued).
"""

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import ValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

from contracts.errors import ErrorCode
from services.common.settings import Settings
from services.edge.errors import coded_error


@dataclass(frozen=True)
class ShapeLimits:
    """How big and how deep a document may be."""

    max_query_bytes: int
    max_variables_bytes: int
    max_depth: int
    max_aliases: int
    max_tokens: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "ShapeLimits":
        """The limits configured by ASYNCGATE_MAX_* variables."""
        return cls(
            max_query_bytes=settings.max_query_bytes,
            max_variables_bytes=settings.max_variables_bytes,
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
        )

    def check_sizes(self, query: str, variables: object, what: str = "query") -> None:
        """Refuse a document or variables over their byte limits."""
        size = len(query.encode())
        if size > self.max_query_bytes:
            raise coded_error(
                f"the {what} is {size} bytes; at most {self.max_query_bytes} are accepted",
                ErrorCode.QUERY_TOO_LARGE,
            )
        if variables:
            size = len(json.dumps(variables, default=str).encode())
            if size > self.max_variables_bytes:
                raise coded_error(
                    f"the variables are {size} bytes; at most {self.max_variables_bytes} "
                    "are accepted",
                    ErrorCode.VARIABLES_TOO_LARGE,
                )

    def validation_rules(self) -> tuple[type[ValidationRule], ...]:
        """graphql-core rules for depth and aliases, built once per set of limits.

        The same rule classes every time: validation results are cached by document and
        rules, and a fresh class per request would make every request a cache miss.
        """
        return _rules(self.max_depth, self.max_aliases)

    def extensions(self) -> list[Callable[[], SchemaExtension]]:
        """The strawberry extension enforcing these limits on the edge's own requests.

        One extension rather than strawberry's three limiters: each extension costs every
        request its construction and a wrapped hook (measured: ~45 us a request for the three).
        """
        limits = self
        rules = self.validation_rules()

        class RequestShapeLimits(SchemaExtension):
            def on_operation(self) -> Iterator[None]:
                context = self.execution_context
                limits.check_sizes(context.query or "", context.variables)
                context.parse_options["max_tokens"] = limits.max_tokens
                # The same rule classes every time, so validation results stay cached.
                context.validation_rules = context.validation_rules + rules
                yield

        return [RequestShapeLimits]


@functools.cache
def _rules(max_depth: int, max_aliases: int) -> tuple[type[ValidationRule], ...]:
    return (depth_validator(max_depth, should_ignore=None), aliases_validator(max_aliases))
