"""Reading Kriti template text into the nodes of ``syntax.py``; a mistake names line and column.

Two entry points: a full template (JSON with ``{{ ... }}`` values, ranges and ifs), and a string
template (plain text with ``{{ expr }}`` parts: a URL, a header value). Variables and function
names are checked here, so an expression asyncgate cannot evaluate is refused before it runs.
"""

from collections.abc import Collection
from typing import Final

from services.actions.kriti.reader import (
    KEYWORDS,
    KritiSyntaxError,
    Reader,
    Rule,
    interpolation,
    where,
)
from services.actions.kriti.syntax import (
    Call,
    If,
    Literal,
    Node,
    Operator,
    Path,
    Range,
    Step,
    Variable,
)

__all__ = ["KritiSyntaxError", "Parser"]

# Longest first, so that "<=" is not read as "<".
_COMPARISONS: Final = ("==", "!=", "<=", ">=", "<", ">")
BLOCK_TAGS: Final = frozenset({"elif", "else", "end"})


class Parser(Reader):
    """A recursive-descent parser of templates, their blocks and expressions."""

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
        return interpolation(0, parts)

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
        self.expect("}}", "'}}' to close the '{{' at " + where(self.text, start))
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
        if name is None or name in KEYWORDS:
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
        if name is None or name in KEYWORDS:
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
