"""The syntax tree of one CEL rule, read from tokens by a recursive-descent parser.

Only the shapes the checker needs: literals, names, member selection, indexing,
calls (operators are calls named as CEL names them: `_&&_`, `_+_`, `@in`), list
and map literals, and the comprehension macros (`all`, `exists`, `exists_one`,
`map`, `filter`) with their bound variable. Message construction (`Foo{a: 1}`),
a leading-dot name (`.x`) and the optional syntax are refused as unsupported: the
CEL library cannot evaluate them either.

Nesting is bounded (`MAX_NESTING`) while parsing, so a deep rule is a problem
report, not a `RecursionError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from policies.lexer import Token, tokenize

#: Levels of nesting a rule may have: each operator, call, index, member access,
#: bracket or macro is a level (`a || b || c` is 2 deep). Realistic rules are under
#: 10; the bound keeps the checker's recursion small and cheap.
MAX_NESTING = 64

#: Macros that iterate over a list (or a map's keys), and how many arguments each takes.
MACROS: dict[str, tuple[int, ...]] = {
    "all": (2,),
    "exists": (2,),
    "exists_one": (2,),
    "map": (2, 3),
    "filter": (2,),
}

_RELATIONS = {
    "==": "_==_",
    "!=": "_!=_",
    "<": "_<_",
    "<=": "_<=_",
    ">": "_>_",
    ">=": "_>=_",
    "in": "@in",
}
_ADDITIVE = {"+": "_+_", "-": "_-_"}
_MULTIPLICATIVE = {"*": "_*_", "/": "_/_", "%": "_%_"}


class ParseError(ValueError):
    """A rule this parser cannot read; `offset` points at the problem."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    offset: int


@dataclass(frozen=True, slots=True, eq=False)
class Literal(Node):
    #: `bool`, `int`, `uint`, `double`, `string`, `bytes` or `null`.
    kind: str
    value: object


@dataclass(frozen=True, slots=True, eq=False)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Select(Node):
    """`operand.name`; `test_only` inside `has(...)`."""

    operand: Node
    name: str
    test_only: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True, eq=False)
class Call(Node):
    """A function or operator: `size(x)`, `x.startsWith(y)` (`target` is `x`), `_+_`."""

    function: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class MapExpr(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True, eq=False)
class Comprehension(Node):
    """`range.macro(variable, *args)`: `tools.exists(t, t == "x")`."""

    macro: str
    range: Node
    variable: str
    variable_offset: int
    args: tuple[Node, ...] = field(default=())


def walk(node: Node) -> Iterator[Node]:
    """`node` and every node below it, parents first."""
    yield node
    children: tuple[Node | None, ...] = ()
    if isinstance(node, Select):
        children = (node.operand,)
    elif isinstance(node, Index):
        children = (node.operand, node.index)
    elif isinstance(node, Call):
        children = (node.target, *node.args)
    elif isinstance(node, ListExpr):
        children = node.items
    elif isinstance(node, MapExpr):
        children = tuple(part for entry in node.entries for part in entry)
    elif isinstance(node, Comprehension):
        children = (node.range, *node.args)
    for child in children:
        if child is not None:
            yield from walk(child)


#: A parsing method for one precedence level.
_Level = Callable[[], Node]


