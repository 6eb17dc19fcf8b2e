"""Static checks of one rule's syntax tree: names, functions, types, and what it reads.

The CEL library evaluates but does not type-check, so this is seawall's checker,
in the manner of cel-go's: every identifier must be a declared attribute or a
variable bound by an enclosing macro; every function must be one the library
evaluates natively (`FUNCTIONS`); every operator's operands must have an overload;
the rule must yield `bool`. It reports definite mistakes only: anything involving
`dyn` passes here and is left to the trial evaluations in `policies.compiler`.

It also records what the rule reads (the attributes the decision cache keys on),
the header names it indexes with literals (checked against `policies.headers`),
and the regular expressions it matches with: each must be a string literal, compiled
once with the rule set (`policies.patterns`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from policies.attributes import SPECS
from policies.celtypes import (
    ADDABLE,
    BOOL,
    BYTES,
    DOUBLE,
    DYN,
    INT,
    NULL,
    ORDERED,
    STRING,
    UINT,
    CelType,
    comparable,
    is_dyn,
    is_numeric,
    join,
    list_of,
    map_of,
    same,
)
from policies.syntax import (
    Call,
    Comprehension,
    Ident,
    Index,
    ListExpr,
    Literal,
    MapExpr,
    Node,
    Select,
)

#: Functions a rule may call: those the CEL library implements natively (in Rust).
#: The library's optional Python-implemented extras are not enabled: they run
#: outside the cost model (`lists.range(10**9)`), and a Python callback per call
#: would cost more than the rule.
FUNCTIONS = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string"}
)

_LITERAL_TYPES = {
    "bool": BOOL,
    "int": INT,
    "uint": UINT,
    "double": DOUBLE,
    "string": STRING,
    "bytes": BYTES,
    "null": NULL,
}
_SYMBOLS = {
    "_&&_": "&&",
    "_||_": "||",
    "!_": "!",
    "-_": "-",
    "_==_": "==",
    "_!=_": "!=",
    "_<_": "<",
    "_<=_": "<=",
    "_>_": ">",
    "_>=_": ">=",
    "_+_": "+",
    "_-_": "-",
    "_*_": "*",
    "_/_": "/",
    "_%_": "%",
    "@in": "in",
    "_?_:_": "?:",
}
#: Argument types each conversion accepts (the library refuses the others).
_CONVERSIONS: dict[str, tuple[CelType, frozenset[str]]] = {
    "int": (INT, frozenset({"int", "uint", "double", "string"})),
    "uint": (UINT, frozenset({"int", "uint", "double", "string"})),
    "double": (DOUBLE, frozenset({"int", "uint", "double", "string"})),
    "string": (STRING, frozenset({"int", "uint", "double", "string", "bytes"})),
}
_STRING_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_SIZED = frozenset({"string", "bytes", "list", "map"})


@dataclass(frozen=True, slots=True)
class Problem:
    offset: int
    message: str


@dataclass(frozen=True, slots=True)
class Checked:
    """What checking one rule found."""

    result: CelType
    #: The attributes it reads, in `ATTRIBUTES` order.
    reads: tuple[str, ...]
    problems: tuple[Problem, ...]
    #: `(offset, pattern)` of each literal regular expression given to `matches`.
    patterns: tuple[tuple[int, str], ...]


@dataclass
class _Walk:
    headers: frozenset[str]
    reads: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    patterns: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, node_offset: int, message: str) -> CelType:
        self.problems.append(Problem(node_offset, message))
        return DYN


def check(tree: Node, headers: Iterable[str] = ()) -> Checked:
    """Check `tree` against the declared attributes; `headers` are the header names
    the config shows to policy."""
    walk = _Walk(frozenset(headers))
    result = _type_of(tree, {}, walk)
    if not walk.problems and not (result == BOOL or is_dyn(result)):
        walk.problem(0, f"a rule must evaluate to bool, not {result}")
    reads = tuple(name for name in SPECS if name in walk.reads)
    return Checked(result, reads, tuple(walk.problems), tuple(walk.patterns))


def _type_of(node: Node, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    if isinstance(node, Literal):
        return _LITERAL_TYPES[node.kind]
    if isinstance(node, Ident):
        return _ident(node, scope, walk)
    if isinstance(node, Select):
        return _select(node, scope, walk)
    if isinstance(node, Index):
        return _index(node, scope, walk)
    if isinstance(node, ListExpr):
        items = [(item.offset, _type_of(item, scope, walk)) for item in node.items]
        return list_of(_join_all(items, "list items", walk))
    if isinstance(node, MapExpr):
        keys = [(key.offset, _type_of(key, scope, walk)) for key, _ in node.entries]
        values = [(value.offset, _type_of(value, scope, walk)) for _, value in node.entries]
        return map_of(_join_all(keys, "map keys", walk), _join_all(values, "map values", walk))
    if isinstance(node, Comprehension):
        return _comprehension(node, scope, walk)
    assert isinstance(node, Call)
    return _call(node, scope, walk)


def _join_all(kinds: list[tuple[int, CelType]], what: str, walk: _Walk) -> CelType:
    """The one type of a literal's items; items of different types are a problem (a
    mixed list would be `dyn`, beyond what the checker can follow)."""
    if not kinds:
        return DYN
    result = kinds[0][1]
    for offset, kind in kinds[1:]:
        if not same(result, kind):
            return walk.problem(offset, f"{what} must have one type, not {result} and {kind}")
        result = join(result, kind)
    return result


def _ident(node: Ident, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    if node.name in scope:
        return scope[node.name]
    spec = SPECS.get(node.name)
    if spec is None:
        names = [*SPECS, *scope]
        return walk.problem(
            node.offset, f"undeclared reference to {node.name!r}{_hint(node.name, names)}"
        )
    walk.reads.add(node.name)
    return spec.cel_type


def _is_headers(node: Node, scope: Mapping[str, CelType]) -> bool:
    return isinstance(node, Ident) and node.name == "headers" and "headers" not in scope


def _check_header(offset: int, name: object, walk: _Walk) -> None:
    if isinstance(name, str) and name not in walk.headers:
        allowed = sorted(walk.headers)
        listed = ", ".join(allowed) if allowed else "none are listed"
        walk.problem(
            offset,
            f"header {name!r} is not in policies.headers ({listed}), so it is never "
            f"present{_hint(name, allowed)}",
        )


def _select(node: Select, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    operand = _type_of(node.operand, scope, walk)
    if _is_headers(node.operand, scope):
        _check_header(node.offset, node.name, walk)
    if not (is_dyn(operand) or (operand.name == "map" and same(operand.params[0], STRING))):
        return walk.problem(node.offset, f"{operand} has no field {node.name!r}")
    return BOOL if node.test_only else operand.value


def _index(node: Index, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    operand = _type_of(node.operand, scope, walk)
    index = _type_of(node.index, scope, walk)
    if _is_headers(node.operand, scope) and isinstance(node.index, Literal):
        _check_header(node.index.offset, node.index.value, walk)
    if is_dyn(operand):
        return DYN
    if operand.name == "list":
        if not (is_dyn(index) or index.name in ("int", "uint")):
            return walk.problem(node.offset, f"a list index must be an int, not {index}")
        return operand.value
    if operand.name == "map":
        if not comparable(index, operand.params[0]):
            return walk.problem(node.offset, f"{operand} has no {index} keys")
        return operand.value
    return walk.problem(node.offset, f"{operand} cannot be indexed")


def _comprehension(node: Comprehension, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    range_type = _type_of(node.range, scope, walk)
    if not (is_dyn(range_type) or range_type.name in ("list", "map")):
        walk.problem(node.offset, f"{node.macro}() needs a list or a map, not {range_type}")
    if node.variable in SPECS or node.variable in scope:
        walk.problem(
            node.variable_offset,
            f"{node.macro}() variable {node.variable!r} hides the attribute or variable of "
            "that name; choose another",
        )
    inner = {**scope, node.variable: range_type.element}
    kinds = [_type_of(arg, inner, walk) for arg in node.args]
    predicates = kinds[:-1] if node.macro == "map" else kinds
    for arg, kind in zip(node.args, predicates, strict=False):
        if not (kind == BOOL or is_dyn(kind)):
            walk.problem(arg.offset, f"the condition of {node.macro}() must be bool, not {kind}")
    if node.macro == "map":
        return list_of(kinds[-1])
    if node.macro == "filter":
        return list_of(range_type.element)
    return BOOL


def _call(node: Call, scope: Mapping[str, CelType], walk: _Walk) -> CelType:
    target = _type_of(node.target, scope, walk) if node.target is not None else None
    args = [_type_of(arg, scope, walk) for arg in node.args]
    if node.function in _SYMBOLS:
        return _operator(node, args, scope, walk)
    if node.function not in FUNCTIONS:
        return walk.problem(
            node.offset,
            f"unknown function {node.function!r}{_hint(node.function, FUNCTIONS)}",
        )
    operands = ([target] if target is not None else []) + args
    if node.function == "size":
        return _size(node, operands, walk)
    if node.function in _CONVERSIONS:
        return _conversion(node, operands, walk)
    return _string_method(node, target, args, walk)


def _size(node: Call, operands: list[CelType], walk: _Walk) -> CelType:
    if len(operands) != 1:
        return walk.problem(node.offset, "size() takes one value")
    kind = operands[0]
    if not (is_dyn(kind) or kind.name in _SIZED):
        return walk.problem(node.offset, f"size() of {kind} is undefined")
    return INT


def _conversion(node: Call, operands: list[CelType], walk: _Walk) -> CelType:
    result, accepted = _CONVERSIONS[node.function]
    if len(operands) != 1:
        return walk.problem(node.offset, f"{node.function}() takes one value")
    kind = operands[0]
    if not (is_dyn(kind) or kind.name in accepted):
        return walk.problem(node.offset, f"{node.function}() of {kind} is undefined")
    return result


def _string_method(node: Call, target: CelType | None, args: list[CelType], walk: _Walk) -> CelType:
    name = node.function
    if target is None or len(args) != 1:
        return walk.problem(node.offset, f"{name}() is called on a string with one argument")
    for kind in (target, args[0]):
        if not (is_dyn(kind) or kind == STRING):
            return walk.problem(node.offset, f"{name}() is defined on strings, not {kind}")
    if name == "matches":
        pattern = node.args[0]
        if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
            return walk.problem(
                node.offset,
                "the pattern of matches() must be a string literal: one built from request "
                "data would be compiled on every request, and its caller would choose what "
                "the gateway runs",
            )
        walk.patterns.append((pattern.offset, pattern.value))
    return BOOL


def _operator(
    node: Call, args: list[CelType], scope: Mapping[str, CelType], walk: _Walk
) -> CelType:
    name = node.function
    if name in ("_&&_", "_||_", "!_"):
        return _expect_all(node, args, BOOL, walk)
    if name == "_?_:_":
        if not (args[0] == BOOL or is_dyn(args[0])):
            return walk.problem(node.offset, f"the condition of ?: must be bool, not {args[0]}")
        if not same(args[1], args[2]):
            return walk.problem(
                node.offset, f"the branches of ?: must have one type, not {args[1]} and {args[2]}"
            )
        return join(args[1], args[2])
    if name == "-_":
        if not (is_dyn(args[0]) or args[0] in (INT, DOUBLE)):
            return _no_overload(node, args, walk)
        return args[0]
    left, right = args
    if any(is_dyn(kind) for kind in args):
        return BOOL if name in ("_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "@in") else DYN
    if name in ("_==_", "_!=_"):
        return BOOL if comparable(left, right) else _no_overload(node, args, walk)
    if name in ("_<_", "_<=_", "_>_", "_>=_"):
        ordered = left.name in ORDERED and right.name in ORDERED
        if ordered and (left == right or (is_numeric(left) and is_numeric(right))):
            return BOOL
        return _no_overload(node, args, walk)
    if name == "@in":
        return _membership(node, left, right, scope, walk)
    if name == "_+_":
        if left.name == right.name == "list":
            return join(left, right)
        if left == right and left.name in ADDABLE:
            return left
        return _no_overload(node, args, walk)
    allowed = ("int", "uint") if name == "_%_" else ("int", "uint", "double")
    if left == right and left.name in allowed:
        return left
    return _no_overload(node, args, walk)


def _membership(
    node: Call, left: CelType, right: CelType, scope: Mapping[str, CelType], walk: _Walk
) -> CelType:
    if _is_headers(node.args[1], scope) and isinstance(node.args[0], Literal):
        _check_header(node.args[0].offset, node.args[0].value, walk)
    if right.name in ("list", "map") and comparable(left, right.params[0]):
        return BOOL
    return _no_overload(node, [left, right], walk)


def _expect_all(node: Call, args: list[CelType], wanted: CelType, walk: _Walk) -> CelType:
    if all(kind == wanted or is_dyn(kind) for kind in args):
        return wanted
    return _no_overload(node, args, walk)


def _no_overload(node: Call, args: list[CelType], walk: _Walk) -> CelType:
    symbol = _SYMBOLS.get(node.function, node.function)
    operands = ", ".join(str(kind) for kind in args)
    return walk.problem(node.offset, f"no matching overload for '{symbol}' applied to ({operands})")


def _hint(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
