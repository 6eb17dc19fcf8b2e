"""Conditions evaluated in Python instead of by the CEL library, where that cannot
change an outcome.

A decision-cache hit evaluates only the rules that read a per-request attribute
(`prompt_tokens`), and for those the library call is most of the hit's cost: the
attribute bound into the context, the context converted, the program run (~54,000
instructions for two such rules, valgrind). The commonest of them compare integers:
`prompt_tokens > 200000`, `prompt_tokens < 2000 && max_tokens <= 512`.

The subset taken here cannot fail at run time, so CEL's error semantics (`&&` and
`||` absorbing an error on either side) never come into play and the outcome is
Python's: `int` and `bool` attributes, `int` and `bool` literals, the six
comparisons between two `int` operands, `&&`, `||` and `!` over `bool` operands.
Integer attributes are within CEL's int range whenever a rule is evaluated (one
outside it is over its limit, and its rules are not run: `attributes.over_limit`),
and comparisons do not overflow. Anything else (strings, lists, arithmetic, which
can overflow or divide by zero, `?:`, functions, doubles, uints) is `None`: the
library evaluates it. A property test holds these conditions to the library's
outcomes (tests/test_policies_native.py), and the rule set's own property test
holds decisions made with them to decisions made one library call per rule.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from operator import attrgetter

from policies.attributes import SPECS, Attributes
from policies.celtypes import BOOL, INT
from policies.lexer import LexError
from policies.syntax import Call, Ident, Literal, Node, ParseError, parse

#: A condition as a Python function of the request's attributes.
Condition = Callable[[Attributes], bool]
_Operand = Callable[[Attributes], int]

_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "_<_": operator.lt,
    "_<=_": operator.le,
    "_>_": operator.gt,
    "_>=_": operator.ge,
    "_==_": operator.eq,
    "_!=_": operator.ne,
}


def native(source: str) -> Condition | None:
    """`source` as a Python function, or None when it is outside the subset."""
    try:
        node = parse(source)
    except (ParseError, LexError):
        return None
    return _boolean(node)


def _boolean(node: Node) -> Condition | None:
    if isinstance(node, Literal) and node.kind == "bool":
        value = bool(node.value)
        return lambda attrs: value
    if isinstance(node, Ident) and node.name in SPECS and SPECS[node.name].cel_type == BOOL:
        return attrgetter(node.name)
    if not isinstance(node, Call) or node.target is not None:
        return None
    function, args = node.function, node.args
    if function in _COMPARISONS and len(args) == 2:
        left, right = _integer(args[0]), _integer(args[1])
        if left is None or right is None:
            return None
        compare = _COMPARISONS[function]
        return lambda attrs: compare(left(attrs), right(attrs))
    if function in ("_&&_", "_||_") and len(args) == 2:
        first, second = _boolean(args[0]), _boolean(args[1])
        if first is None or second is None:
            return None
        if function == "_&&_":
            return lambda attrs: first(attrs) and second(attrs)
        return lambda attrs: first(attrs) or second(attrs)
    if function == "!_" and len(args) == 1:
        operand = _boolean(args[0])
        if operand is None:
            return None
        return lambda attrs: not operand(attrs)
    return None


def _integer(node: Node) -> _Operand | None:
    if isinstance(node, Literal) and node.kind == "int" and type(node.value) is int:
        value = node.value
        return lambda attrs: value
    if isinstance(node, Ident) and node.name in SPECS and SPECS[node.name].cel_type == INT:
        return attrgetter(node.name)
    return None