def parse(source: str) -> Node:
    """The syntax tree of `source`; raises `ParseError` (or `lexer.LexError`)."""
    return _Parser(tokenize(source)).parse()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.position]

    def parse(self) -> Node:
        node = self.expr()
        if self.token.kind != "end":
            raise ParseError(self.token.offset, f"unexpected {self.token.text!r}")
        return node

    def advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def at(self, text: str) -> bool:
        token = self.token
        return token.text == text and token.kind in ("op", "ident")

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise ParseError(self.token.offset, f"expected {text!r}")
        return self.advance()

    def enter(self, offset: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ParseError(offset, f"nested more than {MAX_NESTING} levels deep")

    def leave(self) -> None:
        self.depth -= 1

    # -- precedence levels, loosest first ---------------------------------------

    def expr(self) -> Node:
        condition = self.logical("||", "_||_", self.conjunction)
        if not self.at("?"):
            return condition
        offset = self.advance().offset
        self.enter(offset)
        then = self.logical("||", "_||_", self.conjunction)
        self.expect(":")
        otherwise = self.expr()
        self.leave()
        return Call(offset, "_?_:_", (condition, then, otherwise))

    def conjunction(self) -> Node:
        return self.logical("&&", "_&&_", self.relation)

    def logical(self, symbol: str, function: str, operand: _Level) -> Node:
        node = operand()
        opened = 0
        while self.at(symbol):
            offset = self.advance().offset
            self.enter(offset)
            opened += 1
            node = Call(offset, function, (node, operand()))
        self.depth -= opened
        return node

    def relation(self) -> Node:
        return self.binary(_RELATIONS, self.additive)

    def additive(self) -> Node:
        return self.binary(_ADDITIVE, self.multiplicative)

    def multiplicative(self) -> Node:
        return self.binary(_MULTIPLICATIVE, self.unary)

    def binary(self, operators: dict[str, str], operand: _Level) -> Node:
        node = operand()
        opened = 0
        while self.token.text in operators and self.token.kind in ("op", "ident"):
            token = self.advance()
            self.enter(token.offset)
            opened += 1
            node = Call(token.offset, operators[token.text], (node, operand()))
        self.depth -= opened
        return node

    def unary(self) -> Node:
        if self.at("!") or self.at("-"):
            token = self.advance()
            self.enter(token.offset)
            operand = self.unary()
            self.leave()
            if (
                token.text == "-"
                and isinstance(operand, Literal)
                and operand.kind in ("int", "double")
            ):
                assert isinstance(operand.value, int | float)
                return Literal(token.offset, operand.kind, -operand.value)
            return Call(token.offset, "!_" if token.text == "!" else "-_", (operand,))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        opened = 0
        while self.at(".") or self.at("["):
            token = self.advance()
            self.enter(token.offset)
            opened += 1
            if token.text == "[":
                if self.at("?"):
                    raise ParseError(self.token.offset, "optional indexing is not supported")
                index = self.expr()
                self.expect("]")
                node = Index(token.offset, node, index)
                continue
            if self.at("?"):
                raise ParseError(self.token.offset, "optional selection is not supported")
            name = self.identifier()
            called = self.at("(")
            node = self.method(node, name) if called else Select(name.offset, node, name.text)
        self.depth -= opened
        return node

    def method(self, target: Node, name: Token) -> Node:
        args = self.arguments()
        if name.text in MACROS and len(args) in MACROS[name.text]:
            variable = args[0]
            if not isinstance(variable, Ident):
                raise ParseError(variable.offset, f"{name.text}() needs a variable name first")
            return Comprehension(
                name.offset, name.text, target, variable.name, variable.offset, tuple(args[1:])
            )
        return Call(name.offset, name.text, tuple(args), target)

    def arguments(self) -> list[Node]:
        opening = self.expect("(")
        self.enter(opening.offset)
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.advance()
                args.append(self.expr())
        self.expect(")")
        self.leave()
        return args

    def identifier(self) -> Token:
        if self.token.kind != "ident":
            raise ParseError(self.token.offset, "expected a name")
        return self.advance()

    def primary(self) -> Node:
        token = self.token
        if token.kind in ("int", "uint", "double", "string", "bytes"):
            self.advance()
            return Literal(token.offset, token.kind, token.value)
        if token.kind == "ident":
            return self.name()
        if token.text == "(":
            self.advance()
            self.enter(token.offset)
            node = self.expr()
            self.expect(")")
            self.leave()
            return node
        if token.text == "[":
            return self.list_literal()
        if token.text == "{":
            return self.map_literal()
        if token.text == ".":
            raise ParseError(token.offset, "a leading '.' on a name is not supported")
        raise ParseError(token.offset, f"unexpected {token.text or 'end of rule'!r}")

    def name(self) -> Node:
        token = self.advance()
        constants = {"true": True, "false": False, "null": None}
        if token.text in constants:
            kind = "null" if token.text == "null" else "bool"
            return Literal(token.offset, kind, constants[token.text])
        if self.at("{"):
            raise ParseError(token.offset, "message construction is not supported")
        if not self.at("("):
            return Ident(token.offset, token.text)
        args = self.arguments()
        if token.text == "has":
            if len(args) != 1 or not isinstance(args[0], Select):
                raise ParseError(token.offset, "has() takes one field selection, as in has(m.f)")
            selected = args[0]
            return Select(selected.offset, selected.operand, selected.name, test_only=True)
        return Call(token.offset, token.text, tuple(args))

    def list_literal(self) -> Node:
        opening = self.advance()
        self.enter(opening.offset)
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.expr())
            if not self.at(","):
                break
            self.advance()
        self.expect("]")
        self.leave()
        return ListExpr(opening.offset, tuple(items))

    def map_literal(self) -> Node:
        opening = self.advance()
        self.enter(opening.offset)
        entries: list[tuple[Node, Node]] = []
        while not self.at("}"):
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.at(","):
                break
            self.advance()
        self.expect("}")
        self.leave()
        return MapExpr(opening.offset, tuple(entries))
