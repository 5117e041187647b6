"""Kriti, the JSON template language of Hasura's request and response transforms.

A template is parsed once (``parse_template`` for a JSON body, ``parse_string_template`` for a
URL or header value), which checks its syntax, its variables and its functions; ``render``
then computes it from the variables of each request, without I/O.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from services.actions.kriti.evaluate import Compiler, Evaluate, KritiEvalError
from services.actions.kriti.functions import FUNCTION_NAMES
from services.actions.kriti.parser import KritiSyntaxError, Parser
from services.actions.kriti.syntax import Node

__all__ = [
    "FUNCTION_NAMES",
    "KritiEvalError",
    "KritiSyntaxError",
    "Template",
    "parse_string_template",
    "parse_template",
]


@dataclass(frozen=True)
class Template:
    """A parsed template, ready to render."""

    source: str
    tree: Node
    evaluate: Evaluate

    def render(self, variables: Mapping[str, Any]) -> Any:
        """The JSON value of the template for ``variables``; raises KritiEvalError."""
        return self.evaluate(variables)


def parse_template(text: str, variables: Collection[str] | None = None) -> Template:
    """Parse a JSON template; with ``variables``, any other variable is refused as well.
    Raises KritiSyntaxError."""
    tree = Parser(text, variables, FUNCTION_NAMES).template()
    return Template(text, tree, Compiler(text).compile(tree))


def parse_string_template(text: str, variables: Collection[str] | None = None) -> Template:
    """Parse text with ``{{ expr }}`` parts; it renders to a string. Raises KritiSyntaxError."""
    tree = Parser(text, variables, FUNCTION_NAMES).string_template()
    return Template(text, tree, Compiler(text).compile(tree))
