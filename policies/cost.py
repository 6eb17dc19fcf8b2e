"""A compile-time upper bound on what evaluating a rule costs, in steps.

An evaluation inside the CEL library cannot be interrupted, so a rule that could
run long must be refused before it ever runs. The library has no cost limit of its
own, so seawall estimates one from the syntax tree, as cel-go does: every attribute
is assumed at its size limit (`policies.attributes`), a literal list at its length,
and then

- a name, literal, operator or call costs 1 step; a list literal 1 more per item,
  a map literal 2 more per entry;
- `matches` costs `MATCHES_STEPS` (the library compiles the pattern on every call);
- `in`, `==` and `!=` over a list cost 1 more per 8 items; `+` of lists 3 per item;
- `all`/`exists`/`exists_one` over n items cost n * (`ITERATION_STEPS` + the body's);
- `map`/`filter` cost that plus 3n²/2: the library copies its accumulated result on
  every iteration, so its time grows with the square of the range (measured: 1-2 ms
  for 128 items, 13 ms for 490).

One step is about 0.1 µs on the reference machine (2 cores, shared): an iteration
of `exists` measured 0.5-1 µs, string predicates and comparisons 0.05-0.1 µs, so the
bound is near for comprehensions and over-estimates the rest; bench/cel_libraries.py
prints estimates beside measured times. A rule may cost at most `MAX_RULE_STEPS`,
and the rules that apply to one tenant together at most `MAX_CHAIN_STEPS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from policies.attributes import SPECS
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

#: The most one rule may cost: about 0.5 ms at the reference machine's rate, half
#: the default evaluation budget. `tools.exists(t, t.startsWith("x"))` costs 1409;
#: `filter` over all 128 tools (26,000) is refused, over `roles` (16) is not.
MAX_RULE_STEPS = 5000
#: The most the rules applying to one tenant (its chain's) may cost together: ~5 ms.
MAX_CHAIN_STEPS = 50_000
#: One iteration of a comprehension, besides its body.
ITERATION_STEPS = 8
#: What one `matches` call costs: the library compiles the pattern on every call,
#: 30-50 µs measured here for short patterns.
MATCHES_STEPS = 500


@dataclass(frozen=True, slots=True)
class Size:
    """An upper bound on a list's items (or a map's entries), and on its elements' size."""

    entries: int
    element: Size | None = None


@dataclass(frozen=True, slots=True)
class Cost:
    steps: int
    #: Why the cost has no bound (a range whose size is unknown), or `None`.
    unbounded: str | None = None


def estimate(tree: Node) -> Cost:
    """The most evaluating `tree` can cost, in steps."""
    problems: list[str] = []
    steps, _ = _walk(tree, {}, problems)
    return Cost(steps, problems[0] if problems else None)


def _attribute_size(name: str) -> Size | None:
    spec = SPECS.get(name)
    if spec is None or spec.cel_type.name not in ("list", "map"):
        return None
    assert spec.limit is not None
    return Size(spec.limit)


def _larger(a: Size | None, b: Size | None) -> Size | None:
    if a is None or b is None:
        return a or b
    return Size(max(a.entries, b.entries), _larger(a.element, b.element))


def _walk(
    node: Node, scope: Mapping[str, Size | None], problems: list[str]
) -> tuple[int, Size | None]:
    """`(steps, size)`: the cost of `node`, and a bound on its size if it is a list or map."""
    if isinstance(node, Literal):
        return 1, None
    if isinstance(node, Ident):
        return 1, scope[node.name] if node.name in scope else _attribute_size(node.name)
    if isinstance(node, Select | Index):
        steps, size = _walk(node.operand, scope, problems)
        if isinstance(node, Index):
            steps += _walk(node.index, scope, problems)[0]
        return steps + 1, size.element if size else None
    if isinstance(node, ListExpr):
        steps, element = 1 + len(node.items), None
        for item in node.items:
            item_steps, item_size = _walk(item, scope, problems)
            steps += item_steps
            element = _larger(element, item_size)
        return steps, Size(len(node.items), element)
    if isinstance(node, MapExpr):
        steps, element = 1 + 2 * len(node.entries), None
        for key, value in node.entries:
            value_steps, value_size = _walk(value, scope, problems)
            steps += _walk(key, scope, problems)[0] + value_steps
            element = _larger(element, value_size)
        return steps, Size(len(node.entries), element)
    if isinstance(node, Comprehension):
        return _comprehension(node, scope, problems)
    assert isinstance(node, Call)
    return _call(node, scope, problems)


def _comprehension(
    node: Comprehension, scope: Mapping[str, Size | None], problems: list[str]
) -> tuple[int, Size | None]:
    range_steps, size = _walk(node.range, scope, problems)
    if size is None:
        problems.append(f"{node.macro}() ranges over a value whose size has no known bound")
        return range_steps, None
    inner = {**scope, node.variable: size.element}
    body_steps = 0
    body_size: Size | None = None
    for arg in node.args:
        arg_steps, body_size = _walk(arg, inner, problems)
        body_steps += arg_steps
    steps = range_steps + size.entries * (ITERATION_STEPS + body_steps)
    if node.macro in ("map", "filter"):
        steps += 3 * size.entries * size.entries // 2
    if node.macro == "map":
        return steps, Size(size.entries, body_size)
    if node.macro == "filter":
        return steps, size
    return steps, None


def _call(
    node: Call, scope: Mapping[str, Size | None], problems: list[str]
) -> tuple[int, Size | None]:
    steps = 1
    sizes: list[Size | None] = []
    for operand in (node.target, *node.args):
        if operand is not None:
            operand_steps, operand_size = _walk(operand, scope, problems)
            steps += operand_steps
            sizes.append(operand_size)
    if node.function == "matches":
        return steps + MATCHES_STEPS, None
    if node.function in ("@in", "_==_", "_!=_"):
        largest = max((s.entries for s in sizes if s is not None), default=0)
        return steps + -(-largest // 8), None
    if node.function == "_+_" and len(sizes) == 2 and sizes[0] and sizes[1]:
        total = sizes[0].entries + sizes[1].entries
        return steps + 3 * total, Size(total, _larger(sizes[0].element, sizes[1].element))
    if node.function == "_?_:_":
        return steps, _larger(sizes[1], sizes[2]) if sizes[1] and sizes[2] else None
    return steps, None
