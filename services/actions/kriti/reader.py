"""The lexical layer of Kriti's parser: white space, literals, strings with ``{{ expr }}``
parts, arrays and objects, and errors that name the line and column."""

import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Final

from services.actions.kriti.syntax import (
    ArrayNode,
    Interpolation,
    Literal,
    Node,
    ObjectNode,
    Range,
)

Rule = Callable[[], Node]
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_IDENTIFIER: Final = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*|\$")
_SPACE: Final = re.compile(r"\s*")
_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r"}
_ESCAPES.update({"t": "\t", "'": "'"})
KEYWORDS: Final = frozenset({"true", "false", "null", "range", "if", "elif", "else", "end", "in"})


def position(text: str, offset: int) -> tuple[int, int]:
    """The line and column (both from 1) of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class KritiSyntaxError(ValueError):
    """The template does not parse, or uses a variable or function that does not exist."""

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(f"{problem} (template line {line}, column {column})")
        self.problem = problem
        self.line = line
        self.column = column


class Reader:
    """The position in the template text and the rules shared by values and expressions."""

    def __init__(
        self, text: str, variables: Collection[str] | None, functions: Collection[str]
    ) -> None:
        self.text = text
        self.at = 0
        # None: any variable is accepted (checked when evaluated instead).
        self.variables = None if variables is None else set(variables)
        self.functions = functions
        self.binders: list[str] = []

    # -- the pieces every rule uses ---------------------------------------------------------
    def fail(self, problem: str, at: int | None = None) -> KritiSyntaxError:
        """An error at ``at`` (the current offset by default)."""
        return KritiSyntaxError(problem, *position(self.text, self.at if at is None else at))

    def space(self) -> None:
        """Skip white space."""
        match = _SPACE.match(self.text, self.at)
        self.at = match.end() if match else self.at

    def peek(self, literal: str) -> bool:
        """Whether the text continues with ``literal``."""
        return self.text.startswith(literal, self.at)

    def take(self, literal: str) -> bool:
        """Consume ``literal`` if the text continues with it."""
        if self.peek(literal):
            self.at += len(literal)
            return True
        return False

    def expect(self, literal: str, what: str | None = None) -> None:
        """Consume ``literal`` or fail saying what was expected."""
        self.space()
        if not self.take(literal):
            raise self.fail(f"expected {what or repr(literal)}, found {self.found()}")

    def found(self) -> str:
        """The text at the current offset, for error messages."""
        if self.at >= len(self.text):
            return "the end of the template"
        return repr(self.text[self.at : self.at + 12].split("\n")[0])

    def identifier(self) -> str | None:
        """Consume an identifier (``$body``, ``x``, ``_``) if one follows."""
        match = _IDENTIFIER.match(self.text, self.at)
        if not match:
            return None
        self.at = match.end()
        return match.group()

    def word_follows(self, word: str) -> bool:
        """Whether the keyword ``word`` (not a longer identifier) follows."""
        match = _IDENTIFIER.match(self.text, self.at)
        return match is not None and match.group() == word

    @contextmanager
    def binding(self, *names: str | None) -> Iterator[None]:
        """Loop binders in scope for the body of a range."""
        added = [name for name in names if name is not None]
        self.binders.extend(added)
        try:
            yield
        finally:
            del self.binders[len(self.binders) - len(added) :]

    def expression_block(self, start: int) -> Node:
        """After ``{{`` (opened at ``start``): an expression and ``}}``; the parser's rule."""
        raise NotImplementedError

    def scalar(self) -> Node | None:
        """A number, true, false or null, if one follows."""
        start = self.at
        match = _NUMBER.match(self.text, self.at)
        if match:
            self.at = match.end()
            text = match.group()
            number = float(text) if match.group(1) or match.group(2) else int(text)
            return Literal(start, number)
        for word, constant in (("true", True), ("false", False), ("null", None)):
            if self.word_follows(word):
                self.at += len(word)
                return Literal(start, constant)
        return None

    def object(self, start: int, item: Rule) -> Node:
        """After ``{``: fields up to ``}``, each value read by ``item``."""
        fields: list[tuple[str | Interpolation, Node]] = []
        self.space()
        if self.take("}"):
            return ObjectNode(start, ())
        while True:
            self.space()
            if not (self.peek('"') or self.peek("'")):
                raise self.fail(f"expected a quoted field name, found {self.found()}")
            key = self.string()
            name = str(key.value) if isinstance(key, Literal) else key
            self.expect(":")
            fields.append((name, item()))
            self.space()
            if self.take("}"):
                return ObjectNode(start, tuple(fields))
            self.expect(",", "',' or '}'")

    def array(self, start: int, item: Rule, *, splice_range: bool = False) -> Node:
        """After ``[``: items up to ``]``. ``[ {{ range ... }} ]`` is the range's own array, as
        Kriti's README writes it."""
        items: list[Node] = []
        self.space()
        if self.take("]"):
            return ArrayNode(start, ())
        while True:
            items.append(item())
            self.space()
            if self.take("]"):
                if splice_range and len(items) == 1 and isinstance(items[0], Range):
                    return items[0]
                return ArrayNode(start, tuple(items))
            self.expect(",", "',' or ']'")

    def string(self) -> Literal | Interpolation:
        """A quoted string; a double-quoted one may hold ``{{ expr }}`` parts."""
        start = self.at
        quote = self.text[self.at]
        self.at += 1
        parts: list[str | Node] = []
        chunk: list[str] = []
        while True:
            if self.at >= len(self.text):
                raise self.fail("this string is never closed", start)
            char = self.text[self.at]
            if char == quote:
                self.at += 1
                break
            if char == "\\":
                chunk.append(self.escape())
            elif quote == '"' and self.take("{{"):
                parts.append("".join(chunk))
                chunk = []
                parts.append(self.expression_block(self.at - 2))
            else:
                chunk.append(char)
                self.at += 1
        parts.append("".join(chunk))
        return interpolation(start, parts)

    def escape(self) -> str:
        """A backslash escape inside a quoted string."""
        code = self.text[self.at + 1 : self.at + 2]
        if code == "u":
            digits = self.text[self.at + 2 : self.at + 6]
            if re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                self.at += 6
                return chr(int(digits, 16))
        elif code in _ESCAPES:
            self.at += 2
            return _ESCAPES[code]
        raise self.fail("invalid escape in a string")


def interpolation(start: int, parts: list[str | Node]) -> Literal | Interpolation:
    """A string literal when there is nothing to interpolate."""
    kept = tuple(part for part in parts if part != "")
    if all(isinstance(part, str) for part in kept):
        return Literal(start, "".join(str(part) for part in kept))
    return Interpolation(start, kept)


def where(text: str, offset: int) -> str:
    line, column = position(text, offset)
    return f"line {line}, column {column}"
