"""Reading Kriti template text into the nodes of ``syntax.py``; a mistake names line and column.

Two entry points: a full template (JSON with ``{{ ... }}`` values, ranges and ifs), and a string
template (plain text with ``{{ expr }}`` parts: a URL, a header value). Variables and function
names are checked here, so an expression asyncgate cannot evaluate is refused before it runs.
"""

import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Final

from services.actions.kriti.syntax import (
    ArrayNode,
    Call,
    If,
    Interpolation,
    Literal,
    Node,
    ObjectNode,
    Operator,
    Path,
    Range,
    Step,
    Variable,
)

Rule = Callable[[], Node]
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_IDENTIFIER: Final = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*|\$")
_SPACE: Final = re.compile(r"\s*")
_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r"}
_ESCAPES.update({"t": "\t", "'": "'"})
_KEYWORDS: Final = frozenset({"true", "false", "null", "range", "if", "elif", "else", "end", "in"})
# Longest first, so that "<=" is not read as "<".
_COMPARISONS: Final = ("==", "!=", "<=", ">=", "<", ">")
BLOCK_TAGS: Final = frozenset({"elif", "else", "end"})


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


class Parser:
    """A recursive-descent reader over the template text."""

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

    # -- whole templates ------------------------------------------------------------------
    def template(self) -> Node:
        """The whole text as one value."""
        self.space()
        node = self.value()
        self.space()
        if self.at < len(self.text):
            raise self.fail(f"unexpected {self.found()} after the end of the template")
        return node

    def string_template(self) -> Node:
        """The whole text as a string with ``{{ expr }}`` parts (no quotes, no escapes)."""
        parts: list[str | Node] = []
        while self.at < len(self.text):
            start = self.text.find("{{", self.at)
            if start < 0:
                parts.append(self.text[self.at :])
                break
            if start > self.at:
                parts.append(self.text[self.at : start])
            self.at = start + 2
            parts.append(self.expression_block(start))
        return _interpolation(0, parts)

    # -- JSON values with blocks ----------------------------------------------------------
    def value(self) -> Node:
        """A JSON value, a ``{{ expr }}``, a range or an if."""
        self.space()
        start = self.at
        if self.take("{{"):
            return self.block(start)
        if self.take("{"):
            return self.object(start, self.value)
        if self.take("["):
            return self.array(start, self.value, splice_range=True)
        if self.peek('"') or self.peek("'"):
            return self.string()
        return self.scalar() or self.fail_value()

    def fail_value(self) -> Node:
        """Fail: no value starts here."""
        raise self.fail(f"expected a JSON value or {{{{ ... }}}}, found {self.found()}")

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

    def block(self, start: int) -> Node:
        """After ``{{``: a range, an if, or an expression."""
        self.space()
        if self.word_follows("range"):
            return self.range(start)
        if self.word_follows("if"):
            return self.conditional(start)
        for tag in BLOCK_TAGS:
            if self.word_follows(tag):
                raise self.fail(f"{{{{ {tag} }}}} without an open range or if")
        return self.expression_block(start)

    def expression_block(self, start: int) -> Node:
        """After ``{{``: an expression and the closing ``}}``."""
        self.space()
        if self.peek("}}"):
            raise self.fail("empty {{ }}")
        node = self.expression()
        self.expect("}}", "'}}' to close the '{{' at " + _where(self.text, start))
        return node

    def tag(self, allowed: Collection[str]) -> tuple[str, int]:
        """``{{ end }}`` and the like; which one and where."""
        self.space()
        start = self.at
        if self.take("{{"):
            self.space()
            word = self.identifier()
            if word is not None and word in allowed:
                return word, start
        self.at = start
        names = " or ".join(f"{{{{ {name} }}}}" for name in sorted(allowed))
        raise self.fail(f"expected {names}, found {self.found()}")

    def range(self, start: int) -> Node:
        """``range i, x := expr }} body {{ end``."""
        self.at += len("range")
        self.space()
        first = self.binder()
        self.space()
        index, item = (None, first)
        if self.take(","):
            self.space()
            index, item = (None if first == "_" else first), self.binder()
        self.expect(":=")
        source = self.expression()
        self.expect("}}")
        with self.binding(index, item):
            body = self.value()
        self.tag({"end"})
        self.expect("}}")
        return Range(start, index, item, source, body)

    def binder(self) -> str:
        """A loop variable's name."""
        at = self.at
        name = self.identifier()
        if name is None or name in _KEYWORDS:
            raise self.fail("expected a loop variable name", at)
        return name

    def conditional(self, start: int) -> Node:
        """``if c }} a {{ elif d }} b {{ else }} c {{ end``."""
        self.at += len("if")
        branches: list[tuple[Node, Node]] = []
        otherwise: Node = Literal(start, None)
        while True:
            condition = self.expression()
            self.expect("}}")
            branches.append((condition, self.value()))
            word, _ = self.tag({"elif", "else", "end"})
            if word == "else":
                self.expect("}}")
                otherwise = self.value()
                self.tag({"end"})
            if word != "elif":
                self.expect("}}")
                return If(start, tuple(branches), otherwise)

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
        return _interpolation(start, parts)

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

    # -- expressions ----------------------------------------------------------------------
    def expression(self) -> Node:
        """``a ?? b``, the loosest binding of all."""
        return self.binary(("??",), self.disjunction)

    def disjunction(self) -> Node:
        """``a || b``."""
        return self.binary(("||",), self.conjunction)

    def conjunction(self) -> Node:
        """``a && b``."""
        return self.binary(("&&",), self.comparison)

    def binary(self, operators: tuple[str, ...], operand: Rule) -> Node:
        """Left-associative ``operand (op operand)*``."""
        node = operand()
        while True:
            self.space()
            start = self.at
            op = next((op for op in operators if self.take(op)), None)
            if op is None:
                return node
            node = Operator(start, op, node, operand())

    def comparison(self) -> Node:
        """``a == b``, ``a < b``, ``a in b``... (one, not chained)."""
        left = self.unary()
        self.space()
        start = self.at
        op = next((op for op in _COMPARISONS if self.take(op)), None)
        if op is None and self.word_follows("in"):
            self.at += 2
            op = "in"
        return left if op is None else Operator(start, op, left, self.unary())

    def unary(self) -> Node:
        """``not x`` or a path."""
        self.space()
        start = self.at
        if self.word_follows("not") and not self.text.startswith("(", self.at + 3):
            self.at += 3
            return Call(start, "not", self.unary())
        return self.path()

    def path(self) -> Node:
        """A primary value and its lookups."""
        start = self.at
        base = self.primary()
        steps: list[Step] = []
        while True:
            at = self.at
            optional = self.peek("?.") or self.peek("?[")
            if optional:
                self.at += 1
            if self.take("."):
                name = self.identifier()
                if name is None or name == "$":
                    raise self.fail("expected a field name after '.'")
                steps.append(Step(at, name, optional))
            elif self.take("["):
                steps.append(Step(at, self.subscript(), optional))
                self.expect("]")
            else:
                break
        if not steps:
            return base
        return Path(start, base, tuple(steps), self.text[start : self.at])

    def subscript(self) -> str | int | Node:
        """Inside ``[...]``: a constant field name or index where it is one."""
        key = self.expression()
        constant = isinstance(key, Literal) and type(key.value) in (str, int)
        return key.value if isinstance(key, Literal) and constant else key

    def primary(self) -> Node:  # noqa: PLR0911 (one return a kind of primary)
        """A literal, a parenthesised expression, a call or a variable."""
        self.space()
        start = self.at
        if self.take("("):
            node = self.expression()
            self.expect(")")
            return node
        if self.take("["):
            return self.array(start, self.expression)
        if self.take("{"):
            return self.object(start, self.expression)
        if self.peek('"') or self.peek("'"):
            return self.string()
        scalar = self.scalar()
        if scalar is not None:
            return scalar
        name = self.identifier()
        if name is None or name in _KEYWORDS:
            self.at = start
            raise self.fail(f"expected an expression, found {self.found()}")
        self.space()
        if self.take("("):
            return self.call(start, name)
        return self.variable(start, name)

    def call(self, start: int, name: str) -> Node:
        """After ``name(``: one argument and ``)``."""
        if name not in self.functions:
            raise self.fail(f"unknown function {name}", start)
        argument = self.expression()
        self.expect(")", f"')': {name} takes one argument")
        return Call(start, name, argument)

    def variable(self, start: int, name: str) -> Node:
        """A variable, which must be bound here."""
        bound = self.variables is None or name in self.variables or name in self.binders
        if not bound:
            known = sorted({*(self.variables or ()), *self.binders})
            raise self.fail(f"unknown variable {name} (known here: {', '.join(known)})", start)
        return Variable(start, name)


def _interpolation(start: int, parts: list[str | Node]) -> Literal | Interpolation:
    """A string literal when there is nothing to interpolate."""
    kept = tuple(part for part in parts if part != "")
    if all(isinstance(part, str) for part in kept):
        return Literal(start, "".join(str(part) for part in kept))
    return Interpolation(start, kept)


def _where(text: str, offset: int) -> str:
    line, column = position(text, offset)
    return f"line {line}, column {column}"
